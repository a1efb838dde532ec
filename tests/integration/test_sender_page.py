"""The sender page in real headless Chromium (fake camera), on a real slot server and Janus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from cvh_camera.janus_local import LocalJanus, find_free_port
from cvh_camera.server.config import PreactivatedSlot, ServerConfig
from tests.integration.appliance_harness import TOKEN, receiver
from tests.integration.browser import chromium
from tests.integration.harness import Client, RunningServer, run_server, server_config
from tests.integration.test_receiver_page import WAIT_MS, wait_decoding
from tests.integration.test_server import participants

__all__ = ["receiver"]  # fixture

WAIT = WAIT_MS / 1000
LIVE = "Successfully set feed id - you are now using this slot"


@pytest.fixture
async def server(janus_session_scope: LocalJanus, tmp_path: Path) -> AsyncIterator[RunningServer]:
    """Slot 0 activated with TOKEN, in a room of its own on the shared Janus."""
    async with run_server(room_config(janus_session_scope, tmp_path)) as running:
        yield running


def room_config(janus: LocalJanus, tmp_path: Path, **overrides: Any) -> ServerConfig:
    port = find_free_port()
    return server_config(
        janus, tmp_path, port=port, room=port, slots=2,
        preactivated=(PreactivatedSlot(0, TOKEN),), **overrides,
    )  # fmt: skip


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium(fake_camera=True) as running:
        yield running


async def open_page(browser: Browser, url: str) -> Page:
    """A page in a browser context of its own (its own camera, cookies and connections)."""
    context = await browser.new_context()
    page = await context.new_page()
    page.on("console", lambda message: print("browser:", message.type, message.text))
    await page.goto(url)
    return page


def sender_url(server: RunningServer, **query: Any) -> str:
    return f"{server.url}/sender?{urlencode(query)}"


async def preview_width(page: Page) -> int:
    """The fake camera's width, as the page's own preview shows it."""
    await page.wait_for_function(
        "() => document.getElementById('preview').videoWidth > 0", timeout=WAIT_MS
    )
    width: int = await page.evaluate("() => document.getElementById('preview').videoWidth")
    return width


async def expect_status(page: Page, text: str, level: str) -> None:
    status = page.locator("#status")
    await expect(status).to_have_text(text, timeout=WAIT_MS)
    await expect(status).to_have_attribute("data-level", level)


async def expect_state(page: Page, state: str) -> None:
    await expect(page.locator("body")).to_have_attribute("data-state", state, timeout=WAIT_MS)


async def room_participants(http: aiohttp.ClientSession, server: RunningServer) -> list[int]:
    return await participants(http, server.config.janus.url, server.config.janus.room)


async def wait_participants(
    http: aiohttp.ClientSession, server: RunningServer, predicate: Callable[[list[int]], bool]
) -> None:
    """Janus's own view of the room, polled: Janus has no event to wait for."""
    async with asyncio.timeout(WAIT):
        while not predicate(await room_participants(http, server)):
            await asyncio.sleep(0.1)


async def test_sender_page_publishes_h264_that_a_receiver_decodes(
    server: RunningServer, receiver: Client, browser: Browser, http: aiohttp.ClientSession
) -> None:
    sender = await open_page(browser, sender_url(server, token=TOKEN, pin="none", slot=0))
    width = await preview_width(sender)
    await expect(sender.locator("#camera option")).not_to_have_count(0)
    await expect(sender.locator("#pin")).to_be_hidden()
    await expect(sender.locator("#name")).to_be_hidden()

    await sender.click("#start")
    await expect_status(sender, LIVE, "ok")
    await expect_state(sender, "live")
    await expect(sender.locator("#controller-limit")).to_have_text("128 kbit/s")
    feed = await receiver.next("new_feed", WAIT)
    assert feed["slot"] == 0
    assert await room_participants(http, server) == [feed["feedId"]]
    janus_ids = await sender.evaluate(
        "() => { const { session, handle } = window.cvhSender.page.publisher;"
        " return [session.id, handle.id]; }"
    )
    stored = server.service.table[0].feed
    assert stored is not None and [stored.session_id, stored.handle_id] == janus_ids
    stats = await sender.evaluate("() => window.cvhSender.stats()")
    assert stats["codec"] == "video/H264"

    watcher = await open_page(browser, server.url)
    await wait_decoding(watcher, 0, width)

    await sender.fill("#bitrate", "300")
    await sender.click("#set-bitrate")
    await expect_status(sender, "Your bitrate limit was updated", "ok")
    assert server.service.table[0].user_bitrate_limit == 300_000

    server.command("set_bitrate_limit 0 200000")
    await expect(sender.locator("#controller-limit")).to_have_text("200 kbit/s", timeout=WAIT_MS)

    await sender.click("#stop")
    await expect_state(sender, "idle")
    assert await receiver.next("remove_feed", WAIT) == {"slot": 0}
    assert server.service.query_state() == {}
    await wait_participants(http, server, lambda ids: ids == [])
    assert await sender.evaluate("() => document.getElementById('preview').srcObject") is None


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"token": "wrong-token", "slot": 0}, "Invalid token, contact your moderator"),
        ({"slot": 0}, "No token provided"),
        ({"token": TOKEN, "slot": 1}, "This camera slot is not activated, contact your moderator"),
        ({"token": TOKEN, "slot": 7}, "This camera slot does not exist"),
        ({"token": TOKEN, "slot": "x"}, "An invalid camera slot was provided (x)"),
    ],
)
async def test_a_refused_sender_publishes_nothing(
    server: RunningServer,
    browser: Browser,
    http: aiohttp.ClientSession,
    query: dict[str, Any],
    message: str,
) -> None:
    sender = await open_page(browser, sender_url(server, pin="none", **query))
    janus_requests: list[str] = []
    sender.on("request", lambda r: janus_requests.append(r.url) if "/janus" in r.url else None)
    await preview_width(sender)

    await sender.click("#start")
    await expect_status(sender, message, "error")
    await expect_state(sender, "idle")
    await expect(sender.locator("#start")).to_have_text("Start again")
    assert janus_requests == []
    assert server.service.query_state() == {}
    assert await room_participants(http, server) == []


async def test_custom_name_and_losing_the_server(
    server: RunningServer, browser: Browser, http: aiohttp.ClientSession
) -> None:
    url = sender_url(server, token=TOKEN, pin="none", customNameAllowed="Anna")
    sender = await open_page(browser, url)
    await expect(sender.locator("#name")).to_have_value("Anna")
    await preview_width(sender)

    await sender.click("#start")
    await expect_status(sender, LIVE, "ok")
    await server.wait_notify("custom_name 0 Anna")

    await sender.fill("#name", "Bob & Co")
    await sender.click("#rename")
    await server.wait_notify("custom_name 0 Bob &amp; Co")

    server.command("deactivate_slot 0")  # the server drops the sender's socket
    await expect_state(sender, "idle")
    await expect(sender.locator("#status")).to_have_attribute("data-level", "error")
    await expect(sender.locator("#status")).to_contain_text("connection to the server was lost")
    await wait_participants(http, server, lambda ids: ids == [])


async def test_pin_is_asked_and_a_wrong_one_can_be_corrected(
    janus_session_scope: LocalJanus, tmp_path: Path, browser: Browser
) -> None:
    config = room_config(janus_session_scope, tmp_path, janus_pin="room-pin-42")
    # the socket.io path of the original deployments' reverse proxy: room + 4000
    config = replace(config, socketio_path=f"/socket.io/{config.janus.room + 4000}")
    async with run_server(config) as server:
        sender = await open_page(browser, sender_url(server, token=TOKEN))
        await expect(sender.locator("#pin")).to_be_visible()
        await preview_width(sender)

        await sender.fill("#pin", "guess")
        await sender.click("#start")
        await expect_status(sender, "Wrong room pin", "error")
        assert server.service.query_state() == {}

        await sender.fill("#pin", "room-pin-42")
        await sender.click("#start")
        await expect_status(sender, LIVE, "ok")
        assert list(server.service.query_state()) == ["0"]
