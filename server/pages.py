"""The browser pages the slot server serves: the receiver (`/`, `/receiver`) and the sender
(`/sender`), their static files, and `/cvh-config.json` telling them where things are."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web

from cvh_camera.server.config import IceServer, JanusSettings, ServerConfig
from cvh_camera.server.janus_proxy import EDGE_PROXY_PATH, PROXY_PATH, add_janus_proxy

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "web" / "static"
VENDOR_FILES = ("socket.io.esm.min.js",)
BUILD_HINT = (
    "The browser pages' third-party files are not built. Run `make web` "
    "(or scripts/build-web.sh) in the CVH-Camera checkout, then reload."
)
_CONFIG = web.AppKey("pages_config", ServerConfig)
_STATIC = web.AppKey("pages_static", Path)


def add_pages(app: web.Application, config: ServerConfig, static: Path = STATIC) -> None:
    app[_CONFIG] = config
    app[_STATIC] = static
    janus = config.janus
    if not janus.browser_url:
        add_janus_proxy(app, janus.url, room=janus.room)
    for index, edge in enumerate(janus.edges):
        if not edge.browser_url:
            path = EDGE_PROXY_PATH.format(index=index)
            add_janus_proxy(app, edge.url, room=janus.room, path=path, subscribe_only=True)
    for path, page in (
        ("/", "receiver.html"),
        ("/receiver", "receiver.html"),
        ("/sender", "sender.html"),
    ):
        app.router.add_get(path, _page(page))
    app.router.add_get("/cvh-config.json", _page_config)
    app.router.add_static("/static", static, follow_symlinks=False)
    missing = missing_assets(static)
    if missing:
        log.warning("browser pages unavailable: %s missing. %s", ", ".join(missing), BUILD_HINT)


def missing_assets(static: Path = STATIC) -> list[str]:
    return [name for name in VENDOR_FILES if not (static / "vendor" / name).is_file()]


def _page(name: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def serve(request: web.Request) -> web.StreamResponse:
        static = request.app[_STATIC]
        if missing_assets(static):
            return web.Response(status=503, text=BUILD_HINT, content_type="text/plain")
        return web.FileResponse(static / name, headers={"Cache-Control": "no-cache"})

    return serve


async def _page_config(request: web.Request) -> web.Response:
    config = request.app[_CONFIG]
    body = {
        "socketioPath": config.socketio_path,
        "janusUrl": browser_janus_url(config.janus),
        "room": config.janus.room,
        "iceServers": [_ice_server(server) for server in config.janus.ice_servers],
        "slots": config.slots,
    }
    return web.json_response(body, headers={"Cache-Control": "no-cache"})


def _ice_server(server: IceServer) -> dict[str, object]:
    """An RTCIceServer for the pages' peer connections."""
    entry: dict[str, object] = {"urls": list(server.urls)}
    if server.username:
        entry["username"] = server.username
    if server.credential:
        entry["credential"] = server.credential
    return entry


def browser_janus_url(janus: JanusSettings) -> str:
    """The origin Janus as the pages reach it: its browser_url, or our proxy."""
    return janus.browser_url or PROXY_PATH


def edge_browser_urls(janus: JanusSettings) -> list[str]:
    """Every edge as the pages reach it: its browser_url, or our proxy for it."""
    return [
        edge.browser_url or EDGE_PROXY_PATH.format(index=index)
        for index, edge in enumerate(janus.edges)
    ]
