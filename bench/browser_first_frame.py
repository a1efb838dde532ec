"""Receiver page in headless Chromium: how soon a viewer sees the camera.

1. *open → frame*: from `page.goto(receiver URL)` to the first decoded frame, one feed active
   (target ≤ 1 s).
2. *new_feed → frame*: on an open page, from the server's `new_feed` (as a socket.io client
   sees it) to the page's first decoded frame of that feed (target ≤ 300 ms).

Everything runs here: `cvh-camera demo --no-camera` (local Janus + slot server) and
`cvh-camera appliance` processes on the synthetic camera (1280×720, 30 fps). Times are taken
with the page's own clock (performance.timeOrigin + now(), wall-clock ms) against the
test's `time.time()`, both the same machine's clock.

    .venv/bin/python bench/browser_first_frame.py [--rounds 8] [--write-results]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import platform
import re
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import socketio
import yaml
from playwright.async_api import Page

from tests.support.chromium import CHROMIUM, chromium

HERE = Path(__file__).resolve().parent
# Resolves with the wall-clock ms of the first decoded frame of slot 0 (not yet shown: waits).
FIRST_FRAME_JS = """() => new Promise((resolve) => {
    const poll = () => {
        const video = document.querySelector('.feed[data-slot="0"] video');
        if (video && video.requestVideoFrameCallback && video.srcObject) {
            const now = () => performance.timeOrigin + performance.now();
            video.requestVideoFrameCallback(() => resolve(now()));
        } else {
            setTimeout(poll, 5);
        }
    };
    poll();
})"""


@contextlib.asynccontextmanager
async def demo_stack(workdir: Path) -> AsyncIterator[tuple[str, str, str]]:
    """Janus + slot server (slots 0 and 1 pre-activated); yields (url, Janus URL, slot 0 token)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cvh_camera", "demo", "--no-camera", "--port", "0",
        "--workdir", str(workdir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    try:
        text = ""
        async with asyncio.timeout(60):
            while "notify lines" not in text:  # the demo's last line
                line = (await process.stdout.readline()).decode()
                if not line:
                    raise SystemExit("the demo ended before it was running")
                text += line
        url = re.search(r"receiver page\s+(\S+)/", text)[1]  # type: ignore[index]
        janus = re.search(r"Janus HTTP API\s+(\S+)", text)[1]  # type: ignore[index]
        token = (workdir / "slot0.token").read_text().strip()
        yield url, janus, token
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)


@contextlib.asynccontextmanager
async def camera(workdir: Path, url: str, janus: str, token: str, name: str) -> AsyncIterator[None]:
    config = workdir / f"{name}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "server": {"url": url},
                "slot": 0,
                "token": token,
                "janus": {"url": janus},
                "camera": {"source": "test", "width": 1280, "height": 720, "fps": 30},
                "status": {"http_port": 0},
            }
        )
    )
    with (workdir / f"{name}.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cvh_camera", "appliance", "--config", str(config),
            stdout=log, stderr=log,
        )  # fmt: skip
    try:
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), 30)


class FeedWatcher:
    """A socket.io receiver that timestamps `new_feed` / `remove_feed` for slot 0."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
        for event in ("new_feed", "remove_feed"):
            self.sio.on(event, self._handler(event))

    def _handler(self, event: str):  # type: ignore[no-untyped-def]
        async def on(data: dict[str, object]) -> None:
            if data.get("slot") == 0:
                self.events.put_nowait((event, time.time()))

        return on

    async def next(self, event: str, timeout: float = 60) -> float:
        async with asyncio.timeout(timeout):
            while True:
                name, at = await self.events.get()
                if name == event:
                    return at


async def open_to_frame(page: Page, url: str) -> float:
    await page.goto("about:blank")
    started = time.time()
    await page.goto(url)
    first = await page.evaluate(FIRST_FRAME_JS)
    return first - started * 1000


async def measure(rounds: int) -> dict[str, list[float]]:
    workdir = Path(tempfile.mkdtemp(prefix="cvh-bench-browser-"))
    results: dict[str, list[float]] = {"open": [], "new_feed": []}
    async with demo_stack(workdir) as (url, janus, token), chromium() as browser:
        page = await browser.new_page(viewport={"width": 1280, "height": 760})
        watcher = FeedWatcher()
        await watcher.sio.connect(url, transports=["websocket"])
        async with camera(workdir, url, janus, token, "steady"):
            await watcher.next("new_feed")
            await open_to_frame(page, url)  # warm-up, not counted
            for _ in range(rounds):
                results["open"].append(await open_to_frame(page, url))
        await watcher.next("remove_feed")
        await page.goto(url)
        for index in range(rounds + 1):
            first_frame = asyncio.ensure_future(page.evaluate(FIRST_FRAME_JS))
            async with camera(workdir, url, janus, token, f"round{index}"):
                announced = await watcher.next("new_feed")
                frame_at = await asyncio.wait_for(first_frame, 60)
                if index:  # the first round warms up
                    results["new_feed"].append(frame_at - announced * 1000)
            await watcher.next("remove_feed")
            await page.wait_for_selector('.feed[data-slot="0"]', state="detached")
        await watcher.sio.disconnect()
    return results


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return (
        f"median {statistics.median(values):.0f} ms, p90 {p90:.0f} ms, "
        f"max {max(values):.0f} ms (n={len(values)})"
    )


def report(results: dict[str, list[float]], command: str) -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    chromium = os.popen(f"{CHROMIUM} --version").read().strip()
    open_median = statistics.median(results["open"])
    feed_median = statistics.median(results["new_feed"])
    lines = [
        "## Receiver page: time to first frame (headless Chromium)",
        "",
        f"`{command}` — {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {chromium}",
        "- camera: `cvh-camera appliance` on the synthetic source, 1280×720, 30 fps",
        f"- open → first frame: {summary(results['open'])} — target ≤ 1000 ms: "
        f"{'met' if open_median <= 1000 else 'NOT met'} (median)",
        f"- new_feed → first frame: {summary(results['new_feed'])} — target ≤ 300 ms: "
        f"{'met' if feed_median <= 300 else 'NOT met'} (median)",
        "",
        "No same-run baseline exists for these (there is no other receiver page to compare "
        "with); the targets are the figures to beat.",
        "",
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    path = HERE / "RESULTS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n\n"
    heading = text.splitlines()[0]
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    updated = (
        pattern.sub(text, current) if pattern.search(current) else current.rstrip() + "\n\n" + text
    )
    path.write_text(updated)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(asyncio.wait_for(measure(args.rounds), 600))
    command = "python bench/browser_first_frame.py " + " ".join(sys.argv[1:])
    text = report(results, command.strip())
    print(text)
    if args.write_results:
        write_section(text)


if __name__ == "__main__":
    main()
