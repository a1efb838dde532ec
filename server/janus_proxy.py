"""The Janus HTTP API on the slot server's own origin (`/janus`), for the browser pages.

One port and one TLS endpoint for everything a browser needs; Janus itself can stay on
loopback. Only what the receiver and sender pages need is relayed, only to the configured
Janus and only for the configured room: `server.janus_filter` holds the rules. A refused
request gets a Janus-shaped error (`{"janus": "error", "transaction", "error": {code 403,
reason}}`) and one log line; a body over `MAX_BODY` gets 413, one that is not a JSON
object 400.

Upstream connections: every receiver page holds one long poll, so the proxy holds one
upstream connection per page for up to 30 s. Long polls and requests have pools of their
own, neither with aiohttp's default cap of 100 connections (`limit=0`): keepalives and
plugin messages never wait behind long polls, nor long polls behind each other. What
bounds them is the open-file limit of the process and Janus's HTTP transport
(`mhd_connection_limit`, 1020 by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping

import aiohttp
from aiohttp import web

from cvh_camera.secrets import mask
from cvh_camera.server.janus_filter import (
    MAX_BODY,
    REFUSED,
    BadBody,
    JanusRules,
    Where,
    decode_body,
    encode_body,
    too_large,
    transaction_of,
    where_of,
)

log = logging.getLogger(__name__)

PROXY_PATH = "/janus"
EDGE_PROXY_PATH = "/janus-edge/{index}"  # edge N of janus.edges (server.cascade)
_TAIL = r"{tail:(info|\d{1,20}(/\d{1,20})?)}"
REQUEST_TIMEOUT = 8.0  # Janus answers at once (asynchronous plugin requests with "ack")
POLL_TIMEOUT = 40.0  # Janus holds a long poll for up to 30 s; janus.js waits 45 s
_CHUNK = 16 * 1024
_UNREACHABLE = 502
_NO_ANSWER = 504


class JanusProxy:
    """Relays the allowed Janus API requests of the browser pages to one Janus."""

    def __init__(self, janus_url: str, room: int, *, subscribe_only: bool = False) -> None:
        self._target = janus_url.rstrip("/")
        self._rules = JanusRules(room, subscribe_only)
        self._requests: aiohttp.ClientSession | None = None
        self._polls: aiohttp.ClientSession | None = None

    async def pools(self, app: web.Application) -> AsyncIterator[None]:
        """Cleanup context: the two upstream connection pools, open while the app runs."""
        async with _pool() as requests, _pool() as polls:
            self._requests, self._polls = requests, polls
            yield
            self._requests = self._polls = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The aiohttp handler for GET and POST on every `/janus` path."""
        tail = request.match_info.get("tail", "")
        where = where_of(tail)
        if where is None:  # the route's pattern lets only Janus paths through
            return _refused(request, "not a Janus API path", None, status=404)
        if request.method == "GET":
            return await self._get(request, tail, where)
        return await self._post(request, tail, where)

    async def _get(self, request: web.Request, tail: str, where: Where) -> web.StreamResponse:
        verdict = self._rules.check_get(where, request.query)
        if not verdict.allowed:
            # 403, not 200: a long-poll loop takes a 200 for events and polls again at once
            return _refused(request, verdict.reason, None, status=REFUSED)
        polling = where is Where.SESSION
        http = self._polls if polling else self._requests
        seconds = POLL_TIMEOUT if polling else REQUEST_TIMEOUT
        return await self._relay(request, tail, http, None, seconds, None)

    async def _post(self, request: web.Request, tail: str, where: Where) -> web.StreamResponse:
        try:
            payload = decode_body(await _read_body(request))
        except BadBody as bad:
            path = _path(request)
            log.warning("janus proxy refused peer=%s POST %s: %s", request.remote, path, bad.reason)
            answer = janus_error(bad.code, bad.reason, None, status=bad.status)
            if bad.status == 413:
                answer.force_close()  # the rest of a huge body is not worth reading
            return answer
        transaction = transaction_of(payload)
        verdict = self._rules.check_post(where, payload)
        if not verdict.allowed:
            # HTTP 200, like Janus's own errors: janus.js then reports the reason
            return _refused(request, verdict.reason, transaction, status=200)
        body = encode_body(payload)
        return await self._relay(request, tail, self._requests, body, REQUEST_TIMEOUT, transaction)

    async def _relay(
        self,
        request: web.Request,
        tail: str,
        http: aiohttp.ClientSession | None,
        body: bytes | None,
        seconds: float,
        transaction: str | None,
    ) -> web.StreamResponse:
        """One upstream exchange, bounded by `seconds`; Janus's answer goes back as it is."""
        if http is None:
            return janus_error(0, "the slot server is stopping", transaction, _UNREACHABLE)
        url = f"{self._target}/{tail}" if tail else self._target
        params = dict(request.query) if body is None else None
        try:
            async with (
                asyncio.timeout(seconds),
                http.request(request.method, url, params=params, data=body, headers=_JSON) as up,
            ):
                payload = await up.read()
                return web.Response(status=up.status, body=payload, content_type=_JSON_TYPE)
        except TimeoutError:
            reason = f"Janus did not answer within {seconds:g} s"
            status = _NO_ANSWER
        except aiohttp.ClientError as error:
            reason = f"Janus unreachable ({type(error).__name__})"
            status = _UNREACHABLE
        log.warning("janus proxy %s %s failed: %s", request.method, _path(request), reason)
        return janus_error(0, reason, transaction, status)


_JSON_TYPE = "application/json"
_JSON: Mapping[str, str] = {"Content-Type": _JSON_TYPE}


def add_janus_proxy(
    app: web.Application,
    janus_url: str,
    *,
    room: int,
    path: str = PROXY_PATH,
    subscribe_only: bool = False,
) -> None:
    """Serve the allowed part of the Janus API at `path` (`/janus`, or an edge's
    `/janus-edge/N`, `subscribe_only`), for the VideoRoom `room`."""
    proxy = JanusProxy(janus_url, room, subscribe_only=subscribe_only)
    app.cleanup_ctx.append(proxy.pools)
    for route in (path, f"{path}/{_TAIL}"):
        app.router.add_route("GET", route, proxy.handle)
        app.router.add_route("POST", route, proxy.handle)


@contextlib.asynccontextmanager
async def _pool() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session whose connector has no connection cap (aiohttp's default is 100)."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        yield http


async def _read_body(request: web.Request) -> bytes:
    """The request body, read no further than `MAX_BODY` (+1 byte to tell it was more)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise too_large()
    data = bytearray()
    async for chunk in request.content.iter_chunked(_CHUNK):
        data += chunk
        if len(data) > MAX_BODY:
            raise too_large()
    return bytes(data)


def janus_error(code: int, reason: str, transaction: str | None, status: int) -> web.Response:
    """An answer shaped like a Janus error, with the client's transaction if it had one."""
    body: dict[str, object] = {"janus": "error"}
    if transaction is not None:
        body["transaction"] = transaction
    body["error"] = {"code": code, "reason": reason}
    return web.json_response(body, status=status)


def _refused(
    request: web.Request, reason: str, transaction: str | None, *, status: int
) -> web.Response:
    peer, method, path = request.remote, request.method, _path(request)
    log.warning("janus proxy refused peer=%s %s %s: %s", peer, method, path, reason)
    return janus_error(REFUSED, reason, transaction, status)


def _path(request: web.Request) -> str:
    """The request's path for the log; session and handle ids masked (they are capabilities:
    whoever knows both can send requests on that handle)."""
    tail = request.match_info.get("tail", "")
    base = request.path[: len(request.path) - len(tail)].rstrip("/")
    parts = [part if part == "info" else mask(part) for part in tail.split("/") if part]
    return "/".join([base, *parts])
