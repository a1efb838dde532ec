"""Edges: three real Janus instances on loopback (an origin and two edges), the real server,
the appliance on the test source; viewers on the edges (aiortc and Chromium)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page

from cvh_camera.janus import JanusError, JanusSession, JanusUnavailable
from cvh_camera.janus_local import LocalJanus, make_local_janus
from cvh_camera.server.config import EdgeSettings, IceServer, PreactivatedSlot, ServerConfig
from tests.integration.appliance_harness import HEIGHT, STREAM_TIMEOUT, TOKEN, WIDTH, appliance
from tests.integration.browser import chromium
from tests.integration.harness import Client, RunningServer, run_server, server_config
from tests.support.viewer import FeedViewer

ROOM = 4242
SWITCH_SECONDS = 5.0  # the page plays again from another edge within this after its edge died
# Nobody listens there: the pages must pass it to their peer connections, nothing more.
ICE_SERVER = IceServer(("stun:127.0.0.1:9",))


@pytest.fixture
def edges(tmp_path: Path) -> Iterator[list[LocalJanus]]:
    started: list[LocalJanus] = []
    try:
        for index in range(2):
            edge = make_local_janus(tmp_path / f"edge{index}", admin_key=f"edge-key-{index}")
            edge.start()
            started.append(edge)
        yield started
    finally:
        for edge in started:
            edge.stop()


def cascade_config(janus: LocalJanus, edges: list[LocalJanus], tmp_path: Path) -> ServerConfig:
    """The server on `janus` as the origin, with `edges` (started or not)."""
    config = server_config(janus, tmp_path, room=ROOM, slots=2,
                           preactivated=(PreactivatedSlot(0, TOKEN),))  # fmt: skip
    settings = tuple(EdgeSettings(e.http_url, admin_key=e.admin_key) for e in edges)
    janus = dataclasses.replace(config.janus, edges=settings, ice_servers=(ICE_SERVER,))
    return dataclasses.replace(config, janus=janus)


@pytest.fixture
async def cascade(
    janus: LocalJanus, edges: list[LocalJanus], tmp_path: Path
) -> AsyncIterator[RunningServer]:
    async with run_server(cascade_config(janus, edges, tmp_path)) as running:
        yield running


async def remote_feeds(http: aiohttp.ClientSession, janus: LocalJanus) -> set[int]:
    """The remote publishers in our room on that Janus, as Janus itself lists them."""
    try:
        session = await JanusSession.create(http, janus.http_url)
    except JanusUnavailable:
        return set()  # not up (yet)
    try:
        handle = await session.attach("janus.plugin.videoroom")
        data = await handle.request({"request": "listparticipants", "room": ROOM})
    except JanusError:
        return set()  # no room (yet)
    finally:
        await session.destroy()
    return {p["id"] for p in data.get("participants", []) if p.get("remote")}


async def wait_carried(
    http: aiohttp.ClientSession, janus: LocalJanus, wanted: set[int], timeout: float
) -> None:
    async with asyncio.timeout(timeout):
        while await remote_feeds(http, janus) != wanted:
            await asyncio.sleep(0.2)  # Janus offers no event for a room's roster


@contextlib.asynccontextmanager
async def viewer_on(
    http: aiohttp.ClientSession, janus: LocalJanus, feed_id: int
) -> AsyncIterator[FeedViewer]:
    viewer = FeedViewer(http, janus.http_url, ROOM)
    try:
        await viewer.watch(feed_id)
        yield viewer
    finally:
        await viewer.close()


async def assert_decodes(viewer: FeedViewer) -> None:
    frames = [await viewer.next_frame(STREAM_TIMEOUT) for _ in range(5)]
    assert {(f.frame.width, f.frame.height) for f in frames} == {(WIDTH, HEIGHT)}


async def test_every_edge_carries_the_feed_under_its_id_and_catches_up_after_a_restart(
    cascade: RunningServer,
    janus: LocalJanus,
    edges: list[LocalJanus],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    receiver = await Client().connect(cascade.url)
    async with appliance(cascade, tmp_path) as camera:
        feed_id = (await receiver.next("new_feed", STREAM_TIMEOUT))["feedId"]
        for edge in edges:
            await wait_carried(http, edge, {feed_id}, 10)
            async with viewer_on(http, edge, feed_id) as viewer:
                await assert_decodes(viewer)

        edges[1].stop()  # an edge restarts: nobody tells the server
        edges[1].start()
        await wait_carried(http, edges[1], {feed_id}, 20)
        async with viewer_on(http, edges[1], feed_id) as viewer:
            await assert_decodes(viewer)
        health = await (await http.get(f"{cascade.url}/healthz")).json()
        assert [edge["feeds"] for edge in health["edges"]] == [[feed_id], [feed_id]]

        await camera.stop()  # the feed leaves: it leaves every edge
        await receiver.next("remove_feed", STREAM_TIMEOUT)
        for edge in edges:
            await wait_carried(http, edge, set(), 10)
    await receiver.close()


async def test_an_origin_restart_puts_the_new_feed_on_every_edge(
    cascade: RunningServer,
    janus: LocalJanus,
    edges: list[LocalJanus],
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    receiver = await Client().connect(cascade.url)
    async with appliance(cascade, tmp_path):
        first = (await receiver.next("new_feed", STREAM_TIMEOUT))["feedId"]
        for edge in edges:
            await wait_carried(http, edge, {first}, 10)
        janus.restart()  # the appliance republishes into the re-created room
        second = (await receiver.next("new_feed", STREAM_TIMEOUT * 2))["feedId"]
        assert second != first
        for edge in edges:
            await wait_carried(http, edge, {second}, 15)
            async with viewer_on(http, edge, second) as viewer:
                await assert_decodes(viewer)
    await receiver.close()


async def page_state(page: Page) -> dict[str, Any]:
    return await page.evaluate(
        """async () => {
            const r = window.cvhReceiver;
            const stats = r ? await r.stats(0) : null;
            return {edge: r ? r.janus.edge : undefined, frames: stats ? stats.framesDecoded : 0};
        }"""
    )


async def wait_playing(page: Page, timeout: float) -> dict[str, Any]:
    """The page's state once it decoded 10 more frames of slot 0 than when asked."""
    async with asyncio.timeout(timeout):
        first = await page_state(page)
        while (state := await page_state(page))["frames"] < first["frames"] + 10 or (
            state["edge"] != first["edge"]
        ):
            if state["edge"] != first["edge"]:
                first = state  # it moved: count from there
            await asyncio.sleep(0.1)  # getStats() is asynchronous: poll it
    return state


async def test_the_receiver_page_plays_from_its_edge_and_moves_when_it_dies(
    cascade: RunningServer, edges: list[LocalJanus], http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    receiver = await Client().connect(cascade.url)
    async with appliance(cascade, tmp_path), chromium() as browser:
        feed_id = (await receiver.next("new_feed", STREAM_TIMEOUT))["feedId"]
        for edge in edges:
            await wait_carried(http, edge, {feed_id}, 10)
        page = await browser.new_page()
        page.on("console", lambda message: print("browser:", message.type, message.text))
        await page.goto(cascade.url)
        state = await wait_playing(page, STREAM_TIMEOUT)
        assert state["edge"] in (0, 1)
        ice = "() => window.cvhReceiver.views.get(0).pc.getConfiguration().iceServers"
        assert [server["urls"] for server in await page.evaluate(ice)] == [list(ICE_SERVER.urls)]
        health = await (await http.get(f"{cascade.url}/healthz")).json()
        assert health["receivers"][str(state["edge"])] == 1

        edges[state["edge"]].stop()  # its edge dies under it
        moved = await wait_playing(page, SWITCH_SECONDS)
        assert moved["edge"] == 1 - state["edge"]
    await receiver.close()


async def test_an_edge_down_at_start_never_holds_up_the_origin_and_is_caught_up_later(
    janus: LocalJanus, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    late = make_local_janus(tmp_path / "late-edge")  # configured, not started yet
    try:
        async with (
            run_server(cascade_config(janus, [late], tmp_path)) as server,
            appliance(server, tmp_path),
        ):
            receiver = await Client().connect(server.url)
            feed_id = (await receiver.next("new_feed", STREAM_TIMEOUT))["feedId"]
            async with viewer_on(http, janus, feed_id) as viewer:  # the origin serves
                await assert_decodes(viewer)
            health = await (await http.get(f"{server.url}/healthz")).json()
            assert health["janus"]["state"] == "ready"
            assert health["edges"][0]["state"] != "ready" and health["edges"][0]["error"]
            assert receiver.pending("remove_feed") == 0

            late.start()
            await wait_carried(http, late, {feed_id}, 20)  # backoff is at most 10 s
            async with viewer_on(http, late, feed_id) as viewer:
                await assert_decodes(viewer)
            await receiver.close()
    finally:
        late.stop()
