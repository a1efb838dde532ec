"""The Janus HTTP API on the slot server's own origin (`/janus`), for the browser pages.

One port and one TLS endpoint for everything a browser needs; Janus itself can stay on
loopback. Only Janus API paths are relayed (`/janus`, `/janus/info`, `/janus/<session>`,
`/janus/<session>/<handle>`), only to the configured Janus.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

log = logging.getLogger(__name__)

PROXY_PATH = "/janus"
_TAIL = r"{tail:(info|\d{1,20}(/\d{1,20})?)}"
_TIMEOUT = aiohttp.ClientTimeout(total=70)  # a long poll is held up to 30 s by Janus
_HTTP = web.AppKey("janus_proxy_http", aiohttp.ClientSession)
_TARGET = web.AppKey("janus_proxy_target", str)


def add_janus_proxy(app: web.Application, janus_url: str) -> None:
    app[_TARGET] = janus_url.rstrip("/")
    app.cleanup_ctx.append(_client)
    for path in (PROXY_PATH, f"{PROXY_PATH}/{_TAIL}"):
        app.router.add_route("GET", path, _relay)
        app.router.add_route("POST", path, _relay)


async def _client(app: web.Application) -> AsyncIterator[None]:
    async with aiohttp.ClientSession(timeout=_TIMEOUT) as http:
        app[_HTTP] = http
        yield


async def _relay(request: web.Request) -> web.StreamResponse:
    tail = request.match_info.get("tail", "")
    target = f"{request.app[_TARGET]}/{tail}" if tail else request.app[_TARGET]
    body = await request.read() if request.method == "POST" else None
    try:
        async with request.app[_HTTP].request(
            request.method,
            target,
            params=request.query,
            data=body,
            headers={"Content-Type": "application/json"},
        ) as answer:
            payload = await answer.read()
            return web.Response(status=answer.status, body=payload, content_type="application/json")
    except (aiohttp.ClientError, TimeoutError) as error:
        log.warning("janus proxy: %s %s failed: %s", request.method, target, error)
        return web.json_response(
            {"janus": "error", "error": {"code": 0, "reason": "Janus unreachable"}}, status=502
        )
