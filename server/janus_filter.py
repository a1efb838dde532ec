"""Which Janus HTTP API requests the `/janus` proxy lets through: the pages' needs, nothing else.

Pure rules, no I/O: the proxy (`server.janus_proxy`) decodes a body with `decode_body`,
asks `JanusRules` for a `Verdict`, and relays what is allowed. Everything is decided by
allow-lists — of paths, of Janus core requests, of VideoRoom requests and of the fields
each may carry — so a request or field added to Janus later is refused until listed here.

Allowed (Janus 1.x HTTP API, VideoRoom plugin; `room` = the configured room):

======================  ==========================================================
where                   what
======================  ==========================================================
GET  /janus/info        server info (`rid` only)
GET  /janus/<s>         the long poll (`maxev` 1 … 100, `rid`)
POST /janus             `create`
POST /janus/<s>         `keepalive`, `destroy`, `attach` to janus.plugin.videoroom
POST /janus/<s>/<h>     `trickle`, `detach`, `message` with one of the bodies below
======================  ==========================================================

Plugin bodies: `join` (ptype publisher or subscriber, our room), `listparticipants`
(our room), `configure`, `publish`, `unpublish`, `start`, `pause`, `switch`, `leave`.
Never: `record`, `filename` (recording), `bitrate` (the slot server sets it from the
controller's and the sender's limits), `secret`, `admin_key`, `id`, nor any request that
manages rooms (`create`, `destroy`, `edit`, `kick`, `rtp_forward`, …).

Janus compares request names without regard to case (`strcasecmp`); these rules compare
them exactly, so "Destroy" is refused rather than let through. The proxy forwards the
body as decoded here (re-encoded), so Janus acts on exactly what was checked.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping, Set
from dataclasses import dataclass
from typing import Any, Final

MAX_BODY: Final = 64 * 1024  # Chromium's SDP offer (video, candidates) weighs ~5 KB
VIDEOROOM: Final = "janus.plugin.videoroom"
REFUSED: Final = 403  # Janus's own JANUS_ERROR_UNAUTHORIZED
INVALID_JSON: Final = 454  # Janus's JANUS_ERROR_INVALID_JSON
INVALID_JSON_OBJECT: Final = 455  # Janus's JANUS_ERROR_INVALID_JSON_OBJECT
MAX_EVENTS: Final = 100  # the pages ask for 10 events per long poll
_SHOWN = 40  # characters of a client's string quoted in a reason
_DIGITS = re.compile(r"\d{1,20}")


class Where(enum.Enum):
    """The Janus API path a request went to."""

    ROOT = "root"  # /janus
    INFO = "info"  # /janus/info
    SESSION = "session"  # /janus/<session>
    HANDLE = "handle"  # /janus/<session>/<handle>


def where_of(tail: str) -> Where | None:
    """Classify the part after `/janus/` ("" for `/janus` itself); None: not a Janus path."""
    if tail == "":
        return Where.ROOT
    if tail == "info":
        return Where.INFO
    parts = tail.split("/")
    if len(parts) <= 2 and all(_DIGITS.fullmatch(part) for part in parts):
        return Where.SESSION if len(parts) == 1 else Where.HANDLE
    return None


@dataclass(frozen=True)
class Verdict:
    """The decision on one request; `reason` says why it was refused."""

    allowed: bool
    reason: str = ""


ALLOWED: Final = Verdict(True)


def refuse(reason: str) -> Verdict:
    return Verdict(False, reason)


class BadBody(Exception):
    """A request body the proxy cannot even judge: too big, or not a JSON object."""

    def __init__(self, status: int, code: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status  # the HTTP status of the answer
        self.code = code  # the Janus-shaped error code
        self.reason = reason


def too_large() -> BadBody:
    return BadBody(413, 413, f"request body larger than {MAX_BODY} bytes")


def decode_body(raw: bytes) -> dict[str, Any]:
    """The JSON object in `raw`; BadBody if it is too big, not JSON or not an object."""
    if len(raw) > MAX_BODY:
        raise too_large()
    try:
        payload = json.loads(raw, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError
        raise BadBody(400, INVALID_JSON, "request body is not JSON") from error
    if not isinstance(payload, dict):
        raise BadBody(400, INVALID_JSON_OBJECT, "request body is not a JSON object")
    return payload


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (Python's decoder would accept them)."""
    raise ValueError(f"{name} is not JSON")


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """What the proxy sends on: the checked payload itself."""
    return json.dumps(payload, separators=(",", ":")).encode()


def transaction_of(payload: Mapping[str, Any]) -> str | None:
    """The client's transaction, to be echoed in an error; None if it has no string one."""
    transaction = payload.get("transaction")
    return transaction if isinstance(transaction, str) else None


def shown(value: object) -> str:
    """A client's value, quoted and cut short, for a reason or a log line."""
    text = value if isinstance(value, str) else json.dumps(value)
    return repr(text[:_SHOWN] + ("…" if len(text) > _SHOWN else ""))


# ---------------------------------------------------------------- Janus core requests

_ENVELOPE: Final = frozenset({"janus", "transaction"})
# (path, janus request) → the fields it may carry besides `janus` and `transaction`.
# No `session_id`/`handle_id`: Janus would take them over the path. No `id` on create
# (a client-chosen session id), no `apisecret`/`token`.
_CORE: Final[Mapping[tuple[Where, str], Set[str]]] = {
    (Where.ROOT, "create"): frozenset(),
    (Where.SESSION, "keepalive"): frozenset(),
    (Where.SESSION, "destroy"): frozenset(),
    (Where.SESSION, "attach"): frozenset({"plugin", "opaque_id"}),
    (Where.HANDLE, "trickle"): frozenset({"candidate", "candidates"}),
    (Where.HANDLE, "detach"): frozenset(),
    (Where.HANDLE, "message"): frozenset({"body", "jsep"}),
}
_GET: Final[Mapping[Where, Set[str]]] = {
    Where.INFO: frozenset({"rid"}),
    Where.SESSION: frozenset({"maxev", "rid"}),
}

# ---------------------------------------------------------------- VideoRoom requests

_PUBLISHER_JOIN: Final = frozenset({"ptype", "room", "pin", "display", "token"})
_SUBSCRIBER_JOIN: Final = frozenset(
    {"ptype", "room", "pin", "token", "streams", "feed", "private_id", "use_msid", "autoupdate"}
)
_PUBLISH: Final = frozenset(
    {
        "audio", "video", "data", "display", "descriptions", "audiocodec", "videocodec",
        "keyframe", "streams", "update", "restart", "audio_active_packets",
        "audio_level_average",
    }
)  # fmt: skip
# `configure` is a publisher's (like publish) or a subscriber's (simulcast/SVC layers).
_CONFIGURE: Final = _PUBLISH | {
    "substream",
    "temporal",
    "fallback",
    "spatial_layer",
    "temporal_layer",
}
_MESSAGES: Final[Mapping[str, Set[str]]] = {
    "configure": _CONFIGURE,
    "publish": _PUBLISH,
    "unpublish": frozenset(),
    "start": frozenset(),
    "pause": frozenset(),
    "switch": frozenset({"streams"}),
    "leave": frozenset(),
    "listparticipants": frozenset({"room"}),
}
_JOIN: Final[Mapping[str, Set[str]]] = {
    "publisher": _PUBLISHER_JOIN,
    "subscriber": _SUBSCRIBER_JOIN,
}
_WHY_NOT: Final[Mapping[str, str]] = {
    "record": "recording is not allowed",
    "filename": "recording is not allowed",
    "bitrate": "the bitrate is set by the slot server",
}
_LISTS: Final = ("streams", "descriptions")  # arrays of objects when present


@dataclass(frozen=True)
class JanusRules:
    """The rules for one slot server: `room` is the VideoRoom it manages. On an edge
    (`subscribe_only`) pages only watch: the feeds come from the origin, and a publisher
    there would only take a seat the origin's feeds need."""

    room: int
    subscribe_only: bool = False

    def check_get(self, where: Where, query: Mapping[str, str]) -> Verdict:
        """A GET: server info, or the long poll on a session."""
        allowed = _GET.get(where)
        if allowed is None:
            return refuse(f"GET is not allowed on the {where.value} path")
        keys = set(query)
        if len(keys) != len(query):  # a MultiDict counts every repetition
            return refuse("a query parameter is repeated")
        for key in sorted(keys):
            if key not in allowed:
                return refuse(f"query parameter {shown(key)} is not allowed")
        if "maxev" in query and not _in_range(query["maxev"], 1, MAX_EVENTS):
            return refuse(f"maxev must be a number from 1 to {MAX_EVENTS}")
        if "rid" in query and not _DIGITS.fullmatch(query["rid"]):
            return refuse("rid must be a number")
        return ALLOWED

    def check_post(self, where: Where, payload: Mapping[str, Any]) -> Verdict:
        """A POST of a Janus request (already decoded into a JSON object)."""
        kind = payload.get("janus")
        if not isinstance(kind, str):
            return refuse("no janus request named")
        if not isinstance(payload.get("transaction"), str):
            return refuse("no transaction")
        fields = _CORE.get((where, kind))
        if fields is None:
            return refuse(f"janus request {shown(kind)} is not allowed on the {where.value} path")
        verdict = _only(payload, _ENVELOPE | fields, f"janus {kind}")
        if not verdict.allowed:
            return verdict
        if kind == "attach":
            return self._check_attach(payload)
        if kind == "message":
            return self._check_message(payload)
        return ALLOWED

    def _check_attach(self, payload: Mapping[str, Any]) -> Verdict:
        plugin = payload.get("plugin")
        if plugin != VIDEOROOM:
            return refuse(f"attaching to plugin {shown(plugin)} is not allowed, only {VIDEOROOM}")
        return ALLOWED

    def _check_message(self, payload: Mapping[str, Any]) -> Verdict:
        jsep = payload.get("jsep")
        if jsep is not None and not _is_jsep(jsep):
            return refuse("jsep must be an object with type offer or answer and an sdp")
        body = payload.get("body")
        if not isinstance(body, dict):
            return refuse("a plugin message needs a body object")
        return self.check_plugin_body(body)

    def check_plugin_body(self, body: Mapping[str, Any]) -> Verdict:
        """A VideoRoom request (the `body` of a `message`)."""
        request = body.get("request")
        if not isinstance(request, str):
            return refuse("no videoroom request named")
        if self.subscribe_only and (
            request in ("publish", "unpublish")
            or (request == "join" and body.get("ptype") == "publisher")
        ):
            return refuse("this Janus only carries the origin's feeds: publish to the origin")
        if request == "join":
            ptype = body.get("ptype")
            fields = _JOIN.get(ptype) if isinstance(ptype, str) else None
            if fields is None:
                return refuse("join needs ptype publisher or subscriber")
        else:
            fields = _MESSAGES.get(request)
            if fields is None:
                return refuse(f"videoroom request {shown(request)} is not allowed")
        verdict = _only(body, fields | {"request"}, request)
        if not verdict.allowed:
            return verdict
        for name in _LISTS:
            if name in body and not _is_object_list(body[name]):
                return refuse(f"{name} must be a list of objects")
        if request in ("join", "listparticipants"):
            return self._check_room(body.get("room"), request)
        return ALLOWED

    def _check_room(self, room: object, request: str) -> Verdict:
        if type(room) is not int:  # not bool (True == 1), not 1000.0
            return refuse(f"{request} needs the room number {self.room}")
        if room != self.room:
            return refuse(f"room {room} is not this server's room ({self.room})")
        return ALLOWED


def _only(payload: Mapping[str, Any], allowed: Set[str], what: str) -> Verdict:
    """Refuse the first field of `payload` that is not in `allowed`."""
    for name in payload:
        if name in allowed:
            continue
        if name in _WHY_NOT:
            return refuse(f"{_WHY_NOT[name]} ({name} in {what})")
        return refuse(f"field {shown(name)} is not allowed in {what}")
    return ALLOWED


def _is_jsep(jsep: object) -> bool:
    return (
        isinstance(jsep, dict)
        and jsep.get("type") in ("offer", "answer")
        and isinstance(jsep.get("sdp"), str)
    )


def _is_object_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, dict) for item in value)


def _in_range(text: str, low: int, high: int) -> bool:
    return bool(_DIGITS.fullmatch(text)) and low <= int(text) <= high
