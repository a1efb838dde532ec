"""server.legacy_config: the original server's JSON + environment configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cvh_camera.server.config import JanusSettings, ServerConfig
from cvh_camera.server.legacy_config import LEGACY_JANUS_URL, load_legacy_config

LEGACY_DEFAULTS = ServerConfig(janus=JanusSettings(url=LEGACY_JANUS_URL))


def write(folder: Path, content: object, name: str = "config.json") -> str:
    path = folder / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_defaults_are_the_original_ones() -> None:
    config, warnings = load_legacy_config("", {})
    assert warnings == []
    assert config == LEGACY_DEFAULTS
    assert (config.port, config.slots, config.notify_path) == (5000, 4, "")
    assert config.janus == JanusSettings(
        url="http://localhost:8088/janus",
        room=1000,
        secret="",  # a random one per start: the original's "default" is known to anyone
        pin="",
        admin_key="",
        bitrate=128000,
    )
    assert config.read_stdin and config.host == "0.0.0.0" and config.preactivated == ()
    assert (config.socketio_path, config.cors_allowed_origins) == ("/socket.io", ())


def test_the_documented_secret_is_refused_for_a_random_one(tmp_path: Path) -> None:
    config, warnings = load_legacy_config(write(tmp_path, {"janusRoomSecret": "default"}), {})
    assert config.janus.secret == ""
    assert warnings == [
        "janusRoomSecret 'default' is the original's documented default and known to "
        "anyone; using a random secret instead"
    ]


def test_cors_origins_only_where_a_key_says_so(tmp_path: Path) -> None:
    env = {"CVH_CAMERA_CONFIG_corsAllowedOrigins": "https://a.example, https://b.example"}
    config, warnings = load_legacy_config("", env)
    assert warnings == []
    assert config.cors_allowed_origins == ("https://a.example", "https://b.example")
    config, _ = load_legacy_config(write(tmp_path, {"corsAllowedOrigins": "*"}), {})
    assert config.cors_allowed_origins == ("*",)


def test_missing_file_warns_and_uses_defaults(tmp_path: Path) -> None:
    config, warnings = load_legacy_config(str(tmp_path / "missing.json"), {})
    assert config == LEGACY_DEFAULTS
    assert warnings == [
        f"cannot read config {tmp_path}/missing.json: No such file or directory; using defaults"
    ]


def test_every_key_is_mapped(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {
            "port": 5001,
            "cameraSlots": 8,
            "notifyPath": "/run/notify",
            "janusURL": "http://janus:8088/janus",
            "janusRoom": 1234,
            "janusRoomSecret": "s3cret",
            "janusRoomPin": "4321",
            "janusBitrate": 256000,
            "janusAdminKey": "adm",
        },
    )
    config, warnings = load_legacy_config(path, {})
    assert warnings == []
    assert config == ServerConfig(
        port=5001,
        slots=8,
        notify_path="/run/notify",
        janus=JanusSettings("http://janus:8088/janus", 1234, "s3cret", "4321", "adm", 256000),
    )


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"port": 5001, "janusRoomPin": "1111", "janusRoom": 7})
    environ = {
        "CVH_CAMERA_CONFIG_port": "5002",
        "CVH_CAMERA_CONFIG_janusRoomPin": "1234",
        "CVH_CAMERA_CONFIG_janusBitrate": " 64000 ",
        "CVH_CAMERA_CONFIG_cameraSlots": "6.0",  # Lua's tostring() of an integral float
        "PATH": "/usr/bin",
    }
    config, warnings = load_legacy_config(path, environ)
    assert warnings == []
    assert (config.port, config.slots) == (5002, 6)
    assert (config.janus.pin, config.janus.room, config.janus.bitrate) == ("1234", 7, 64000)


def test_environment_alone_without_a_file() -> None:
    config, warnings = load_legacy_config("", {"CVH_CAMERA_CONFIG_janusURL": "http://j/janus"})
    assert warnings == []
    assert config.janus.url == "http://j/janus"


@pytest.mark.parametrize("text", ["abc", "12.5", "", "0x10", "5000abc"])
def test_environment_non_integer_is_ignored(text: str) -> None:
    config, warnings = load_legacy_config("", {"CVH_CAMERA_CONFIG_port": text})
    assert config.port == 5000
    assert warnings == [
        f"environment variable CVH_CAMERA_CONFIG_port={text!r} is not an integer; ignored"
    ]


def test_environment_unknown_key_warns() -> None:
    config, warnings = load_legacy_config("", {"CVH_CAMERA_CONFIG_prot": "5001"})
    assert config == LEGACY_DEFAULTS
    assert warnings == [
        "environment variable CVH_CAMERA_CONFIG_prot: unknown config key 'prot' ignored,"
        " did you mean 'port'?"
    ]


@pytest.mark.parametrize(
    ("key", "value", "got", "expected"),
    [
        ("port", "5001", "string", "number"),
        ("cameraSlots", True, "boolean", "number"),
        ("janusRoom", None, "null", "number"),
        ("janusRoomPin", 1234, "number", "string"),
        ("janusRoomSecret", ["x"], "array", "string"),
        ("notifyPath", {"a": 1}, "object", "string"),
    ],
)
def test_wrong_type_is_ignored_with_a_warning(
    tmp_path: Path, key: str, value: object, got: str, expected: str
) -> None:
    path = write(tmp_path, {key: value, "janusBitrate": 1000})
    config, warnings = load_legacy_config(path, {})
    assert config == ServerConfig(janus=JanusSettings(url=LEGACY_JANUS_URL, bitrate=1000))
    assert warnings == [
        f"config {path}: key {key!r} is of type {got}, but type {expected} was expected; ignored"
    ]


def test_numbers_must_be_integers(tmp_path: Path) -> None:
    path = write(tmp_path, '{"port": 5001.0, "janusRoom": 12.5}')
    config, warnings = load_legacy_config(path, {})
    assert (config.port, config.janus.room) == (5001, 1000)
    assert warnings == [
        f"config {path}: key 'janusRoom' is 12.5, but an integer was expected; ignored"
    ]


def test_unknown_key_warns_and_the_rest_is_used(tmp_path: Path) -> None:
    path = write(tmp_path, {"janusroom": 5, "whatever": 1, "port": 5003})
    config, warnings = load_legacy_config(path, {})
    assert config.port == 5003
    assert config.janus.room == 1000
    assert warnings[0] == (
        f"config {path}: unknown config key 'janusroom' ignored, did you mean 'janusRoom'?"
    )
    assert warnings[1].startswith(f"config {path}: unknown config key 'whatever' ignored (known: ")


@pytest.mark.parametrize(
    ("values", "warning"),
    [
        ({"port": 0}, "port = 0 is out of range 1..65535; using 5000"),
        ({"port": 70000}, "port = 70000 is out of range 1..65535; using 5000"),
        ({"cameraSlots": 0}, "cameraSlots = 0 is out of range 1..64; using 4"),
        ({"janusRoom": 0}, "janusRoom = 0 is out of range 1..9007199254740991; using 1000"),
        ({"janusBitrate": -1}, "janusBitrate = -1 is out of range 0..4294967295; using 128000"),
    ],
)
def test_out_of_range_warns_and_uses_the_default(
    tmp_path: Path, values: dict[str, int], warning: str
) -> None:
    config, warnings = load_legacy_config(write(tmp_path, values), {})
    assert config == LEGACY_DEFAULTS
    assert warnings == [warning]


def test_out_of_range_from_the_environment() -> None:
    config, warnings = load_legacy_config("", {"CVH_CAMERA_CONFIG_cameraSlots": "0"})
    assert config.slots == 4
    assert warnings == ["cameraSlots = 0 is out of range 1..64; using 4"]


def test_relative_notify_path_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    path = write(tmp_path / "etc", {"notifyPath": "../run/notify.fifo"})
    config, _ = load_legacy_config(path, {})
    assert config.notify_path == str(tmp_path / "run" / "notify.fifo")


def test_relative_notify_path_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, {})
    config, _ = load_legacy_config("config.json", {"CVH_CAMERA_CONFIG_notifyPath": "n.fifo"})
    assert config.notify_path == str(tmp_path / "n.fifo")


def test_notify_path_absolute_or_without_config_file_stays(tmp_path: Path) -> None:
    path = write(tmp_path, {"notifyPath": "/run/notify"})
    assert load_legacy_config(path, {})[0].notify_path == "/run/notify"
    environ = {"CVH_CAMERA_CONFIG_notifyPath": "rel.fifo"}
    assert load_legacy_config("", environ)[0].notify_path == "rel.fifo"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{port: 5001}", "(Expecting property name enclosed in double quotes: line 1 column 2"),
        ("", "(Expecting value: line 1 column 1 (char 0))"),
        ("[1, 2]", "(JSON array, not object)"),
        ("null", "(JSON null, not object)"),
        ("5001", "(JSON number, not object)"),
    ],
)
def test_malformed_file_warns_and_uses_defaults(tmp_path: Path, content: str, reason: str) -> None:
    path = write(tmp_path, content)
    config, warnings = load_legacy_config(path, {"CVH_CAMERA_CONFIG_port": "5009"})
    assert config == ServerConfig(port=5009, janus=JanusSettings(url=LEGACY_JANUS_URL))
    assert len(warnings) == 1
    assert warnings[0].startswith(f"config {path} is malformed {reason}")
    assert warnings[0].endswith("; using defaults")


def test_warnings_never_show_secrets(tmp_path: Path) -> None:
    path = write(tmp_path, {"janusRoomSecret": "s3cret-value", "janusAdminKey": 42, "port": "x"})
    environ = {"CVH_CAMERA_CONFIG_janusRoomPin": "pin-value-123", "CVH_CAMERA_CONFIG_x": "y"}
    config, warnings = load_legacy_config(path, environ)
    assert config.janus.secret == "s3cret-value"
    assert len(warnings) == 3
    assert not any("s3cret-value" in w or "pin-value-123" in w for w in warnings)


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
legacy_keys = st.sampled_from(
    [
        *("port", "cameraSlots", "notifyPath", "janusURL", "janusRoom", "janusRoomSecret"),
        *("janusRoomPin", "janusBitrate", "janusAdminKey", "other"),
    ]
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.dictionaries(legacy_keys, json_values) | json_values,
    environ=st.dictionaries(legacy_keys.map("CVH_CAMERA_CONFIG_".__add__), st.text(max_size=8)),
)
def test_any_file_and_environment_give_a_config(
    tmp_path: Path, data: object, environ: dict[str, str]
) -> None:
    path = write(tmp_path, json.dumps(data))
    config, warnings = load_legacy_config(path, environ)
    assert isinstance(config, ServerConfig)
    assert 1 <= config.port <= 65535 and 1 <= config.slots <= 64
    assert all(isinstance(w, str) and w for w in warnings)
