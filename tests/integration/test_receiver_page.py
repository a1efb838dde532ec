"""The receiver page in real headless Chromium, with the appliance publishing real H.264."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page

from cvh_camera.janus_local import LocalJanus
from tests.integration.appliance_harness import STREAM_TIMEOUT, appliance, receiver, server
from tests.integration.browser import chromium
from tests.integration.harness import Client, RunningServer, run_server, server_config

__all__ = ["receiver", "server"]  # fixtures

WAIT_MS = 30_000
FULL_HD = {"width": 1280, "height": 720}


@pytest.fixture
async def page(server: RunningServer) -> AsyncIterator[Page]:
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 760})
        page = await context.new_page()
        page.on("console", lambda message: print("browser:", message.type, message.text))
        yield page
        await context.close()


async def feed_element_state(page: Page, slot: int) -> dict[str, Any]:
    return await page.evaluate(
        """(slot) => {
            const el = document.querySelector(`.feed[data-slot="${slot}"]`);
            if (!el) return null;
            const s = el.style;
            return {hidden: el.hidden, layout: el.dataset.layout, feedId: el.dataset.feedId,
                    left: s.left, top: s.top, width: s.width, height: s.height, z: s.zIndex,
                    annotation: el.querySelector('.annotation').innerHTML};
        }""",
        slot,
    )


async def wait_decoding(page: Page, slot: int, width: int) -> None:
    """A playing <video> of the right width whose decoder keeps producing frames (Chromium's
    default autoplay policy: muted video must play without a click)."""
    await page.wait_for_function(
        """([slot, width]) => {
            const video = document.querySelector(`.feed[data-slot="${slot}"] video`);
            return video && video.videoWidth === width && !video.paused;  // muted autoplay
        }""",
        arg=[slot, width],
        timeout=WAIT_MS,
    )
    first = await frames_decoded(page, slot)
    async with asyncio.timeout(WAIT_MS / 1000):
        while await frames_decoded(page, slot) < first + 10:
            await asyncio.sleep(0.1)  # getStats() is asynchronous: poll it


async def frames_decoded(page: Page, slot: int) -> int:
    stats = await page.evaluate("(slot) => window.cvhReceiver.stats(slot)", slot)
    return int(stats["framesDecoded"]) if stats else 0


async def test_live_feed_goes_and_comes_back(
    server: RunningServer, receiver: Client, page: Page, tmp_path: Path
) -> None:
    await page.goto(server.url)
    async with appliance(server, tmp_path, "first", **FULL_HD) as first:
        await receiver.next("new_feed", STREAM_TIMEOUT)
        await wait_decoding(page, 0, 1280)
        await page.wait_for_function(
            "() => document.getElementById('status').dataset.level === 'ok'"
        )
        await first.stop(signal.SIGTERM)
        await page.wait_for_selector('.feed[data-slot="0"]', state="detached", timeout=WAIT_MS)
    async with appliance(server, tmp_path, "second", **FULL_HD):
        await wait_decoding(page, 0, 1280)


async def test_controller_commands_change_the_page(
    server: RunningServer, receiver: Client, page: Page, tmp_path: Path
) -> None:
    async with appliance(server, tmp_path):
        await receiver.next("new_feed", STREAM_TIMEOUT)
        await page.goto(server.url)
        await page.wait_for_selector('.feed[data-slot="0"]', timeout=WAIT_MS)
        assert (await feed_element_state(page, 0))["layout"] == "grid"

        server.command("set_geometry_relative_to_window 0 lt 10 20 320 180 3")
        await page.wait_for_function(
            "() => document.querySelector('.feed[data-slot=\"0\"]').dataset.layout === 'window'"
        )
        state = await feed_element_state(page, 0)
        assert (state["left"], state["top"], state["width"], state["height"], state["z"]) == (
            "10px", "20px", "320px", "180px", "3",
        )  # fmt: skip

        server.command("hide 0")
        await page.wait_for_function(
            "() => document.querySelector('.feed[data-slot=\"0\"]').hidden"
        )
        server.command("show 0")
        await page.wait_for_function(
            "() => !document.querySelector('.feed[data-slot=\"0\"]').hidden"
        )

        server.command('set_annotation 0 <b class="who">Lab 1</b>')
        await page.wait_for_selector('.feed[data-slot="0"] .annotation b.who')
        server.command("remove_annotation 0")
        await page.wait_for_selector('.feed[data-slot="0"] .annotation b.who', state="detached")

        # canvas geometry: 1920x1080 logical pixels, scaled onto the stage
        server.command("set_geometry_relative_to_canvas 0 rb 0 0 960 540")
        await page.wait_for_function(
            "() => document.querySelector('.feed[data-slot=\"0\"]').dataset.layout === 'canvas'"
        )
        box = await page.evaluate(
            """() => {
                const feed = document.querySelector('.feed[data-slot="0"]').getBoundingClientRect();
                const stage = document.getElementById('stage').getBoundingClientRect();
                return {right: stage.right - feed.right, bottom: stage.bottom - feed.bottom,
                        width: feed.width, height: feed.height,
                        stageWidth: stage.width, stageHeight: stage.height};
            }"""
        )
        scale = min(box["stageWidth"] / 1920, box["stageHeight"] / 1080)
        assert box["width"] == pytest.approx(960 * scale, abs=1)
        assert box["height"] == pytest.approx(540 * scale, abs=1)
        # anchored at the canvas's right-bottom corner, inside the letterbox
        assert box["right"] == pytest.approx((box["stageWidth"] - 1920 * scale) / 2, abs=1)
        assert box["bottom"] == pytest.approx((box["stageHeight"] - 1080 * scale) / 2, abs=1)


async def test_page_recovers_when_janus_restarts(
    janus: LocalJanus, server: RunningServer, receiver: Client, page: Page, tmp_path: Path
) -> None:
    async with appliance(server, tmp_path):
        first = await receiver.next("new_feed", STREAM_TIMEOUT)
        await page.goto(server.url)
        await wait_decoding(page, 0, 640)
        janus.restart()
        again = await receiver.next("new_feed", STREAM_TIMEOUT + 30)
        assert again["feedId"] != first["feedId"]
        await page.wait_for_function(
            "(id) => document.querySelector('.feed[data-slot=\"0\"]')?.dataset.feedId === id",
            arg=str(again["feedId"]),
            timeout=WAIT_MS,
        )
        await wait_decoding(page, 0, 640)


async def test_status_tells_when_the_server_is_gone(janus: LocalJanus, tmp_path: Path) -> None:
    config = server_config(janus, tmp_path)
    async with chromium() as browser:
        page = await browser.new_page()
        async with run_server(config) as running:
            await page.goto(running.url)
            await page.wait_for_function(status_is("ok"), timeout=WAIT_MS)
        await page.wait_for_function(status_is("error"), timeout=WAIT_MS)
        assert "Server" in await page.text_content("#status")
        async with run_server(config):
            await page.wait_for_function(status_is("ok"), timeout=WAIT_MS)


def status_is(level: str) -> str:
    return f"() => document.getElementById('status').dataset.level === '{level}'"
