"""The original Node server's configuration (docs/protocol.md), still accepted.

A JSON object in the file named by ``CONFIG_PATH``; each key can be overridden by the
environment variable ``CVH_CAMERA_CONFIG_<key>``. As in the original, nothing here is
fatal: an unreadable or malformed file, an unknown key, a value of the wrong type or
out of range is reported as a warning, and the default is used instead.

Keys, in the original's spelling, and where they land in ``ServerConfig``:

======================  ===========  ============================================
key                     JSON type    ServerConfig
======================  ===========  ============================================
``port``                number       ``port``
``cameraSlots``         number       ``slots``
``notifyPath``          string       ``notify_path`` (relative to the file's folder)
``janusURL``            string       ``janus.url``
``janusRoom``           number       ``janus.room``
``janusRoomSecret``     string       ``janus.secret``
``janusRoomPin``        string       ``janus.pin``
``janusBitrate``        number       ``janus.bitrate``
``janusAdminKey``       string       ``janus.admin_key``
``corsAllowedOrigins``  string       ``cors_allowed_origins`` (ours, not the original's:
                                     ``*``, or origins separated by commas)
======================  ===========  ============================================

Everything else keeps the ``ServerConfig`` default (stdin on, no preactivated slots,
browsers of the server's own origin only), except ``janus.url``, whose legacy default is
``http://localhost:8088/janus``. Two departures from the original: ``janusRoomSecret``
``default`` (the original's documented default, so known to anyone) is refused with a
warning, and an absent or refused secret becomes a random one per start; and the original
let browser pages of any origin connect over websocket, which only
``corsAllowedOrigins: "*"`` restores.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cvh_camera.server.config import (
    BITRATE_RANGE,
    DOCUMENTED_SECRET,
    PORT_RANGE,
    ROOM_RANGE,
    SLOT_COUNT_RANGE,
    JanusSettings,
    ServerConfig,
)

ENV_PREFIX: Final = "CVH_CAMERA_CONFIG_"
LEGACY_JANUS_URL: Final = "http://localhost:8088/janus"

# An integer as the environment carries it; Lua's tostring() of an integral float
# ("5000.0") counts too, as the original's parseInt() took it.
_ENV_INTEGER: Final = re.compile(r"([+-]?[0-9]+)(?:\.0*)?", re.ASCII)


@dataclass(frozen=True)
class _Key:
    name: str  # the original's key
    janus: bool  # lands in JanusSettings (else ServerConfig)
    attr: str
    limits: tuple[int, int] | None = None  # a number key's allowed range; None = string

    def default(self) -> object:
        if self.name == "janusURL":
            return LEGACY_JANUS_URL
        return getattr(JanusSettings() if self.janus else ServerConfig(), self.attr)


_KEYS: Final = (
    _Key("port", False, "port", PORT_RANGE),
    _Key("cameraSlots", False, "slots", SLOT_COUNT_RANGE),
    _Key("notifyPath", False, "notify_path"),
    _Key("janusURL", True, "url"),
    _Key("janusRoom", True, "room", ROOM_RANGE),
    _Key("janusRoomSecret", True, "secret"),
    _Key("janusRoomPin", True, "pin"),
    _Key("janusBitrate", True, "bitrate", BITRATE_RANGE),
    _Key("janusAdminKey", True, "admin_key"),
    _Key("corsAllowedOrigins", False, "cors_allowed_origins"),
)
_KEY_NAMES: Final = tuple(key.name for key in _KEYS)


def load_legacy_config(
    config_path: str, environ: Mapping[str, str]
) -> tuple[ServerConfig, list[str]]:
    """The configuration from ``config_path`` ("" = none) and ``environ``, and warnings.

    Never raises: whatever is wrong becomes a human-readable warning.
    """
    warnings: list[str] = []
    values: dict[str, int | str] = {}
    if config_path:
        values.update(_read_file(config_path, warnings))
    values.update(_read_environ(environ, warnings))
    return _build(values, config_path, warnings), warnings


def _read_file(config_path: str, warnings: list[str]) -> dict[str, int | str]:
    where = os.path.abspath(config_path)
    try:
        with open(config_path, "rb") as file:
            data = json.loads(file.read().decode("utf-8-sig"))
    except OSError as err:
        warnings.append(f"cannot read config {where}: {err.strerror or err}; using defaults")
        return {}
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError
        warnings.append(f"config {where} is malformed ({err}); using defaults")
        return {}
    if not isinstance(data, dict):
        got = _json_type(data)
        warnings.append(f"config {where} is malformed (JSON {got}, not object); using defaults")
        return {}
    values: dict[str, int | str] = {}
    for name, value in data.items():
        key = _find_key(name, f"config {where}", warnings)
        if key is None:
            continue
        try:
            values[name] = _from_json(key, value)
        except ValueError as err:
            warnings.append(f"config {where}: key {name!r} {err}; ignored")
    return values


def _read_environ(environ: Mapping[str, str], warnings: list[str]) -> dict[str, int | str]:
    values: dict[str, int | str] = {}
    for variable, text in sorted(environ.items()):
        if not variable.startswith(ENV_PREFIX):
            continue
        name = variable.removeprefix(ENV_PREFIX)
        key = _find_key(name, f"environment variable {variable}", warnings)
        if key is None:
            continue
        if key.limits is None:
            values[name] = text
        elif match := _ENV_INTEGER.fullmatch(text.strip()):
            values[name] = int(match.group(1))
        else:
            warnings.append(f"environment variable {variable}={text!r} is not an integer; ignored")
    return values


def _find_key(name: str, where: str, warnings: list[str]) -> _Key | None:
    for key in _KEYS:
        if key.name == name:
            return key
    close = difflib.get_close_matches(name, _KEY_NAMES, n=1)
    hint = f", did you mean {close[0]!r}?" if close else f" (known: {', '.join(_KEY_NAMES)})"
    warnings.append(f"{where}: unknown config key {name!r} ignored{hint}")
    return None


def _from_json(key: _Key, value: object) -> int | str:
    """A file value checked against the key's JSON type; ``ValueError`` says why not."""
    expected = "string" if key.limits is None else "number"
    if _json_type(value) != expected:
        raise ValueError(f"is of type {_json_type(value)}, but type {expected} was expected")
    if isinstance(value, str | int):  # bool is out: its JSON type is "boolean"
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError(f"is {value}, but an integer was expected")


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | dict):
        return "array" if isinstance(value, list) else "object"
    return "null" if value is None else type(value).__name__


def _origins(text: str) -> tuple[str, ...]:
    """``*`` or origins separated by commas or spaces; "" = the server's own only."""
    return tuple(part for part in re.split(r"[,\s]+", text.strip()) if part)


def _build(values: Mapping[str, int | str], config_path: str, warnings: list[str]) -> ServerConfig:
    server: dict[str, Any] = {}
    janus: dict[str, Any] = {"url": LEGACY_JANUS_URL}
    for key in _KEYS:
        value = values.get(key.name)
        if value is None:
            continue
        if key.limits is not None and not key.limits[0] <= int(value) <= key.limits[1]:
            low, high = key.limits
            warnings.append(
                f"{key.name} = {value} is out of range {low}..{high}; using {key.default()!r}"
            )
            continue
        (janus if key.janus else server)[key.attr] = value
    if janus.get("secret") == DOCUMENTED_SECRET:
        warnings.append(
            "janusRoomSecret 'default' is the original's documented default and known to "
            "anyone; using a random secret instead"
        )
        del janus["secret"]
    if "cors_allowed_origins" in server:
        server["cors_allowed_origins"] = _origins(str(server["cors_allowed_origins"]))
    notify = server.get("notify_path")
    if notify and config_path and not os.path.isabs(notify):
        folder = os.path.dirname(os.path.abspath(config_path))
        server["notify_path"] = os.path.normpath(os.path.join(folder, notify))
    return ServerConfig(**server, janus=JanusSettings(**janus))
