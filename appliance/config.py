"""The appliance's configuration: a typed model and its YAML loader.

File layout (every key is optional; the defaults live in the dataclasses below and
nowhere else; ``config/appliance.yaml`` lists them all)::

    server:  {url, socketio_path}
    slot, token | token_file, name
    janus:   {url, room, pin, ice_servers}
    camera:  {source, file, width, height, fps, bitrate, keyframe_interval}
    status:  {file, http_port, http_host}
    log:     {level}

The placeholders the SD image ships (``server.url: ""``, ``slot: null``, ``token: ""``)
load fine and mean "not configured yet": ``ApplianceConfig.configured`` is false and
``missing()`` names what to fill in.

``janus.url: ""`` derives the Janus HTTP API from the server's URL: same scheme and
host, Janus's default port for that scheme (8088 for http, 8089 for https) and path
``/janus``; so ``http://192.168.1.10:5000`` gives ``http://192.168.1.10:8088/janus``.

Everything wrong with a file is raised at once, as one ``ConfigError`` (from
``wire.yamlconfig``) whose problems each name the file, the key, the value and what is
allowed. The token and the room pin only ever appear masked.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from cvh_camera.appliance.bitrate import MIN_BITRATE
from cvh_camera.appliance.sources import KINDS
from cvh_camera.protocol import ROOM_RANGE, ROOM_RANGE_SHOWN
from cvh_camera.secrets import mask
from cvh_camera.yamlconfig import (
    LOG_LEVEL,
    NONEMPTY,
    STRING,
    URL_PATH,
    ConfigError,
    ConfigProblem,
    Field,
    Invalid,
    Reader,
    integer,
    load_yaml,
    one_of,
    reason,
    short_repr,
    text,
    wrong_type,
)

__all__ = [
    "ApplianceConfig",
    "CameraSettings",
    "ConfigError",
    "ConfigProblem",
    "JanusLink",
    "ServerLink",
    "StatusSettings",
    "describe",
    "load_appliance_config",
    "parse_appliance_config",
]

SLOT_RANGE: Final = (0, 63)  # the server has at most 64 slots
SIZE_RANGE: Final = (16, 2032)  # the Pi's H.264 encoder takes at most 2032 pixels a line
FPS_RANGE: Final = (1, 60)
BITRATE_RANGE: Final = (MIN_BITRATE, 25_000_000)  # bit/s
KEYFRAME_RANGE: Final = (1, 600)  # frames
HTTP_PORT_RANGE: Final = (0, 65535)  # 0 = no status page
MAX_NAME: Final = 1024  # the server refuses longer custom names
JANUS_HTTP_PORT: Final = 8088  # Janus's default HTTP API port
JANUS_HTTPS_PORT: Final = 8089  # ... and its default HTTPS one
ICE_SCHEMES: Final = ("stun:", "turn:", "turns:")

_SECRET_KEYS: Final = frozenset({"token", "pin"})


@dataclass(frozen=True)
class ServerLink:
    """How to reach the slot server."""

    url: str = ""  # base URL, e.g. "http://192.168.1.10:5000"; "" = not configured
    socketio_path: str = "/socket.io"


@dataclass(frozen=True)
class JanusLink:
    """How to reach the Janus VideoRoom the camera publishes into."""

    url: str = ""  # Janus HTTP API; "" = derived from the server's URL
    room: int = 1000
    pin: str = ""  # room pin, "" = none
    ice_servers: tuple[str, ...] = ()  # stun:/turn:/turns: URLs; none = no STUN traffic


@dataclass(frozen=True)
class CameraSettings:
    """Where the H.264 stream comes from and how it is encoded."""

    source: str = "picamera2"  # one of sources.KINDS
    file: str = ""  # for source "file": an H.264 elementary stream (absolute once loaded)
    width: int = 1280
    height: int = 720
    fps: int = 30
    bitrate: int = 2_000_000  # bit/s
    keyframe_interval: int = 60  # frames between periodic keyframes


@dataclass(frozen=True)
class StatusSettings:
    """Where the appliance reports its state."""

    file: str = ""  # state / last-error file (absolute once loaded); "" = none
    http_port: int = 8080  # local JSON status page; 0 = off
    http_host: str = "0.0.0.0"


@dataclass(frozen=True)
class ApplianceConfig:
    """Everything the appliance is configured with."""

    server: ServerLink = field(default_factory=ServerLink)
    slot: int | None = None  # None = not configured
    token: str = ""  # from token or token_file; "" = not configured
    name: str = ""  # custom name shown to the controller; "" = none
    janus: JanusLink = field(default_factory=JanusLink)
    camera: CameraSettings = field(default_factory=CameraSettings)
    status: StatusSettings = field(default_factory=StatusSettings)
    log_level: str = "info"

    @property
    def configured(self) -> bool:
        """Whether the server URL, the slot and the token are all set."""
        return not self.missing()

    def missing(self) -> list[str]:
        """The keys among server.url, slot and token that are not set yet."""
        unset = {"server.url": not self.server.url, "slot": self.slot is None}
        unset["token"] = not self.token
        return [key for key, is_unset in unset.items() if is_unset]

    @property
    def janus_url(self) -> str:
        """``janus.url``, or the one derived from ``server.url`` (see the module)."""
        if self.janus.url or not self.server.url:
            return self.janus.url
        parts = urlsplit(self.server.url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = JANUS_HTTPS_PORT if parts.scheme == "https" else JANUS_HTTP_PORT
        return f"{parts.scheme}://{host}:{port}/janus"


def load_appliance_config(path: Path, environ: Mapping[str, str]) -> ApplianceConfig:
    """Read and check the YAML file at ``path``.

    ``environ`` is taken as the server's loader takes it; no appliance key reads the
    environment yet.
    """
    data = load_yaml(path)
    return parse_appliance_config(data, str(path), path.absolute().parent, environ)


def parse_appliance_config(
    data: object, source: str, base_dir: Path, environ: Mapping[str, str]
) -> ApplianceConfig:
    """Check already-loaded YAML ``data`` (``None`` = empty file) from ``source``.

    Relative paths in it are resolved against ``base_dir``. Raises ``ConfigError``
    with every problem found.
    """
    reader = _ApplianceReader(source, base_dir, environ, _SECRET_KEYS)
    config = reader.appliance_config(data)
    if reader.problems:
        raise ConfigError(reader.problems)
    return config


def describe(config: ApplianceConfig) -> str:
    """A one-line summary for the log, with the token and the pin masked."""
    camera, status, janus = config.camera, config.status, config.janus
    host = f"[{status.http_host}]" if ":" in status.http_host else status.http_host
    http = f"{host}:{status.http_port}" if status.http_port else "off"
    file = f" file={camera.file}" if camera.source == "file" else ""
    line = (
        f"server={config.server.url or 'none'} socketio_path={config.server.socketio_path} "
        f"slot={'none' if config.slot is None else config.slot} token={mask(config.token)} "
        f"name={config.name!r} janus={config.janus_url or 'none'} room={janus.room} "
        f"pin={mask(janus.pin)} ice={','.join(janus.ice_servers) or 'none'} "
        f"camera={camera.source}{file} size={camera.width}x{camera.height} fps={camera.fps} "
        f"bitrate={camera.bitrate} keyframe_interval={camera.keyframe_interval} "
        f"status_file={status.file or 'none'} http={http} log={config.log_level} "
        f"missing={','.join(config.missing()) or 'none'}"
    )
    return line.replace("\n", "\\n").replace("\r", "\\r")


# --- the appliance's own value parsers ---


def _is_base_url(value: str) -> bool:
    """An http(s) URL with a host (and a valid port, if any), without spaces."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    has_space = any(char.isspace() for char in value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not has_space


def _url_or_empty(empty_means: str, why_not_ws: str) -> Callable[[object], str]:
    expected = f'an http:// or https:// URL, or "" ({empty_means})'
    as_text = text(expected, lambda _: True)

    def parse(value: object) -> str:
        url = as_text(value)
        if url.lower().startswith(("ws://", "wss://")):
            raise Invalid(f"expected {expected}; ws:// and wss:// are not accepted ({why_not_ws})")
        if url and not _is_base_url(url):
            raise Invalid(f"expected {expected}")
        return url

    return parse


def _nullable(parse: Callable[[object], Any]) -> Callable[[object], Any]:
    return lambda value: None if value is None else parse(value)


def _even(low: int, high: int) -> Callable[[object], int]:
    expected = f"an even integer {low}..{high}"

    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong_type(expected, value)
        if not low <= value <= high or value % 2:
            raise Invalid(f"expected {expected}")
        return value

    return parse


def _ice_servers(value: object) -> tuple[str, ...]:
    expected = "a list of " + ", ".join(ICE_SCHEMES[:-1]) + f" or {ICE_SCHEMES[-1]} URLs"
    if isinstance(value, str):
        raise Invalid(f"expected {expected} (put a single server in a list: [{value}])")
    if not isinstance(value, list):
        raise wrong_type(expected, value)
    for item in value:
        if not isinstance(item, str) or not _is_ice_url(item):
            raise Invalid(f"expected {expected}; {short_repr(item)} is not one")
    return tuple(value)


def _is_ice_url(value: str) -> bool:
    scheme = next((s for s in ICE_SCHEMES if value.startswith(s)), "")
    rest = value[len(scheme) :]
    return bool(scheme) and bool(rest) and not any(char.isspace() for char in rest)


def _is_token(value: str) -> bool:
    return value == value.strip() and value.isprintable()


def _is_name(value: str) -> bool:
    return len(value) <= MAX_NAME and value.isprintable()


_SOCKETIO_UPGRADES: Final = "socket.io starts over HTTP and upgrades by itself"
_JANUS_HTTP: Final = "the appliance speaks Janus's HTTP API"
_TOKEN: Final = text('"" or a token (printable, no surrounding spaces)', _is_token)
_NAME: Final = text(f"a single line of at most {MAX_NAME} printable characters", _is_name)

# ``attr`` is an attribute of the section's dataclass, or of ApplianceConfig for the top
# level and the log section; token_file is resolved into ApplianceConfig.token.
_FIELDS: Final = (
    Field("server.url", "url", _url_or_empty("not configured yet", _SOCKETIO_UPGRADES)),
    Field("server.socketio_path", "socketio_path", URL_PATH),
    Field("slot", "slot", _nullable(integer(*SLOT_RANGE, shown="0..63 or null"))),
    Field("token", "token", _TOKEN),
    Field("token_file", "token_file", STRING),
    Field("name", "name", _NAME),
    Field("janus.url", "url", _url_or_empty("derived from server.url", _JANUS_HTTP)),
    Field("janus.room", "room", integer(*ROOM_RANGE, shown=ROOM_RANGE_SHOWN)),
    Field("janus.pin", "pin", STRING),
    Field("janus.ice_servers", "ice_servers", _ice_servers),
    Field("camera.source", "source", one_of(KINDS)),
    Field("camera.file", "file", STRING),
    Field("camera.width", "width", _even(*SIZE_RANGE)),
    Field("camera.height", "height", _even(*SIZE_RANGE)),
    Field("camera.fps", "fps", integer(*FPS_RANGE)),
    Field("camera.bitrate", "bitrate", integer(*BITRATE_RANGE)),
    Field("camera.keyframe_interval", "keyframe_interval", integer(*KEYFRAME_RANGE)),
    Field("status.file", "file", STRING),
    Field("status.http_port", "http_port", integer(*HTTP_PORT_RANGE)),
    Field("status.http_host", "http_host", NONEMPTY),
    Field("log.level", "log_level", LOG_LEVEL),
)


class _ApplianceReader(Reader):
    """The field table, plus the token source and the camera's file."""

    def appliance_config(self, data: object) -> ApplianceConfig:
        raw = self.layout(data, _FIELDS)
        values = self.parse_fields(raw, _FIELDS)
        top = {**values[""], **values["log"]}
        token = self.token(top.pop("token", ""), top.pop("token_file", ""))
        if token is not None:
            top["token"] = token
        camera = self.camera(values["camera"], raw)
        status = values["status"]
        if status.get("file"):
            status["file"] = str(self.base_dir / status["file"])
        return ApplianceConfig(
            server=ServerLink(**values["server"]),
            janus=JanusLink(**values["janus"]),
            camera=CameraSettings(**camera),
            status=StatusSettings(**status),
            **top,
        )

    def token(self, token: str, token_file: str) -> str | None:
        """The token given inline or in ``token_file``; ``None`` after a problem."""
        if not token_file:
            return token
        if token:
            self.report("token_file", token_file, "give either token or token_file, not both")
            return None
        return self.token_from_file("token_file", token_file)

    def camera(self, camera: dict[str, Any], raw: Mapping[str, object]) -> dict[str, Any]:
        """``camera`` with its file made absolute, checked when the source is "file"."""
        name = camera.get("file", "")
        if name:
            camera["file"] = str(self.base_dir / name)
        if camera.get("source") != "file":
            return camera
        if not name:
            need = "camera.source is 'file': expected the path of an H.264 elementary stream"
            if "camera.file" not in raw:
                self.report("camera.file", ..., f"missing; {need}")
            elif raw["camera.file"] == "":
                self.report("camera.file", "", need)
            return camera
        try:
            regular = stat.S_ISREG(os.stat(camera["file"]).st_mode)
        except (OSError, ValueError) as err:
            self.report("camera.file", name, f"{camera['file']}: {reason(err)}")
            return camera
        if not regular:
            self.report("camera.file", name, f"{camera['file']}: not a regular file")
        return camera
