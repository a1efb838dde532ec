"""An asyncio client for the Janus HTTP (REST) API.

A :class:`JanusSession` owns two tasks: the long poll (``GET <url>/<session>?maxev=N``)
and a keepalive. Requests get their reply in the HTTP answer; the events of
asynchronous plugin requests come through the long poll, matched by ``transaction``
to a per-request future; other events go by ``sender`` to that handle's queue. When
the poll or the keepalive fails, or Janus forgets the session, the session is lost:
pending requests and ``next_event`` fail with :class:`JanusUnavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from cvh_camera.tasks import stop_tasks

log = logging.getLogger(__name__)

POLL_MAX_EVENTS = 10
POLL_HOLD = 30.0  # Janus answers an idle long poll with a keepalive after this long
DESTROY_TIMEOUT = 2.0
EVENT_QUEUE_SIZE = 256
SESSION_GONE = 458  # "No such session"

JsonDict = dict[str, Any]


class JanusError(Exception):
    """Janus or the plugin answered a request with an error."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"janus error {code}: {reason}")
        self.code = code
        self.reason = reason


class JanusUnavailable(Exception):
    """Transport failure, timeout, malformed answer, or the session is gone."""


def _transaction() -> str:
    return secrets.token_hex(12)


async def _http_json(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    *,
    seconds: float,
    payload: JsonDict | None = None,
    params: dict[str, str] | None = None,
) -> Any:
    """One HTTP exchange; any transport-level failure becomes JanusUnavailable."""
    try:
        async with (
            asyncio.timeout(seconds),
            http.request(method, url, json=payload, params=params) as resp,
        ):
            if resp.status == 404:
                raise JanusUnavailable(f"{method} {url}: HTTP 404 (no such session or path)")
            if resp.status != 200:
                raise JanusUnavailable(f"{method} {url}: HTTP {resp.status}")
            return await resp.json(content_type=None)
    except TimeoutError as exc:
        raise JanusUnavailable(f"{method} {url}: no answer within {seconds} s") from exc
    except aiohttp.ClientError as exc:
        raise JanusUnavailable(f"{method} {url}: {exc!r}") from exc
    except ValueError as exc:
        raise JanusUnavailable(f"{method} {url}: answer is not JSON") from exc


async def _post(
    http: aiohttp.ClientSession, url: str, payload: JsonDict, seconds: float
) -> JsonDict:
    """POST a Janus request; return the answer, or raise JanusError for ``"janus": "error"``."""
    reply = await _http_json(http, "POST", url, payload=payload, seconds=seconds)
    if not isinstance(reply, dict):
        raise JanusUnavailable(f"POST {url}: answer is not a JSON object")
    if reply.get("transaction") != payload.get("transaction"):
        raise JanusUnavailable(f"POST {url}: answer has another transaction")
    if reply.get("janus") == "error":
        error = reply.get("error")
        if not isinstance(error, dict):
            raise JanusUnavailable(f"POST {url}: error answer without error object")
        raise _error(error.get("code"), error.get("reason"))
    return reply


def _error(code: Any, reason: Any) -> JanusError:
    return JanusError(code if isinstance(code, int) else 0, str(reason or ""))


def _plugin_result(reply: JsonDict) -> tuple[JsonDict, JsonDict | None]:
    """Split a plugin answer or event into (plugindata data, jsep); plugin errors raise."""
    plugindata = reply.get("plugindata")
    data = plugindata.get("data") if isinstance(plugindata, dict) else None
    if not isinstance(data, dict):
        raise JanusUnavailable(f"janus {reply.get('janus')!r} answer without plugin data")
    if "error_code" in data or "error" in data:
        raise _error(data.get("error_code"), data.get("error"))
    jsep = reply.get("jsep")
    return data, jsep if isinstance(jsep, dict) else None


def _new_id(reply: JsonDict) -> int:
    data = reply.get("data")
    new_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(new_id, int):
        raise JanusUnavailable("janus success answer without an integer data.id")
    return new_id


async def send_plugin_message(
    http: aiohttp.ClientSession,
    url: str,
    session_id: int,
    handle_id: int,
    body: JsonDict,
    *,
    timeout: float = 5.0,
) -> None:
    """Send a plugin ``message`` on somebody else's session and handle.

    Returns once Janus answered ``ack`` (asynchronous request: its event goes to that
    session's owner) or ``success`` without a plugin error.
    """
    target = f"{url.rstrip('/')}/{session_id}/{handle_id}"
    payload = {"janus": "message", "transaction": _transaction(), "body": body}
    reply = await _post(http, target, payload, timeout)
    kind = reply.get("janus")
    if kind == "success":
        _plugin_result(reply)
    elif kind != "ack":
        raise JanusUnavailable(f"unexpected answer {kind!r} to a plugin message")
    log.debug("plugin message sent session=%d handle=%d", session_id, handle_id)


class JanusSession:
    """A Janus session kept alive by its own long-poll and keepalive tasks."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        session_id: int,
        *,
        request_timeout: float,
        keepalive_interval: float,
    ) -> None:
        """Use :meth:`create`; this only wraps an existing session id."""
        self.id = session_id
        self.request_timeout = request_timeout
        self._http = http
        self._url = f"{url.rstrip('/')}/{session_id}"
        self._keepalive_interval = keepalive_interval
        self._pending: dict[str, asyncio.Future[JsonDict]] = {}
        self._handles: dict[int, JanusHandle] = {}
        self._lost_reason: JanusUnavailable | None = None
        self._lost_event = asyncio.Event()
        self._destroyed = False
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def create(
        cls,
        http: aiohttp.ClientSession,
        url: str,
        *,
        request_timeout: float = 10.0,
        keepalive_interval: float = 25.0,
    ) -> JanusSession:
        payload = {"janus": "create", "transaction": _transaction()}
        reply = await _post(http, url.rstrip("/"), payload, request_timeout)
        session = cls(
            http,
            url,
            _new_id(reply),
            request_timeout=request_timeout,
            keepalive_interval=keepalive_interval,
        )
        for what, loop in (("poll", session._poll_loop), ("keepalive", session._keepalive_loop)):
            task = asyncio.create_task(
                session._guard(what, loop), name=f"janus-{what}-{session.id}"
            )
            session._tasks.append(task)
        log.info("janus session created session=%d url=%s", session.id, url)
        return session

    @property
    def lost(self) -> bool:
        return self._lost_reason is not None

    async def wait_lost(self) -> BaseException:
        """Wait until the session is lost (or destroyed); return the reason."""
        await self._lost_event.wait()
        return self._lost_reason or JanusUnavailable(f"session {self.id} lost")

    async def attach(self, plugin: str) -> JanusHandle:
        reply = await self._call("", {"janus": "attach", "plugin": plugin}, _transaction())
        handle = JanusHandle(self, _new_id(reply), plugin)
        self._handles[handle.id] = handle
        log.info("janus handle attached session=%d handle=%d plugin=%s", self.id, handle.id, plugin)
        return handle

    async def destroy(self) -> None:
        """Stop the tasks, fail what is pending, and tell Janus (best effort). Never raises."""
        if self._destroyed:
            return
        self._destroyed = True
        self._mark_lost(JanusUnavailable(f"session {self.id} destroyed"))
        await stop_tasks(self._tasks, DESTROY_TIMEOUT)
        payload = {"janus": "destroy", "transaction": _transaction()}
        try:
            await _post(self._http, self._url, payload, DESTROY_TIMEOUT)
        except (JanusError, JanusUnavailable) as exc:
            log.info("janus session destroy not confirmed session=%d error=%s", self.id, exc)
        else:
            log.info("janus session destroyed session=%d", self.id)

    # -- requests ---------------------------------------------------------------------

    def _unavailable(self) -> JanusUnavailable:
        exc = JanusUnavailable(f"janus session {self.id} lost: {self._lost_reason}")
        exc.__cause__ = self._lost_reason
        return exc

    async def _call(self, path: str, payload: JsonDict, transaction: str) -> JsonDict:
        """POST to the session (path "") or a handle (path "/<id>"); 458 loses the session."""
        if self._lost_reason is not None:
            raise self._unavailable()
        payload = {**payload, "transaction": transaction}
        try:
            return await _post(self._http, self._url + path, payload, self.request_timeout)
        except JanusError as exc:
            if exc.code != SESSION_GONE:
                raise
            self._mark_lost(JanusUnavailable(f"janus forgot session {self.id}: {exc.reason}"))
            raise self._unavailable() from exc

    async def _message(
        self, handle_id: int, body: JsonDict, jsep: JsonDict | None, seconds: float
    ) -> tuple[JsonDict, JsonDict | None]:
        transaction = _transaction()
        while transaction in self._pending:
            transaction = _transaction()
        future: asyncio.Future[JsonDict] = asyncio.get_running_loop().create_future()
        self._pending[transaction] = future
        payload: JsonDict = {"janus": "message", "body": body}
        if jsep is not None:
            payload["jsep"] = jsep
        try:
            async with asyncio.timeout(seconds):
                reply = await self._call(f"/{handle_id}", payload, transaction)
                if reply.get("janus") == "ack":
                    reply = await future
        except TimeoutError as exc:
            raise JanusUnavailable(
                f"no answer to request={body.get('request')} handle={handle_id} within {seconds} s"
            ) from exc
        finally:
            del self._pending[transaction]
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: a loss that raced the POST must not warn
        return _plugin_result(reply)

    # -- the session's tasks ----------------------------------------------------------

    async def _guard(self, what: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run one of the session's task loops; any failure loses the session."""
        try:
            await loop()
        except JanusUnavailable as exc:
            self._mark_lost(exc)
        except Exception as exc:
            log.exception("janus %s crashed session=%d", what, self.id)
            self._mark_lost(JanusUnavailable(f"{what} crashed: {exc!r}"))

    async def _poll_loop(self) -> None:
        params = {"maxev": str(POLL_MAX_EVENTS)}
        seconds = POLL_HOLD + self.request_timeout
        while True:
            events = await _http_json(self._http, "GET", self._url, params=params, seconds=seconds)
            for event in events if isinstance(events, list) else [events]:
                self._dispatch(event)

    async def _keepalive_loop(self) -> None:
        while True:
            await asyncio.sleep(self._keepalive_interval)
            await self._call("", {"janus": "keepalive"}, _transaction())

    def _dispatch(self, event: Any) -> None:
        if not isinstance(event, dict):
            raise JanusUnavailable(f"long poll delivered a non-object: {event!r}")
        kind = event.get("janus")
        if kind == "keepalive":
            return
        if kind == "timeout":
            raise JanusUnavailable(f"janus timed out session {self.id}")
        future = self._pending.get(str(event.get("transaction")))
        if future is not None and not future.done():
            future.set_result(event)
            return
        handle = self._handles.get(event.get("sender", -1))
        if handle is not None:
            handle._push(event)
        else:
            log.debug("janus event dropped session=%d event=%s", self.id, kind)

    def _mark_lost(self, reason: JanusUnavailable) -> None:
        if self._lost_reason is not None:
            return
        self._lost_reason = reason
        self._lost_event.set()
        level = logging.INFO if self._destroyed else logging.WARNING
        log.log(level, "janus session lost session=%d reason=%s", self.id, reason)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(self._unavailable())
        for handle in list(self._handles.values()):
            handle._push(None)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()


class JanusHandle:
    """A plugin handle; unsolicited events for it queue up for :meth:`next_event`."""

    def __init__(self, session: JanusSession, handle_id: int, plugin: str) -> None:
        self.id = handle_id
        self.session = session
        self.plugin = plugin
        self._events: asyncio.Queue[JsonDict | None] = asyncio.Queue(EVENT_QUEUE_SIZE)
        self._detached = False

    async def request(self, body: JsonDict) -> JsonDict:
        """A synchronous plugin request; returns the plugin's data."""
        data, _ = await self.session._message(self.id, body, None, self.session.request_timeout)
        return data

    async def message(
        self,
        body: JsonDict,
        jsep: JsonDict | None = None,
        *,
        timeout: float = 10.0,
    ) -> tuple[JsonDict, JsonDict | None]:
        """An asynchronous plugin request: wait for its event; return (data, jsep)."""
        return await self.session._message(self.id, body, jsep, timeout)

    async def trickle(self, candidate: JsonDict | None) -> None:
        """Send one ICE candidate, or ``None`` for end-of-candidates."""
        payload = {"janus": "trickle", "candidate": candidate or {"completed": True}}
        await self.session._call(f"/{self.id}", payload, _transaction())

    async def next_event(self, timeout: float | None = None) -> JsonDict:
        """The next unsolicited event, in order; TimeoutError if none within ``timeout``.

        Events queued before the session was lost are still delivered; after them,
        JanusUnavailable.
        """
        async with asyncio.timeout(timeout):
            event = await self._events.get()
        if event is None:
            self._events.put_nowait(None)  # keep the end mark for later callers
            if self.session.lost:
                raise self.session._unavailable()
            raise JanusUnavailable(f"handle {self.id} detached")
        return event

    async def detach(self) -> None:
        """Detach from the plugin. Idempotent; does nothing more once the session is lost."""
        if self._detached:
            return
        self._detached = True
        self.session._handles.pop(self.id, None)
        self._push(None)
        if self.session.lost:
            return
        await self.session._call(f"/{self.id}", {"janus": "detach"}, _transaction())
        log.info("janus handle detached session=%d handle=%d", self.session.id, self.id)

    def _push(self, event: JsonDict | None) -> None:
        if self._events.full():
            self._events.get_nowait()
            log.warning("janus event queue full handle=%d: dropped the oldest", self.id)
        self._events.put_nowait(event)
