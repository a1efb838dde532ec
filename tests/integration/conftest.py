"""Integration fixtures: a real local Janus (Debian package) and an aiohttp client."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from cvh_camera.janus_local import JanusStartError, LocalJanus, make_local_janus


def _start_janus(workdir: Path) -> LocalJanus:
    if shutil.which("janus") is None:
        pytest.fail(
            "the janus binary is missing: install the Debian package janus (apt install janus)",
            pytrace=False,
        )
    janus = make_local_janus(workdir)
    try:
        janus.start()
    except JanusStartError as exc:
        pytest.fail(f"local Janus did not start: {exc}", pytrace=False)
    return janus


@pytest.fixture
def janus(tmp_path: Path) -> Iterator[LocalJanus]:
    """A Janus of this test's own: stop or restart it freely."""
    local = _start_janus(tmp_path / "janus")
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def janus_session_scope(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalJanus]:
    """One Janus shared by every test that leaves it running (use unique room numbers)."""
    local = _start_janus(tmp_path_factory.mktemp("janus"))
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
