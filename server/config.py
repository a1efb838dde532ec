"""The slot server's configuration: a typed model and its YAML loader.

File layout (every section and every key is optional; the defaults live in the
dataclasses below and nowhere else; ``config/server.yaml`` lists them all)::

    listen:     {host, port}
    socketio:   {path, cors_allowed_origins, compression}
    senders:    {failed_attempts, attempt_window, publisher_grace}
    slots:      {count, preactivated: [{slot, token | token_file | token_env, annotation}]}
    controller: {stdin, notify_path}
    janus:      {url, room, secret, pin, admin_key, bitrate, browser_url}
    log:        {level}

Everything wrong with a file is collected and raised once, as one ``ConfigError``
whose problems each name the file, the dotted key, the value and what is allowed.
Secrets (tokens, room secret, pin, admin key) only ever appear masked. The generic
machinery (problems, strict YAML, value parsers, the field reader) is ``wire.yamlconfig``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from cvh_camera.protocol import ROOM_RANGE, ROOM_RANGE_SHOWN
from cvh_camera.secrets import mask
from cvh_camera.yamlconfig import (
    HTTP_URL,
    LOG_LEVEL,
    LOG_LEVELS,
    NONEMPTY,
    STRING,
    URL_PATH,
    ConfigError,
    ConfigProblem,
    Field,
    Invalid,
    Reader,
    boolean,
    integer,
    load_yaml,
    wrong_type,
)

__all__ = [
    "BITRATE_RANGE",
    "DOCUMENTED_SECRET",
    "LOG_LEVELS",
    "MAX_EDGES",
    "PORT_RANGE",
    "ROOM_RANGE",
    "SLOT_COUNT_RANGE",
    "ConfigError",
    "ConfigProblem",
    "EdgeSettings",
    "IceServer",
    "JanusSettings",
    "PreactivatedSlot",
    "ServerConfig",
    "describe",
    "load_server_config",
    "parse_server_config",
]

PORT_RANGE: Final = (1, 65535)
SLOT_COUNT_RANGE: Final = (1, 64)
BITRATE_RANGE: Final = (0, 2**32 - 1)  # Janus keeps the bitrate as uint32
ATTEMPTS_RANGE: Final = (1, 1000)
SECONDS_RANGE: Final = (1, 3600)
# The room secret the original documented: anyone who read its README knows it.
DOCUMENTED_SECRET: Final = "default"

_TOKEN_SOURCES: Final = ("token", "token_file", "token_env")
_SECRET_KEYS: Final = frozenset({"token", "secret", "pin", "admin_key", "credential"})
MAX_EDGES: Final = 32


@dataclass(frozen=True)
class PreactivatedSlot:
    """A slot that is active from the start, with its resolved token."""

    slot: int
    token: str
    annotation: str | None = None


@dataclass(frozen=True)
class EdgeSettings:
    """A further Janus that carries the origin's verified feeds to receivers (docs/scaling.md).

    The server creates the same room (number, pin) on it and forwards every verified feed
    there as a VideoRoom remote publisher with the same feed id."""

    url: str  # its Janus HTTP API base, as the server reaches it
    secret: str = ""  # the room secret on this edge; "" = a random one per start
    admin_key: str = ""  # this edge's VideoRoom admin_key; "" = none
    # Where the origin Janus sends the feeds' RTP; "" = the host of `url`.
    rtp_host: str = ""
    # The Janus URL browser pages use for this edge; "" = the server's proxy (/janus-edge/N).
    browser_url: str = ""

    @property
    def media_host(self) -> str:
        return self.rtp_host or (urlsplit(self.url).hostname or "127.0.0.1")


@dataclass(frozen=True)
class IceServer:
    """A STUN or TURN server the browser pages give their peer connections (RTCIceServer)."""

    urls: tuple[str, ...]  # stun:, turn: or turns: URLs
    username: str = ""
    credential: str = ""  # a TURN password: sent to every page (browsers need it), never logged


@dataclass(frozen=True)
class JanusSettings:
    """The Janus VideoRoom the server manages."""

    url: str = "http://127.0.0.1:8088/janus"  # Janus HTTP API base the server talks to
    room: int = 1000
    secret: str = ""  # room secret (destroy/edit/kick); "" = a random one per start
    pin: str = ""  # room pin ("" = none)
    admin_key: str = ""  # VideoRoom admin_key, "" = none
    bitrate: int = 128000  # room default bitrate, bit/s
    browser_url: str = ""  # Janus URL handed to browser pages; "" = derive/proxy later
    edges: tuple[EdgeSettings, ...] = ()  # further Janus instances fed from this one
    ice_servers: tuple[IceServer, ...] = ()  # STUN/TURN for the pages (none: host candidates)


@dataclass(frozen=True)
class ServerConfig:
    """Everything the slot server is configured with."""

    host: str = "0.0.0.0"
    port: int = 5000
    socketio_path: str = "/socket.io"
    # Browser origins allowed besides the server's own; ("*",) = any origin.
    cors_allowed_origins: tuple[str, ...] = ()
    websocket_compression: bool = False  # permessage-deflate for clients that offer it
    failed_attempts: int = 5  # failed sender_init per client address and window ...
    attempt_window: int = 10  # ... seconds, before further attempts are refused
    publisher_grace: int = 10  # seconds a Janus publisher may stay unclaimed by a sender
    slots: int = 4
    preactivated: tuple[PreactivatedSlot, ...] = ()
    notify_path: str = ""  # "" = no notify file
    read_stdin: bool = True  # read controller commands from standard input
    janus: JanusSettings = field(default_factory=JanusSettings)
    log_level: str = "info"


def load_server_config(path: Path, environ: Mapping[str, str]) -> ServerConfig:
    """Read and check the YAML file at ``path``; ``environ`` resolves ``token_env``."""
    data = load_yaml(path)
    return parse_server_config(data, str(path), path.absolute().parent, environ)


def parse_server_config(
    data: object, source: str, base_dir: Path, environ: Mapping[str, str]
) -> ServerConfig:
    """Check already-loaded YAML ``data`` (``None`` = empty file) from ``source``.

    Relative paths in it are resolved against ``base_dir``. Raises ``ConfigError``
    with every problem found.
    """
    reader = _ServerReader(source, base_dir, environ, _SECRET_KEYS)
    config = reader.server_config(data)
    if reader.problems:
        raise ConfigError(reader.problems)
    return config


def describe(config: ServerConfig) -> str:
    """A one-line summary for the log, with every secret masked."""
    janus = config.janus
    host = f"[{config.host}]" if ":" in config.host else config.host
    preactivated = ",".join(f"{p.slot}:{mask(p.token)}" for p in config.preactivated)
    return (
        f"listen={host}:{config.port} socketio_path={config.socketio_path} "
        f"cors={','.join(config.cors_allowed_origins) or 'own-origin'} "
        f"compression={'on' if config.websocket_compression else 'off'} "
        f"attempts={config.failed_attempts}/{config.attempt_window}s "
        f"publisher_grace={config.publisher_grace}s slots={config.slots} "
        f"preactivated={preactivated or 'none'} stdin={'on' if config.read_stdin else 'off'} "
        f"notify={config.notify_path or 'none'} janus={janus.url} room={janus.room} "
        f"secret={mask(janus.secret) if janus.secret else 'random'} pin={mask(janus.pin)} "
        f"admin_key={mask(janus.admin_key)} "
        f"bitrate={janus.bitrate} browser_url={janus.browser_url or 'auto'} "
        f"edges={','.join(edge.url for edge in janus.edges) or 'none'} "
        f"ice_servers={','.join(u for server in janus.ice_servers for u in server.urls) or 'none'} "
        f"log={config.log_level}"
    )


# --- the server's own value parsers ---


def _origins(value: object) -> tuple[str, ...]:
    expected = "'*' or a list of origins"
    if value == "*":
        return ("*",)
    if isinstance(value, str):
        raise Invalid(f"expected {expected} (put a single origin in a list: [{value}])")
    if not isinstance(value, list):
        raise wrong_type(expected, value)
    if not all(isinstance(item, str) and item.strip() for item in value):
        raise Invalid(f"expected {expected}; every origin a non-empty string")
    return tuple(value)


def _room_secret(value: object) -> str:
    secret = STRING(value)
    if secret == DOCUMENTED_SECRET:
        raise Invalid(
            "the original's documented default is refused (anyone can read it); "
            'leave it out or set it to "" for a random secret per start'
        )
    return secret


def _ice_urls(value: object) -> tuple[str, ...]:
    expected = f"a URL or a list of URLs starting with {', '.join(_ICE_SCHEMES)}"
    if value is ...:
        raise Invalid(f"missing; expected {expected}")
    urls = [value] if isinstance(value, str) else value
    if not isinstance(urls, list) or not urls:
        raise wrong_type(expected, value)
    if not all(isinstance(url, str) and url.startswith(_ICE_SCHEMES) for url in urls):
        raise Invalid(f"expected {expected}")
    return tuple(urls)


def _annotation(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise wrong_type("a string (HTML) or null", value)
    return value


# ``attr`` is an attribute of ServerConfig, or of JanusSettings for the janus section.
_FIELDS: Final = (
    Field("listen.host", "host", NONEMPTY),
    Field("listen.port", "port", integer(*PORT_RANGE)),
    Field("socketio.path", "socketio_path", URL_PATH),
    Field("socketio.cors_allowed_origins", "cors_allowed_origins", _origins),
    Field("socketio.compression", "websocket_compression", boolean),
    Field("senders.failed_attempts", "failed_attempts", integer(*ATTEMPTS_RANGE)),
    Field("senders.attempt_window", "attempt_window", integer(*SECONDS_RANGE)),
    Field("senders.publisher_grace", "publisher_grace", integer(*SECONDS_RANGE)),
    Field("slots.count", "slots", integer(*SLOT_COUNT_RANGE)),
    Field("controller.stdin", "read_stdin", boolean),
    Field("controller.notify_path", "notify_path", STRING),
    Field("janus.url", "url", HTTP_URL),
    Field("janus.room", "room", integer(*ROOM_RANGE, shown=ROOM_RANGE_SHOWN)),
    Field("janus.secret", "secret", _room_secret),
    Field("janus.pin", "pin", STRING),
    Field("janus.admin_key", "admin_key", STRING),
    Field("janus.bitrate", "bitrate", integer(*BITRATE_RANGE)),
    Field("janus.browser_url", "browser_url", STRING),
    Field("log.level", "log_level", LOG_LEVEL),
)
_PREACTIVATED: Final = "slots.preactivated"
_ENTRY_KEYS: Final = ("slot", *_TOKEN_SOURCES, "annotation")
_ENTRY_SHAPE: Final = "{slot, token | token_file | token_env, annotation}"
_EDGES: Final = "janus.edges"
_ICE: Final = "janus.ice_servers"
_ICE_SHAPE: Final = "{urls, username, credential | credential_file | credential_env}"
_ICE_KEYS: Final = ("urls", "username", "credential", "credential_file", "credential_env")
_ICE_SCHEMES: Final = ("stun:", "turn:", "turns:")
_EDGE_SECRETS: Final = ("secret", "admin_key")
_EDGE_KEYS: Final = (
    "url",
    *(f"{name}{suffix}" for name in _EDGE_SECRETS for suffix in ("", "_file", "_env")),
    "rtp_host",
    "browser_url",
)
_EDGE_SHAPE: Final = "{url, secret[_file|_env], admin_key[_file|_env], rtp_host, browser_url}"


class _ServerReader(Reader):
    """The field table, plus the list of preactivated slots and their token sources."""

    def server_config(self, data: object) -> ServerConfig:
        raw = self.layout(data, _FIELDS, extra=[_PREACTIVATED, _EDGES, _ICE])
        values = self.parse_fields(raw, _FIELDS)
        server: dict[str, Any] = {}
        for section, attrs in values.items():
            if section != "janus":
                server.update(attrs)
        if server.get("notify_path"):
            server["notify_path"] = str(self.base_dir / server["notify_path"])
        count = server.get("slots", None if "slots.count" in raw else ServerConfig.slots)
        server["preactivated"] = self.preactivated(raw.get(_PREACTIVATED), count)
        janus = JanusSettings(**values["janus"])
        edges = self.edges(raw.get(_EDGES), origin=janus.url)
        ice = self.ice_servers(raw.get(_ICE))
        janus = dataclasses.replace(janus, edges=edges, ice_servers=ice)
        return ServerConfig(**server, janus=janus)

    def ice_servers(self, data: object) -> tuple[IceServer, ...]:
        result: list[IceServer] = []
        for path, entry in self.entries(data, _ICE, _ICE_SHAPE, _ICE_KEYS):
            urls = self.check(f"{path}.urls", entry.get("urls", ...), _ice_urls)
            username = self.check(f"{path}.username", entry.get("username", ""), STRING)
            credential = self.secret(entry, path, "credential", STRING)
            if urls is not None and username is not None and credential is not None:
                result.append(IceServer(urls, username, credential))
        return tuple(result)

    def edges(self, data: object, *, origin: str) -> tuple[EdgeSettings, ...]:
        if isinstance(data, list) and len(data) > MAX_EDGES:
            self.report(_EDGES, ..., f"{len(data)} entries; at most {MAX_EDGES} edges")
            return ()
        seen = {origin.rstrip("/"): "janus.url"}
        result: list[EdgeSettings] = []
        for path, entry in self.entries(data, _EDGES, _EDGE_SHAPE, _EDGE_KEYS):
            known_problems = len(self.problems)
            edge = self.edge(entry, path)
            if edge is not None and edge.url.rstrip("/") in seen:
                other = seen[edge.url.rstrip("/")]
                self.report(f"{path}.url", edge.url, f"the same Janus as {other}")
            elif edge is not None and len(self.problems) == known_problems:
                seen[edge.url.rstrip("/")] = path
                result.append(edge)
        return tuple(result)

    def edge(self, entry: Mapping[str, object], path: str) -> EdgeSettings | None:
        if "url" not in entry:
            self.report(f"{path}.url", ..., "missing; expected the edge's Janus HTTP API URL")
            return None
        url: str | None = self.check(f"{path}.url", entry["url"], HTTP_URL)
        values: dict[str, Any] = {
            key: self.check(f"{path}.{key}", entry[key], STRING)
            for key in ("rtp_host", "browser_url")
            if key in entry
        }
        values["secret"] = self.secret(entry, path, "secret", _room_secret)
        values["admin_key"] = self.secret(entry, path, "admin_key", STRING)
        if url is None or None in values.values():
            return None
        return EdgeSettings(url=url, **values)

    def preactivated(self, data: object, count: int | None) -> tuple[PreactivatedSlot, ...]:
        owners: dict[int, str] = {}
        result: list[PreactivatedSlot] = []
        for path, entry in self.entries(data, _PREACTIVATED, _ENTRY_SHAPE, _ENTRY_KEYS):
            known_problems = len(self.problems)
            slot = self.entry_slot(entry, path, count, owners)
            token = self.entry_token(entry, path)
            annotation = self.check(f"{path}.annotation", entry.get("annotation"), _annotation)
            if len(self.problems) == known_problems and slot is not None and token is not None:
                result.append(PreactivatedSlot(slot, token, annotation))
        return tuple(result)

    def entry_slot(
        self, entry: Mapping[str, object], path: str, count: int | None, owners: dict[int, str]
    ) -> int | None:
        high = (SLOT_COUNT_RANGE[1] if count is None else count) - 1
        shown = f"0..{high}" + ("" if count is None else f" (slots.count is {count})")
        if "slot" not in entry:
            self.report(f"{path}.slot", ..., f"missing; expected an integer {shown}")
            return None
        slot: int | None = self.check(f"{path}.slot", entry["slot"], integer(0, high, shown))
        if slot is not None and slot in owners:
            duplicate = f"duplicate: slot {slot} is already preactivated in {owners[slot]}"
            self.report(f"{path}.slot", slot, duplicate)
            return None
        if slot is not None:
            owners[slot] = path
        return slot

    def entry_token(self, entry: Mapping[str, object], path: str) -> str | None:
        return self.secret(entry, path, "token", NONEMPTY, required=True)
