"""Headless Chromium for the browser tests (see cvh_camera/chromium.py)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser

from tests.support import chromium as chromium_module


@contextlib.asynccontextmanager
async def chromium(*, fake_camera: bool = False) -> AsyncIterator[Browser]:
    try:
        async with chromium_module.chromium(fake_camera=fake_camera) as browser:
            yield browser
    except chromium_module.ChromiumMissing as missing:
        pytest.fail(str(missing), pytrace=False)
