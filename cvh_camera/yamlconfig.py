"""The machinery of our YAML configuration files, shared by the server and the appliance.

A configuration module declares a table of ``Field``s (dotted YAML path, attribute,
value parser) and lets a ``Reader`` walk the loaded data: unknown keys are reported with
a "did you mean", each present value goes through its parser, and every problem is
collected, so that one ``ConfigError`` names them all, each with the file, the dotted
key, the value (secrets masked) and what is allowed.

Value parsers take the raw YAML value and return the typed value, or raise
``Invalid(what is allowed)``.
"""

from __future__ import annotations

import difflib
import os
import reprlib
import stat
from collections.abc import Callable, Collection, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, ScalarNode

from cvh_camera.secrets import mask

LOG_LEVELS: Final = ("debug", "info", "warning", "error")
MAX_TOKEN_FILE: Final = 4096  # bytes
_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


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
            where += f" = {short_repr(self.value)}"
        return f"{where}: {self.allowed}".replace("\n", "\\n").replace("\r", "\\r")


class ConfigError(Exception):
    """A configuration that cannot be used; ``str()`` gives one line per problem."""

    problems: tuple[ConfigProblem, ...]

    def __init__(self, problems: Iterable[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


def load_yaml(path: Path) -> object:
    """The data of the YAML file at ``path``; a ``ConfigError`` if it cannot be read.

    A key given twice in one mapping is an error (PyYAML would keep the last).
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError) as err:
        problem = ConfigProblem(source, "", ..., f"cannot read the file: {reason(err)}")
        raise ConfigError([problem]) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except (yaml.YAMLError, RecursionError) as err:
        raise ConfigError([ConfigProblem(source, "", ..., _yaml_reason(err))]) from None


# --- value parsers: return the typed value or raise Invalid(what is allowed) ---


class Invalid(Exception):
    """A value a parser refuses; ``allowed`` says what it would take."""

    def __init__(self, allowed: str) -> None:
        super().__init__(allowed)
        self.allowed = allowed


def type_name(value: object) -> str:
    """The YAML name of ``value``'s type."""
    names = {bool: "boolean", int: "integer", str: "string", list: "list", dict: "mapping"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def wrong_type(expected: str, value: object) -> Invalid:
    return Invalid(f"expected {expected}, got {type_name(value)}")


def integer(low: int, high: int, shown: str = "") -> Callable[[object], int]:
    """A parser of integers ``low..high`` (``shown`` replaces the range in messages)."""
    expected = f"an integer {shown or f'{low}..{high}'}"

    def parse(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):  # bool is not an int
            raise wrong_type(expected, value)
        if not low <= value <= high:
            raise Invalid(f"expected {expected}")
        return value

    return parse


def text(
    expected: str, accept: Callable[[str], bool], choices: Sequence[str] = ()
) -> Callable[[object], str]:
    """A parser of strings that ``accept`` takes; a refused one gets a close ``choice``."""

    def parse(value: object) -> str:
        if isinstance(value, (int, float)):  # a YAML scalar meant as text: pin: 1234
            raise Invalid(f"{wrong_type(expected, value)} (put it in quotes)")
        if not isinstance(value, str):
            raise wrong_type(expected, value)
        if not accept(value):
            hint = suggestion(value.lower(), choices) if choices else ""
            raise Invalid(f"expected {expected}{hint}")
        return value

    return parse


def one_of(choices: Sequence[str]) -> Callable[[object], str]:
    """A parser of one of ``choices``, suggesting the closest for a wrong one."""
    return text("one of " + ", ".join(choices), choices.__contains__, choices)


def is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise wrong_type("true or false", value)
    return value


STRING: Final = text("a string", lambda _: True)
NONEMPTY: Final = text("a non-empty string", lambda value: bool(value.strip()))
URL_PATH: Final = text("a path starting with '/'", lambda value: value.startswith("/"))
HTTP_URL: Final = text("an http:// or https:// URL", is_http_url)
LOG_LEVEL: Final = one_of(LOG_LEVELS)


# --- the table of fields and its reader ---


@dataclass(frozen=True)
class Field:
    """One key of a file: ``path`` is "key" (top level) or "section.key"."""

    path: str
    attr: str  # the attribute the parsed value sets
    parse: Callable[[object], object]

    @property
    def section(self) -> str:
        """The section the key sits in; "" for the top level."""
        return self.path.rpartition(".")[0]


class Reader:
    """Checks one file's data, collecting every problem on the way.

    Values at keys named in ``secret_keys`` (the last part of the dotted path) only
    appear masked in problems. Relative paths are resolved against ``base_dir``.
    """

    def __init__(
        self,
        source: str,
        base_dir: Path,
        environ: Mapping[str, str],
        secret_keys: Collection[str] = (),
    ) -> None:
        self.source = source
        self.base_dir = base_dir
        self.environ = environ
        self.secret_keys = frozenset(secret_keys)
        self.problems: list[ConfigProblem] = []

    def report(self, key: str, value: object, allowed: str) -> None:
        if value is not ... and key.rpartition(".")[2] in self.secret_keys:
            value = Masked(mask(value if isinstance(value, str) else repr(value)))
        self.problems.append(ConfigProblem(self.source, key, value, allowed))

    def check(self, key: str, value: object, parse: Callable[[object], Any]) -> Any:
        """``parse(value)``, or ``None`` after reporting the problem."""
        try:
            return parse(value)
        except Invalid as err:
            self.report(key, value, err.allowed)
            return None

    def layout(
        self, data: object, fields: Sequence[Field], extra: Sequence[str] = ()
    ) -> dict[str, object]:
        """The raw values in ``data`` by dotted path, for the paths of ``fields`` and
        ``extra`` present; reports unknown keys and sections that are not mappings.

        A path with a dot lies in a section, a path without one at the top level;
        ``None`` for a section or for the whole file means an empty one.
        """
        paths = [f.path for f in fields] + list(extra)
        top_keys = list(dict.fromkeys(path.partition(".")[0] for path in paths))
        top = self.mapping(data, "", top_keys)
        sections = {
            name: self.mapping(top.get(name), name, _keys_in(name, paths))
            for name in top_keys
            if _keys_in(name, paths)
        }
        raw: dict[str, object] = {}
        for path in paths:
            section, _, key = path.rpartition(".")
            holder = sections[section] if section else top
            if key in holder:
                raw[path] = holder[key]
        return raw

    def parse_fields(
        self, raw: Mapping[str, object], fields: Sequence[Field]
    ) -> dict[str, dict[str, Any]]:
        """The fields' parsed values, by section ("" = top level) and attribute.

        Absent keys, invalid values (reported) and values that parse to ``None`` are left
        out, so that the dataclass default applies.
        """
        values: dict[str, dict[str, Any]] = {f.section: {} for f in fields}
        for f in fields:
            if f.path in raw:
                value = self.check(f.path, raw[f.path], f.parse)
                if value is not None:
                    values[f.section][f.attr] = value
        return values

    def mapping(self, data: object, path: str, known: Sequence[str]) -> dict[str, object]:
        """``data`` (``None`` = empty) reduced to its known keys; reports the others."""
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            shape = f"a mapping with keys {', '.join(known)}"
            self.report(path, data if path else ..., str(wrong_type(shape, data)))
            return {}
        result: dict[str, object] = {}
        for key, value in data.items():
            if isinstance(key, str) and key in known:
                result[key] = value
            else:
                name = key if isinstance(key, str) and len(key) < 80 else short_repr(key)
                hint = suggestion(name, known) or f"; expected one of: {', '.join(known)}"
                self.report(f"{path}.{name}" if path else name, ..., f"unknown key{hint}")
        return result

    def entries(
        self, data: object, path: str, shape: str, known: Sequence[str]
    ) -> Iterator[tuple[str, dict[str, object]]]:
        """The mappings of the list at `path` (``None`` = empty), each reduced to its known
        keys, with its own path (`path[i]`); reports a non-list and entries that are not
        mappings, and skips them."""
        if data is None:
            return
        if not isinstance(data, list):
            self.report(path, data, str(wrong_type(f"a list of {shape}", data)))
            return
        for index, item in enumerate(data):
            at = f"{path}[{index}]"
            if not isinstance(item, Mapping):
                self.report(at, item, str(wrong_type(f"a mapping {shape}", item)))
                continue
            yield at, self.mapping(item, at, known)

    def secret(
        self,
        entry: Mapping[str, object],
        path: str,
        name: str,
        parse: Callable[[object], str],
        *,
        required: bool = False,
    ) -> str | None:
        """A token or secret of `entry` given inline (`name`, checked by `parse`), in a file
        (`name_file`) or in the environment (`name_env`): at most one of them, or exactly
        one if `required`. "" when none is given; None after reporting a problem."""
        keys = (name, f"{name}_file", f"{name}_env")
        sources = [key for key in keys if key in entry]
        if len(sources) > 1 or (required and not sources):
            quantity = "exactly" if required else "at most"
            got = ", ".join(sources) or "none"
            self.report(path, ..., f"expected {quantity} one of {', '.join(keys)}; got {got}")
            return None
        if not sources:
            return ""
        source, key = sources[0], f"{path}.{sources[0]}"
        if source == name:
            value: str | None = self.check(key, entry[source], parse)
            return value
        reference: str | None = self.check(key, entry[source], NONEMPTY)
        if reference is None:
            return None
        if source.endswith("_file"):
            return self.token_from_file(key, reference)
        return self.token_from_env(key, reference)

    def token_from_file(self, key: str, name: str) -> str | None:
        """The one-line token in file ``name`` (relative to ``base_dir``), or ``None``
        after reporting why not."""
        path = self.base_dir / name
        try:
            token = read_small_text(path, MAX_TOKEN_FILE).strip()
        except (OSError, ValueError) as err:
            self.report(key, name, f"cannot read {path}: {reason(err)}")
            return None
        if not token:
            self.report(key, name, f"{path} is empty")
        elif "\n" in token:
            self.report(key, name, f"{path} holds more than one line")
        else:
            return token
        return None

    def token_from_env(self, key: str, name: str) -> str | None:
        """The token in environment variable ``name``, or ``None`` after reporting."""
        token = self.environ.get(name, "").strip()
        if not token:
            state = "empty" if name in self.environ else "not set"
            self.report(key, name, f"environment variable is {state}")
            return None
        return token


def _keys_in(section: str, paths: Iterable[str]) -> list[str]:
    prefix = section + "."
    return [path[len(prefix) :] for path in paths if path.startswith(prefix)]


# --- helpers ---


class Masked(str):
    """A masked secret in a problem: shown as it is, not quoted like a value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)


def suggestion(word: str, choices: Iterable[str]) -> str:
    """``", did you mean 'x'?"`` for the choice closest to ``word``, or ""."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f", did you mean {close[0]!r}?" if close else ""


def short_repr(value: object) -> str:
    """``value`` as a short repr; YAML spelling for null and booleans."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    shortener = reprlib.Repr()
    shortener.maxstring = shortener.maxother = 72
    shortener.maxlist = shortener.maxdict = 4
    return shortener.repr(value)


def reason(err: Exception) -> str:
    """Why a file could not be read, in a few words."""
    if isinstance(err, UnicodeDecodeError):
        return "not UTF-8 text"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err)


def read_small_text(path: Path, limit: int) -> str:
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
