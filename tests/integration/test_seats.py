"""Seats in the room: strangers who publish without a token are kicked after the grace, a
verified camera keeps its seat, set_feed_id only takes a participant of the room that no
other slot claimed, and a room destroyed behind the server's back comes back.

Real Janus, the real server, real aiortc publishers (the strangers publish VP8 video with
aiortc's own encoder) and the real appliance process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)

from cvh_camera.janus import JanusError, JanusHandle, JanusSession
from cvh_camera.janus_local import LocalJanus
from cvh_camera.server.app import ROOM, SEATS
from cvh_camera.server.config import JanusSettings, PreactivatedSlot, ServerConfig
from cvh_camera.server.janus_room import JanusRoom, RoomState, RoomUnavailable
from cvh_camera.server.seats import CHECK_INTERVAL, NOT_A_PUBLISHER, SeatGuard
from tests.integration.appliance_harness import STREAM_TIMEOUT, TOKEN, appliance
from tests.integration.harness import (
    TIMEOUT,
    Client,
    RunningServer,
    clients,
    run_server,
    server_config,
    wait_until,
)
from tests.integration.test_server import authenticate, janus_publisher, participants, room_exists

GRACE = 2
SECRET = "seats-test-secret"
PIN = "2468"
SLACK = 1.5  # scheduling on a busy 2-core machine
ROOM_FULL = 432  # Janus: "Maximum number of publishers already reached"


class TinyVideo(VideoStreamTrack):
    """Black 160x120 frames: enough for aiortc to encode and Janus to count a publisher."""

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(width=160, height=120)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.pts, frame.time_base = pts, time_base
        return frame


class Publisher:
    """A plain aiortc publisher: joins the room (with the public pin) and sends video."""

    def __init__(self, http: aiohttp.ClientSession, janus: JanusSettings, display: str) -> None:
        self._http = http
        self._janus = janus
        self.display = display
        self.session: JanusSession | None = None
        self.handle: JanusHandle | None = None
        self.pc: RTCPeerConnection | None = None
        self.feed_id = 0
        self.joined_at = 0.0

    async def publish(self) -> Publisher:
        self.session = await JanusSession.create(self._http, self._janus.url)
        self.handle = await self.session.attach("janus.plugin.videoroom")
        body: dict[str, Any] = {"request": "join", "ptype": "publisher"}
        body |= {"room": self._janus.room, "display": self.display}
        if self._janus.pin:
            body["pin"] = self._janus.pin
        joined, _ = await self.handle.message(body)
        self.feed_id, self.joined_at = joined["id"], time.monotonic()
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        transceiver = self.pc.addTransceiver(TinyVideo(), direction="sendonly")
        vp8 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.name == "VP8"]
        transceiver.setCodecPreferences(vp8)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = {"type": "offer", "sdp": self.pc.localDescription.sdp}
        publish = {"request": "publish", "audio": False, "video": True}
        _, answer = await self.handle.message(publish, offer, timeout=TIMEOUT)
        assert answer is not None
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        while (await self.handle.next_event(TIMEOUT)).get("janus") != "webrtcup":
            pass
        return self

    def report(self) -> dict[str, Any]:
        assert self.session is not None and self.handle is not None
        return {"feedId": self.feed_id, "sessionId": self.session.id, "videoroomId": self.handle.id}

    async def close(self) -> None:
        if self.pc is not None:
            await self.pc.close()
        if self.session is not None:
            await self.session.destroy()


@contextlib.asynccontextmanager
async def publishers(
    http: aiohttp.ClientSession, janus: JanusSettings, *displays: str
) -> AsyncIterator[list[Publisher]]:
    made: list[Publisher] = []
    try:
        for display in displays:
            made.append(publisher := Publisher(http, janus, display))
            await publisher.publish()
        yield made
    finally:
        for publisher in made:
            await publisher.close()


def seats_config(janus: LocalJanus, tmp_path: Path, **overrides: Any) -> ServerConfig:
    config = server_config(janus, tmp_path)
    pin = overrides.pop("janus_pin", "")
    config = server_config(
        janus, tmp_path, room=config.port, janus_pin=pin, publisher_grace=GRACE, **overrides
    )  # a room per test in the shared Janus
    return replace(config, janus=replace(config.janus, secret=SECRET))


@pytest.fixture
async def camera_server(
    janus_session_scope: LocalJanus, tmp_path: Path
) -> AsyncIterator[RunningServer]:
    """Two seats, slot 0 for the appliance; no pin (the appliance harness sets none)."""
    slots = (PreactivatedSlot(0, TOKEN),)
    config = seats_config(janus_session_scope, tmp_path, slots=2, preactivated=slots)
    async with run_server(config) as running:
        yield running


@pytest.fixture
async def pin_server(
    janus_session_scope: LocalJanus, tmp_path: Path
) -> AsyncIterator[RunningServer]:
    slots = (PreactivatedSlot(0, "tok0"), PreactivatedSlot(1, "tok1"))
    config = seats_config(janus_session_scope, tmp_path, slots=2, preactivated=slots, janus_pin=PIN)
    async with run_server(config) as running:
        yield running


def guard(server: RunningServer) -> SeatGuard:
    return server.app[SEATS]


async def wait_checked_past_grace(server: RunningServer, feed_id: int) -> None:
    """Wait for a seat check later than the feed's grace (plus one check) ran to its end."""
    seats = guard(server)
    await wait_until(lambda: seats.ledger.first_seen(feed_id) is not None)
    seen = seats.ledger.first_seen(feed_id)
    assert seen is not None
    deadline = seen + GRACE + CHECK_INTERVAL
    await wait_until(lambda: (seats.last_check or 0) >= deadline, GRACE + 4 * CHECK_INTERVAL)


async def wait_gone(http: aiohttp.ClientSession, server: RunningServer, ids: set[int]) -> float:
    """Poll Janus until none of `ids` is in the room; return when (monotonic)."""
    janus = server.config.janus
    async with asyncio.timeout(GRACE + 2 * CHECK_INTERVAL + SLACK + 2):
        while ids & set(await participants(http, janus.url, janus.room)):
            await asyncio.sleep(0.05)
    return time.monotonic()


@pytest.mark.parametrize("via", ["janus", "proxy"])
async def test_strangers_are_kicked_and_the_camera_gets_a_seat(
    camera_server: RunningServer,
    tmp_path: Path,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
    via: str,
) -> None:
    """Strangers publish straight to Janus, or through the server's own /janus proxy as a
    visitor of the receiver page could."""
    caplog.set_level(logging.INFO, logger="cvh_camera.server.seats")
    janus = camera_server.config.janus
    entry = janus if via == "janus" else replace(janus, url=f"{camera_server.url}/janus")
    async with publishers(http, entry, "stranger-a", "stranger-b") as strangers:
        with pytest.raises(JanusError) as full:  # both seats are taken: Janus refuses more
            async with publishers(http, entry, "stranger-c"):
                pass
        assert full.value.code == ROOM_FULL
        receiver = await Client().connect(camera_server.url)
        try:
            async with appliance(camera_server, tmp_path):
                gone = await wait_gone(http, camera_server, {s.feed_id for s in strangers})
                for stranger in strangers:
                    assert gone - stranger.joined_at <= GRACE + 2 * CHECK_INTERVAL + SLACK
                    assert f"feed={stranger.feed_id} display='{stranger.display}'" in caplog.text
                new_feed = await receiver.next("new_feed", STREAM_TIMEOUT)
                assert new_feed["slot"] == 0
                await wait_checked_past_grace(camera_server, new_feed["feedId"])
                assert new_feed["feedId"] in await participants(http, janus.url, janus.room)
                assert (await receiver.call("query_state"))["0"]["feedId"] == new_feed["feedId"]
                assert receiver.pending("remove_feed") == 0
        finally:
            await receiver.close()
    assert SECRET not in caplog.text


async def test_a_late_set_feed_id_within_the_grace_keeps_the_seat(
    pin_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    janus, seats = pin_server.config.janus, guard(pin_server)
    async with (
        clients(pin_server.url, 2) as (receiver, sender),
        publishers(http, janus, "late camera") as (camera,),
    ):
        await authenticate(sender, 1, "tok1")
        await wait_until(lambda: seats.ledger.first_seen(camera.feed_id) is not None)
        seen = seats.ledger.first_seen(camera.feed_id)
        assert seen is not None
        await wait_until(lambda: time.monotonic() - seen >= GRACE - 0.5)
        answer = await sender.call("set_feed_id", camera.report())
        assert answer["message"] == "Successfully set feed id - you are now using this slot"
        assert (await receiver.next("new_feed"))["feedId"] == camera.feed_id
        await wait_checked_past_grace(pin_server, camera.feed_id)
        assert camera.feed_id in await participants(http, janus.url, janus.room)
        assert (await receiver.call("query_state"))["1"]["feedId"] == camera.feed_id


async def test_a_stranger_among_cameras_is_kicked_and_cannot_be_claimed_later(
    pin_server: RunningServer, http: aiohttp.ClientSession
) -> None:
    janus = pin_server.config.janus
    async with (
        clients(pin_server.url) as (sender,),
        publishers(http, janus, "camera", "stranger") as (camera, stranger),
    ):
        await authenticate(sender, 0, "tok0")
        assert (await sender.call("set_feed_id", camera.report()))["success"]
        await wait_gone(http, pin_server, {stranger.feed_id})
        assert camera.feed_id in await participants(http, janus.url, janus.room)
        async with clients(pin_server.url) as (late,):
            await authenticate(late, 1, "tok1")
            answer = await late.call("set_feed_id", stranger.report())
            assert answer == {"success": False, "message": NOT_A_PUBLISHER}


async def test_set_feed_id_takes_only_a_participant_no_other_slot_claimed(
    pin_server: RunningServer, janus_session_scope: LocalJanus, http: aiohttp.ClientSession
) -> None:
    janus = pin_server.config.janus
    other_room = janus.room + 100_000
    admin = await JanusSession.create(http, janus.url)
    handle = await admin.attach("janus.plugin.videoroom")
    create = {"request": "create", "room": other_room, "admin_key": janus_session_scope.admin_key}
    await handle.request(create)
    session0, handle0, feed0 = await janus_publisher(http, janus_session_scope, janus.room, PIN)
    elsewhere, _, foreign = await janus_publisher(http, janus_session_scope, other_room)
    try:
        async with clients(pin_server.url, 3) as (receiver, zero, one):
            await authenticate(zero, 0, "tok0")
            await authenticate(one, 1, "tok1")
            # joined a moment ago, reported at once (as the sender page does): listed already
            report0 = {"feedId": feed0, "sessionId": session0.id, "videoroomId": handle0.id}
            assert (await zero.call("set_feed_id", report0))["success"]
            assert (await receiver.next("new_feed"))["slot"] == 0
            refusals = [
                (feed0, "This feed id belongs to another slot"),
                (4242, NOT_A_PUBLISHER),
                (str(feed0), NOT_A_PUBLISHER),
                (foreign, NOT_A_PUBLISHER),  # a publisher, but of another room
            ]
            for feed_id, message in refusals:
                answer = await one.call("set_feed_id", {**report0, "feedId": feed_id})
                assert answer == {"success": False, "message": message}
            await one.close()  # leaving must not take slot 0's camera with it
            await wait_checked_past_grace(pin_server, feed0)
            assert feed0 in await participants(http, janus.url, janus.room)
            assert list(await receiver.call("query_state")) == ["0"]
            assert receiver.pending("remove_feed") == 0
    finally:
        await session0.destroy()
        await elsewhere.destroy()
        await handle.request({"request": "destroy", "room": other_room})
        await admin.destroy()


async def destroy_room(http: aiohttp.ClientSession, janus: JanusSettings) -> None:
    """Destroy the server's room as somebody else would (with its secret)."""
    session = await JanusSession.create(http, janus.url)
    try:
        handle = await session.attach("janus.plugin.videoroom")
        await handle.request({"request": "destroy", "room": janus.room, "secret": janus.secret})
    finally:
        await session.destroy()


async def test_a_destroyed_room_is_recreated_and_the_camera_comes_back(
    camera_server: RunningServer,
    janus_session_scope: LocalJanus,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    janus, room = camera_server.config.janus, camera_server.app[ROOM]
    async with contextlib.AsyncExitStack() as stack:
        receiver = await Client().connect(camera_server.url)
        stack.push_async_callback(receiver.close)
        await stack.enter_async_context(appliance(camera_server, tmp_path))
        first = await receiver.next("new_feed", STREAM_TIMEOUT)
        await destroy_room(http, janus)
        assert await receiver.next("remove_feed", TIMEOUT) == {"slot": 0}
        await camera_server.wait_notify("remove_feed 0")
        await wait_until(lambda: room.generation == 2 and room.state is RoomState.READY)
        assert await room_exists(http, janus_session_scope, janus.room)
        async with http.get(f"{camera_server.url}/healthz") as resp:
            health = await resp.json()
        assert (health["janus"]["state"], health["janus"]["generation"]) == ("ready", 2)
        again = await receiver.next("new_feed", STREAM_TIMEOUT)  # the camera republished
        assert again["slot"] == 0 and again["feedId"] != first["feedId"]
        assert again["feedId"] in await participants(http, janus.url, janus.room)


async def test_the_room_says_down_as_soon_as_it_is_found_gone(
    janus_session_scope: LocalJanus, http: aiohttp.ClientSession
) -> None:
    settings = JanusSettings(
        url=janus_session_scope.http_url,
        room=987_654,
        secret=SECRET,
        admin_key=janus_session_scope.admin_key,
    )
    states: list[str] = []
    room = JanusRoom(settings, 2, on_lost=lambda: states.append(room.status()["state"]))
    room.start()
    try:
        await room.wait_ready(TIMEOUT)
        await destroy_room(http, settings)
        with pytest.raises(RoomUnavailable):
            await room.participants()
        assert room.status()["state"] == "down" and states == ["down"]
        await room.wait_ready(TIMEOUT)
        assert room.generation == 2
        assert (await room.participants()).participants == ()
    finally:
        await room.close()
