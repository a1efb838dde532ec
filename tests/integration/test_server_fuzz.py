"""Arbitrary JSON at every socket.io event, and arbitrary lines at the controller input:
the server keeps answering and its state does not change."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvh_camera.janus_local import LocalJanus
from cvh_camera.server.config import PreactivatedSlot
from tests.integration.harness import Client, RunningServer, run_server, server_config
from tests.integration.test_server import server_feeds

TOKEN = "tok-" + secrets.token_hex(16)  # cannot be guessed by the generator
EVENTS = ["sender_init", "set_feed_id", "change_name", "set_bitrate_limit", "query_state", "x"]
FIELDS = ["slot", "token", "feedId", "sessionId", "videoroomId", "customName", "newName"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
payloads = json_values | st.fixed_dictionaries(
    {}, optional={name: json_values for name in [*FIELDS, "bitrateLimit"]}
)


class Fuzzed:
    """A server with a live feed on slot 0, a receiver, and an unauthenticated fuzzing client."""

    def __init__(self, server: RunningServer, receiver: Client, fuzzer: Client) -> None:
        self.server, self.receiver, self.fuzzer = server, receiver, fuzzer
        self.expected_state: dict[str, Any] = {}


@pytest.fixture
async def fuzzed(janus_session_scope: LocalJanus, tmp_path: Path) -> AsyncIterator[Fuzzed]:
    config = server_config(janus_session_scope, tmp_path)
    config = server_config(
        janus_session_scope, tmp_path, room=config.port, preactivated=(PreactivatedSlot(0, TOKEN),)
    )
    async with run_server(config) as server, server_feeds(server) as (feed,):
        sender, receiver, fuzzer = [await Client().connect(server.url) for _ in range(3)]
        assert (await sender.call("sender_init", {"slot": 0, "token": TOKEN}))["success"]
        assert (await sender.call("set_feed_id", feed))["success"]
        fuzz = Fuzzed(server, receiver, fuzzer)
        fuzz.expected_state = await receiver.call("query_state")
        try:
            yield fuzz
        finally:
            for client in (sender, receiver, fuzzer):
                await client.close()


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(event=st.sampled_from(EVENTS), args=st.lists(payloads, max_size=3), with_ack=st.booleans())
async def test_arbitrary_payloads_change_nothing(
    fuzzed: Fuzzed, event: str, args: list[Any], with_ack: bool
) -> None:
    before = fuzzed.server.service.table.snapshot()
    sio = fuzzed.fuzzer.sio
    data = tuple(args) if len(args) != 1 else args[0]
    if with_ack:
        answer = await (sio.call(event, data, timeout=5) if args else sio.call(event, timeout=5))
        assert isinstance(answer, dict)
        if event == "query_state":
            assert answer == fuzzed.expected_state
        else:
            assert answer["success"] is False and isinstance(answer["message"], str)
    elif args:
        await sio.emit(event, data)
    else:
        await sio.emit(event)
    # events of one client are handled in order: this answer comes after the fuzzed one
    assert await fuzzed.fuzzer.call("query_state") == fuzzed.expected_state
    assert await fuzzed.receiver.call("query_state") == fuzzed.expected_state
    assert fuzzed.server.service.table.snapshot() == before
    assert fuzzed.fuzzer.sio.connected and fuzzed.receiver.sio.connected


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    line=st.one_of(
        st.text(max_size=80).filter(lambda s: "\n" not in s and "\r" not in s),
        st.builds(
            lambda cmd, rest: f"{cmd} {rest}",
            st.sampled_from(
                [
                    "hide",
                    "show",
                    "activate_slot",
                    "refresh_token",
                    "deactivate_slot",
                    "set_annotation",
                    "set_bitrate_limit",
                    "set_geometry_relative_to_canvas",
                ]
            ),
            st.text(alphabet="123456789 -.x", max_size=20),  # slot 0 carries the feed we watch
        ),
    )
)
async def test_arbitrary_controller_lines_keep_the_server_answering(
    fuzzed: Fuzzed, line: str
) -> None:
    feed_before = fuzzed.server.service.table[0].feed
    fuzzed.server.command(line)
    fuzzed.server.command("remove_annotation 0")  # a marker that was handled after the line
    await fuzzed.receiver.next("remove_annotation")
    assert fuzzed.server.service.table[0].feed == feed_before
    assert "0" in await fuzzed.receiver.call("query_state")
