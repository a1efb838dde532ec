"""Debian's headless Chromium for tests, benchmarks and screenshots, driven by Playwright.

Always /usr/bin/chromium (the Debian package), never a browser Playwright downloads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from playwright.async_api import Browser, async_playwright

CHROMIUM = "/usr/bin/chromium"
FLAGS = (  # Playwright adds --headless and a fresh --user-data-dir itself
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Show host candidates as addresses, not mDNS names (Janus ignores mDNS here).
    "--disable-features=WebRtcHideLocalIpsWithMdns",
)
FAKE_CAMERA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")


class ChromiumMissing(RuntimeError):
    """Debian's chromium package is not installed."""


def _require_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        raise ChromiumMissing(f"{CHROMIUM} is missing: apt-get install chromium")


@contextlib.asynccontextmanager
async def chromium(*, fake_camera: bool = False) -> AsyncIterator[Browser]:
    _require_chromium()
    args = [*FLAGS, *(FAKE_CAMERA if fake_camera else ())]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield browser
        finally:
            await browser.close()
