"""The slot server's configuration: a typed model and its YAML loader.

File layout (every section and every key is optional; the defaults live in the
dataclasses below and nowhere else; ``config/server.yaml`` lists them all)::

    listen:     {host, port}
    socketio:   {path, cors_allowed_origins}
    slots:      {count, preactivated: [{slot, token | token_file | token_env, annotation}]}
    controller: {stdin, notify_path}
    janus:      {url, room, secret, pin, admin_key, bitrate, browser_url}
    log:        {level}

Everything wrong with a file is collected and raised once, as one ``ConfigError``
whose problems each name the file, the dotted key, the value and what is allowed.
Secrets (tokens, room secret, pin, admin key) only ever appear masked.
"""

from __future__ import annotations

import difflib
import os
import reprlib
import stat
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode

from wire.secrets import mask

PORT_RANGE: Final = (1, 65535)
SLOT_COUNT_RANGE: Final = (1, 64)
ROOM_RANGE: Final = (1, 2**53 - 1)  # Janus room ids travel as JSON numbers
BITRATE_RANGE: Final = (0, 2**32 - 1)  # Janus keeps the bitrate as uint32
LOG_LEVELS: Final = ("debug", "info", "warning", "error")

_TOKEN_SOURCES: Final = ("token", "token_file", "token_env")
_SECRET_KEYS: Final = frozenset({"token", "secret", "pin", "admin_key"})
_MAX_TOKEN_FILE: Final = 4096  # bytes
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class PreactivatedSlot:
    """A slot that is active from the start, with its resolved token."""

    slot: int
    token: str
    annotation: str | None = None


@dataclass(frozen=True)
class JanusSettings:
    """The Janus VideoRoom the server manages."""

    url: str = "http://127.0.0.1:8088/janus"  # Janus HTTP API base the server talks to
    room: int = 1000
    secret: str = "default"  # room secret (needed for destroy/edit/kick)
    pin: str = ""  # room pin ("" = none)
    admin_key: str = ""  # VideoRoom admin_key, "" = none
    bitrate: int = 128000  # room default bitrate, bit/s
    browser_url: str = ""  # Janus URL handed to browser pages; "" = derive/proxy later


@dataclass(frozen=True)
class ServerConfig:
    """Everything the slot server is configured with."""

    host: str = "0.0.0.0"
    port: int = 5000
    socketio_path: str = "/socket.io"
    cors_allowed_origins: tuple[str, ...] = ("*",)
    slots: int = 4
    preactivated: tuple[PreactivatedSlot, ...] = ()
    notify_path: str = ""  # "" = no notify file
    read_stdin: bool = True  # read controller commands from standard input
    janus: JanusSettings = field(default_factory=JanusSettings)
    log_level: str = "info"


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a configuration file.

    ``key`` is a dotted path (``janus.room``, ``slots.preactivated[1].token_file``), or
    "" for the file as a whole. ``value`` is what the file holds there (secrets already
    masked), or ``...`` when there is no value worth showing.
    """

    file: str
    key: str
    value: object
    allowed: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        if self.value is not ...:
            where += f" = {_short_repr(self.value)}"
        return f"{where}: {self.allowed}".replace("\n", "\\n").replace("\r", "\\r")


class ConfigError(Exception):
    """A configuration that cannot be used; ``str()`` gives one line per problem."""

    problems: tuple[ConfigProblem, ...]

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def load_server_config(path: Path, environ: Mapping[str, str]) -> ServerConfig:
    """Read and check the YAML file at ``path``; ``environ`` resolves ``token_env``."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as err:
        problem = ConfigProblem(source, "", ..., f"cannot read the file: {_reason(err)}")
        raise ConfigError([problem]) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except (yaml.YAMLError, RecursionError) as err:
        raise ConfigError([ConfigProblem(source, "", ..., _yaml_reason(err))]) from None
    return parse_server_config(data, source, path.absolute().parent, environ)


def parse_server_config(
    data: object, source: str, base_dir: Path, environ: Mapping[str, str]
) -> ServerConfig:
    """Check already-loaded YAML ``data`` (``None`` = empty file) from ``source``.

    Relative paths in it are resolved against ``base_dir``. Raises ``ConfigError``
    with every problem found.
    """
    reader = _Reader(source, base_dir, environ)
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
        f"cors={','.join(config.cors_allowed_origins) or 'none'} slots={config.slots} "
        f"preactivated={preactivated or 'none'} stdin={'on' if config.read_stdin else 'off'} "
        f"notify={config.notify_path or 'none'} janus={janus.url} room={janus.room} "
        f"secret={mask(janus.secret)} pin={mask(janus.pin)} admin_key={mask(janus.admin_key)} "
        f"bitrate={janus.bitrate} browser_url={janus.browser_url or 'auto'} "
        f"log={config.log_level}"
    )


# --- value parsers: return the typed value or raise _Invalid(what is allowed) ---


class _Invalid(Exception):
    def __init__(self, allowed: str) -> None:
        super().__init__(allowed)
        self.allowed = allowed


def _type_name(value: object) -> str:
    names = {bool: "boolean", int: "integer", str: "string", list: "list", dict: "mapping"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _wrong_type(expected: str, value: object) -> _Invalid:
    return _Invalid(f"expected {expected}, got {_type_name(value)}")


def _integer(low: int, high: int, shown: str = "") -> Callable[[object], int]:
    expected = f"an integer {shown or f'{low}..{high}'}"

    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):  # bool is not an int
            raise _wrong_type(expected, value)
        if not low <= value <= high:
            raise _Invalid(f"expected {expected}")
        return value

    return parse


def _text(
    expected: str, accept: Callable[[str], bool], choices: Sequence[str] = ()
) -> Callable[[object], str]:
    def parse(value: object) -> str:
        if isinstance(value, (int, float)):  # a YAML scalar meant as text: pin: 1234
            raise _Invalid(f"{_wrong_type(expected, value)} (put it in quotes)")
        if not isinstance(value, str):
            raise _wrong_type(expected, value)
        if not accept(value):
            hint = _suggestion(value.lower(), choices) if choices else ""
            raise _Invalid(f"expected {expected}{hint}")
        return value

    return parse


def _is_http_url(text: str) -> bool:
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise _wrong_type("true or false", value)
    return value


def _origins(value: object) -> tuple[str, ...]:
    expected = "'*' or a list of origins"
    if value == "*":
        return ("*",)
    if isinstance(value, str):
        raise _Invalid(f"expected {expected} (put a single origin in a list: [{value}])")
    if not isinstance(value, list):
        raise _wrong_type(expected, value)
    if not all(isinstance(item, str) and item.strip() for item in value):
        raise _Invalid(f"expected {expected}; every origin a non-empty string")
    return tuple(value)


def _annotation(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise _wrong_type("a string (HTML) or null", value)
    return value


def _is_absolute(text: str) -> bool:
    return text.startswith("/")


_LEVELS_TEXT: Final = "one of " + ", ".join(LOG_LEVELS)
_STRING: Final = _text("a string", lambda _: True)
_NONEMPTY: Final = _text("a non-empty string", lambda text: bool(text.strip()))


@dataclass(frozen=True)
class _Field:
    path: str  # "section.key" in the YAML file
    attr: str  # attribute of ServerConfig, or of JanusSettings for the janus section
    parse: Callable[[object], object]


_FIELDS: Final = (
    _Field("listen.host", "host", _NONEMPTY),
    _Field("listen.port", "port", _integer(*PORT_RANGE)),
    _Field("socketio.path", "socketio_path", _text("a path starting with '/'", _is_absolute)),
    _Field("socketio.cors_allowed_origins", "cors_allowed_origins", _origins),
    _Field("slots.count", "slots", _integer(*SLOT_COUNT_RANGE)),
    _Field("controller.stdin", "read_stdin", _boolean),
    _Field("controller.notify_path", "notify_path", _STRING),
    _Field("janus.url", "url", _text("an http:// or https:// URL", _is_http_url)),
    _Field("janus.room", "room", _integer(*ROOM_RANGE, shown="1..2^53-1")),
    _Field("janus.secret", "secret", _STRING),
    _Field("janus.pin", "pin", _STRING),
    _Field("janus.admin_key", "admin_key", _STRING),
    _Field("janus.bitrate", "bitrate", _integer(*BITRATE_RANGE)),
    _Field("janus.browser_url", "browser_url", _STRING),
    _Field("log.level", "log_level", _text(_LEVELS_TEXT, LOG_LEVELS.__contains__, LOG_LEVELS)),
)
_SECTIONS: Final = ("listen", "socketio", "slots", "controller", "janus", "log")
_ENTRY_KEYS: Final = ("slot", *_TOKEN_SOURCES, "annotation")
_ENTRY_SHAPE: Final = "{slot, token | token_file | token_env, annotation}"


def _section_keys(section: str) -> tuple[str, ...]:
    keys = tuple(f.path.partition(".")[2] for f in _FIELDS if f.path.startswith(section + "."))
    return (*keys, "preactivated") if section == "slots" else keys


class _Reader:
    """Checks one file's data, collecting every problem on the way."""

    def __init__(self, source: str, base_dir: Path, environ: Mapping[str, str]) -> None:
        self.source = source
        self.base_dir = base_dir
        self.environ = environ
        self.problems: list[ConfigProblem] = []

    def report(self, key: str, value: object, allowed: str) -> None:
        if value is not ... and key.rpartition(".")[2] in _SECRET_KEYS:
            value = _Masked(mask(value if isinstance(value, str) else repr(value)))
        self.problems.append(ConfigProblem(self.source, key, value, allowed))

    def check(self, key: str, value: object, parse: Callable[[object], Any]) -> Any:
        """``parse(value)``, or ``None`` after reporting the problem."""
        try:
            return parse(value)
        except _Invalid as err:
            self.report(key, value, err.allowed)
            return None

    def server_config(self, data: object) -> ServerConfig:
        top = self.mapping(data, "", _SECTIONS)
        sections = {
            name: self.mapping(top.get(name), name, _section_keys(name)) for name in _SECTIONS
        }
        server: dict[str, Any] = {}
        janus: dict[str, Any] = {}
        for f in _FIELDS:
            section, _, key = f.path.partition(".")
            if key in sections[section]:
                value = self.check(f.path, sections[section][key], f.parse)
                if value is not None:
                    (janus if section == "janus" else server)[f.attr] = value
        if server.get("notify_path"):
            server["notify_path"] = str(self.base_dir / server["notify_path"])
        slots = sections["slots"]
        count = server.get("slots", None if "count" in slots else ServerConfig.slots)
        server["preactivated"] = self.preactivated(slots.get("preactivated"), count)
        return ServerConfig(**server, janus=JanusSettings(**janus))

    def mapping(self, data: object, path: str, known: Sequence[str]) -> dict[str, object]:
        """``data`` (``None`` = empty) reduced to its known keys; reports the others."""
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            shape = f"a mapping with keys {', '.join(known)}"
            self.report(path, data if path else ..., str(_wrong_type(shape, data)))
            return {}
        result: dict[str, object] = {}
        for key, value in data.items():
            if isinstance(key, str) and key in known:
                result[key] = value
            else:
                name = key if isinstance(key, str) and len(key) < 80 else _short_repr(key)
                hint = _suggestion(name, known) or f"; expected one of: {', '.join(known)}"
                self.report(f"{path}.{name}" if path else name, ..., f"unknown key{hint}")
        return result

    def preactivated(self, data: object, count: int | None) -> tuple[PreactivatedSlot, ...]:
        if data is None:
            return ()
        if not isinstance(data, list):
            expected = f"a list of {_ENTRY_SHAPE}"
            self.report("slots.preactivated", data, str(_wrong_type(expected, data)))
            return ()
        owners: dict[int, str] = {}
        result: list[PreactivatedSlot] = []
        for index, item in enumerate(data):
            path = f"slots.preactivated[{index}]"
            if not isinstance(item, Mapping):
                self.report(path, item, str(_wrong_type(f"a mapping {_ENTRY_SHAPE}", item)))
                continue
            known_problems = len(self.problems)
            entry = self.mapping(item, path, _ENTRY_KEYS)
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
        slot: int | None = self.check(f"{path}.slot", entry["slot"], _integer(0, high, shown))
        if slot is not None and slot in owners:
            duplicate = f"duplicate: slot {slot} is already preactivated in {owners[slot]}"
            self.report(f"{path}.slot", slot, duplicate)
            return None
        if slot is not None:
            owners[slot] = path
        return slot

    def entry_token(self, entry: Mapping[str, object], path: str) -> str | None:
        sources = [key for key in _TOKEN_SOURCES if key in entry]
        if len(sources) != 1:
            expected = "exactly one of " + ", ".join(_TOKEN_SOURCES)
            self.report(path, ..., f"expected {expected}; got {', '.join(sources) or 'none'}")
            return None
        key = f"{path}.{sources[0]}"
        text: str | None = self.check(key, entry[sources[0]], _NONEMPTY)
        if text is None:
            return None
        if sources[0] == "token_file":
            return self.token_from_file(key, text)
        if sources[0] == "token_env":
            return self.token_from_env(key, text)
        return text

    def token_from_file(self, key: str, name: str) -> str | None:
        path = self.base_dir / name
        try:
            token = _read_small_text(path, _MAX_TOKEN_FILE).strip()
        except (OSError, ValueError) as err:
            self.report(key, name, f"cannot read {path}: {_reason(err)}")
            return None
        if not token:
            self.report(key, name, f"{path} is empty")
        elif "\n" in token:
            self.report(key, name, f"{path} holds more than one line")
        else:
            return token
        return None

    def token_from_env(self, key: str, name: str) -> str | None:
        token = self.environ.get(name, "").strip()
        if not token:
            state = "empty" if name in self.environ else "not set"
            self.report(key, name, f"environment variable is {state}")
            return None
        return token


# --- helpers ---


class _Masked(str):
    """A masked secret in a problem: shown as it is, not quoted like a value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def _suggestion(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f", did you mean {close[0]!r}?" if close else ""


def _short_repr(value: object) -> str:
    """``value`` as a short repr; YAML spelling for null and booleans."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    shortener = reprlib.Repr()
    shortener.maxstring = shortener.maxother = 72
    shortener.maxlist = shortener.maxdict = 4
    return shortener.repr(value)


def _reason(err: Exception) -> str:
    if isinstance(err, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err)


def _read_small_text(path: Path, limit: int) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes (a FIFO would block)."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise ValueError("not a regular file")
    with path.open("rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data.decode("utf-8")


def _yaml_reason(err: yaml.YAMLError | RecursionError) -> str:
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        mark = err.problem_mark
        context = f" ({err.context})" if err.context else ""
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        return f"invalid YAML at {where}: {err.problem}{context}"
    return "invalid YAML: " + (" ".join(str(err).split()) or "nested too deeply")


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[tuple[str, object]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag != _MERGE_TAG:
                ident = (key_node.tag, key_node.value)
                if ident in seen:
                    problem = f"duplicate key {key_node.value!r}"
                    raise ConstructorError(None, None, problem, key_node.start_mark)
                seen.add(ident)
        return super().construct_mapping(node, deep)
