"""appliance.config: the appliance's YAML configuration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cvh_camera.appliance.config import (
    ApplianceConfig,
    CameraSettings,
    ConfigError,
    JanusLink,
    ServerLink,
    StatusSettings,
    describe,
    load_appliance_config,
    parse_appliance_config,
)

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "appliance.yaml"
LONG_TOKEN = "tok-7f3a9c2e51d04b88a1f3"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in tmp_path, so that a file written there is named plainly "appliance.yaml"."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load_text(text: str) -> ApplianceConfig:
    Path("appliance.yaml").write_text(text, encoding="utf-8")
    return load_appliance_config(Path("appliance.yaml"), {})


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_text(text)
    return [str(problem) for problem in caught.value.problems]


# --- the shipped file ---


def test_shipped_file_equals_the_defaults() -> None:
    config = load_appliance_config(SHIPPED, {})
    assert config == ApplianceConfig()
    assert not config.configured


def test_shipped_file_lists_every_key() -> None:
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    sections = {
        "server": ServerLink,
        "janus": JanusLink,
        "camera": CameraSettings,
        "status": StatusSettings,
    }
    for section, settings_class in sections.items():
        assert set(data[section]) == {f.name for f in dataclasses.fields(settings_class)}
    assert set(data) == {*sections, "slot", "token", "token_file", "name", "log"}
    assert data["log"] == {"level": "info"}


@pytest.mark.parametrize("text", ["", "# a comment\n", "server:\ncamera: {}\n"])
def test_empty_file_and_sections_mean_defaults(in_tmp: Path, text: str) -> None:
    assert load_text(text) == ApplianceConfig()


def test_every_key_is_read(in_tmp: Path) -> None:
    Path("clip.h264").write_bytes(b"\x00\x00\x00\x01")
    config = load_text(
        """
server: {url: "https://cam.example.org", socketio_path: /socket.io/5000}
slot: 0
token: abc
name: Board 1
janus: {url: "http://10.0.0.2:8088/janus", room: 1234, pin: "0042",
        ice_servers: ["stun:stun.example.org:3478", "turns:turn.example.org"]}
camera: {source: file, file: clip.h264, width: 640, height: 480, fps: 15,
         bitrate: 500000, keyframe_interval: 30}
status: {file: /run/cvh/status.txt, http_port: 0, http_host: "::"}
log: {level: debug}
"""
    )
    assert config == ApplianceConfig(
        server=ServerLink("https://cam.example.org", "/socket.io/5000"),
        slot=0,
        token="abc",
        name="Board 1",
        janus=JanusLink(
            "http://10.0.0.2:8088/janus",
            1234,
            "0042",
            ("stun:stun.example.org:3478", "turns:turn.example.org"),
        ),
        camera=CameraSettings("file", str(in_tmp / "clip.h264"), 640, 480, 15, 500_000, 30),
        status=StatusSettings("/run/cvh/status.txt", 0, "::"),
        log_level="debug",
    )
    assert config.configured


def test_placeholders_mean_not_configured(in_tmp: Path) -> None:
    config = load_text('server: {url: ""}\nslot: null\ntoken: ""\ntoken_file: ""\n')
    assert config == ApplianceConfig()
    assert not config.configured
    assert config.missing() == ["server.url", "slot", "token"]


@pytest.mark.parametrize(
    ("config", "missing"),
    [
        (ApplianceConfig(server=ServerLink("http://h:5000")), ["slot", "token"]),
        (ApplianceConfig(slot=0, token="t"), ["server.url"]),
        (ApplianceConfig(server=ServerLink("http://h:5000"), slot=3), ["token"]),
        (ApplianceConfig(server=ServerLink("http://h:5000"), slot=0, token="t"), []),
    ],
)
def test_configured_and_missing(config: ApplianceConfig, missing: list[str]) -> None:
    assert config.missing() == missing
    assert config.configured == (not missing)


# --- bad files: the exact problem text ---

URL = 'expected an http:// or https:// URL, or ""'
ICE = "expected a list of stun:, turn: or turns: URLs"
TOKEN = 'expected "" or a token (printable, no surrounding spaces)'
FILE_SOURCE = "camera.source is 'file': expected the path of an H.264 elementary stream"
TOP = "server, slot, token, token_file, name, janus, camera, status, log"

BAD = [
    # unknown keys
    ("servr: {}", "servr: unknown key, did you mean 'server'?"),
    ("slto: 1", "slto: unknown key, did you mean 'slot'?"),
    ("server: {ur: x}", "server.ur: unknown key, did you mean 'url'?"),
    ("camera: {sourc: test}", "camera.sourc: unknown key, did you mean 'source'?"),
    (
        "camera: {zzz: 1}",
        "camera.zzz: unknown key; expected one of: source, file, width, height, fps, bitrate,"
        " keyframe_interval",
    ),
    ("janus: {ice_server: []}", "janus.ice_server: unknown key, did you mean 'ice_servers'?"),
    ("janus: {ice: []}", "janus.ice: unknown key; expected one of: url, room, pin, ice_servers"),
    ("- server", f"appliance.yaml: expected a mapping with keys {TOP}, got list"),
    ("server: 5", "server = 5: expected a mapping with keys url, socketio_path, got integer"),
    # server link
    (
        "server: {url: 'ws://h:5000'}",
        f"server.url = 'ws://h:5000': {URL} (not configured yet); ws:// and wss:// are not"
        " accepted (socket.io starts over HTTP and upgrades by itself)",
    ),
    (
        "server: {url: 'wss://h'}",
        f"server.url = 'wss://h': {URL} (not configured yet); ws:// and wss:// are not"
        " accepted (socket.io starts over HTTP and upgrades by itself)",
    ),
    ("server: {url: 'ftp://h'}", f"server.url = 'ftp://h': {URL} (not configured yet)"),
    ("server: {url: 'http://'}", f"server.url = 'http://': {URL} (not configured yet)"),
    (
        "server: {url: 'http://h:99999'}",
        f"server.url = 'http://h:99999': {URL} (not configured yet)",
    ),
    ("server: {url: null}", f"server.url = null: {URL} (not configured yet), got null"),
    (
        "server: {socketio_path: sio}",
        "server.socketio_path = 'sio': expected a path starting with '/'",
    ),
    # slot, token, name
    ("slot: 64", "slot = 64: expected an integer 0..63 or null"),
    ("slot: -1", "slot = -1: expected an integer 0..63 or null"),
    ("slot: '1'", "slot = '1': expected an integer 0..63 or null, got string"),
    ("slot: true", "slot = true: expected an integer 0..63 or null, got boolean"),
    ("token: 1234", f"token = ***: {TOKEN}, got integer (put it in quotes)"),
    ("token: ' abc'", f"token = ***: {TOKEN}"),
    (
        "name: 5",
        "name = 5: expected a single line of at most 1024 printable characters, got integer"
        " (put it in quotes)",
    ),
    (
        'name: "a\\nb"',
        "name = 'a\\nb': expected a single line of at most 1024 printable characters",
    ),
    (
        "token: abc\ntoken_file: t.token",
        "token_file = 't.token': give either token or token_file, not both",
    ),
    (
        "token_file: missing.token",
        "token_file = 'missing.token': cannot read {dir}/missing.token: No such file or directory",
    ),
    ("token_file: empty.token", "token_file = 'empty.token': {dir}/empty.token is empty"),
    # janus link
    (
        "janus: {url: 'ws://h:8188'}",
        f"janus.url = 'ws://h:8188': {URL} (derived from server.url); ws:// and wss:// are not"
        " accepted (the appliance speaks Janus's HTTP API)",
    ),
    ("janus: {room: 0}", "janus.room = 0: expected an integer 1..2^53-1"),
    ("janus: {pin: 1234}", "janus.pin = ***: expected a string, got integer (put it in quotes)"),
    (
        "janus: {ice_servers: 'stun:h'}",
        f"janus.ice_servers = 'stun:h': {ICE} (put a single server in a list: [stun:h])",
    ),
    (
        "janus: {ice_servers: ['stun:h', 'http://x']}",
        f"janus.ice_servers = ['stun:h', 'http://x']: {ICE}; 'http://x' is not one",
    ),
    (
        "janus: {ice_servers: ['stun:']}",
        f"janus.ice_servers = ['stun:']: {ICE}; 'stun:' is not one",
    ),
    ("janus: {ice_servers: {a: 1}}", f"janus.ice_servers = {{'a': 1}}: {ICE}, got mapping"),
    # camera
    (
        "camera: {source: picam}",
        "camera.source = 'picam': expected one of picamera2, test, file, did you mean 'picamera2'?",
    ),
    (
        "camera: {source: Test}",
        "camera.source = 'Test': expected one of picamera2, test, file, did you mean 'test'?",
    ),
    ("camera: {source: usb}", "camera.source = 'usb': expected one of picamera2, test, file"),
    ("camera: {source: file}", f"camera.file: missing; {FILE_SOURCE}"),
    ("camera: {source: file, file: ''}", f"camera.file = '': {FILE_SOURCE}"),
    (
        "camera: {source: file, file: missing.h264}",
        "camera.file = 'missing.h264': {dir}/missing.h264: No such file or directory",
    ),
    ("camera: {source: file, file: .}", "camera.file = '.': {dir}: not a regular file"),
    ("camera: {width: 1281}", "camera.width = 1281: expected an even integer 16..2032"),
    ("camera: {width: 2048}", "camera.width = 2048: expected an even integer 16..2032"),
    ("camera: {height: 8}", "camera.height = 8: expected an even integer 16..2032"),
    ("camera: {height: 721}", "camera.height = 721: expected an even integer 16..2032"),
    (
        "camera: {width: '1280'}",
        "camera.width = '1280': expected an even integer 16..2032, got string",
    ),
    ("camera: {fps: 0}", "camera.fps = 0: expected an integer 1..60"),
    ("camera: {fps: 30.0}", "camera.fps = 30.0: expected an integer 1..60, got float"),
    ("camera: {fps: 61}", "camera.fps = 61: expected an integer 1..60"),
    ("camera: {bitrate: 49999}", "camera.bitrate = 49999: expected an integer 50000..25000000"),
    (
        "camera: {bitrate: 25000001}",
        "camera.bitrate = 25000001: expected an integer 50000..25000000",
    ),
    ("camera: {keyframe_interval: 0}", "camera.keyframe_interval = 0: expected an integer 1..600"),
    (
        "camera: {keyframe_interval: 601}",
        "camera.keyframe_interval = 601: expected an integer 1..600",
    ),
    # status and log
    ("status: {http_port: -1}", "status.http_port = -1: expected an integer 0..65535"),
    ("status: {http_port: 65536}", "status.http_port = 65536: expected an integer 0..65535"),
    ("status: {http_host: ''}", "status.http_host = '': expected a non-empty string"),
    ("status: {file: 5}", "status.file = 5: expected a string, got integer (put it in quotes)"),
    (
        "log: {level: WARN}",
        "log.level = 'WARN': expected one of debug, info, warning, error, did you mean 'warning'?",
    ),
    # the file itself
    ("slot: 1\nslot: 2", "appliance.yaml: invalid YAML at line 2, column 1: duplicate key 'slot'"),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[text for text, _ in BAD])
def test_bad_file_gives_exact_problem(in_tmp: Path, text: str, expected: str) -> None:
    Path("empty.token").write_text("\n")
    prefix = "" if expected.startswith("appliance.yaml:") else "appliance.yaml: "
    assert "\n".join(problems_of(text)) == prefix + expected.replace("{dir}", str(in_tmp))


def test_missing_file(in_tmp: Path) -> None:
    with pytest.raises(ConfigError, match=r"^nowhere.yaml: cannot read the file: No such file"):
        load_appliance_config(Path("nowhere.yaml"), {})


def test_all_problems_are_reported_at_once(in_tmp: Path) -> None:
    lines = problems_of(
        "server: {url: 'ws://h'}\nslot: 99\ntoken: abc\ntoken_file: t\nextra: 1\n"
        "camera: {source: fil, width: 1281, fsp: 30}\nlog: {level: loud}\n"
    )
    assert lines == [
        f"appliance.yaml: extra: unknown key; expected one of: {TOP}",
        "appliance.yaml: camera.fsp: unknown key, did you mean 'fps'?",
        f"appliance.yaml: server.url = 'ws://h': {URL} (not configured yet); ws:// and wss://"
        " are not accepted (socket.io starts over HTTP and upgrades by itself)",
        "appliance.yaml: slot = 99: expected an integer 0..63 or null",
        "appliance.yaml: camera.source = 'fil': expected one of picamera2, test, file,"
        " did you mean 'file'?",
        "appliance.yaml: camera.width = 1281: expected an even integer 16..2032",
        "appliance.yaml: log.level = 'loud': expected one of debug, info, warning, error",
        "appliance.yaml: token_file = 't': give either token or token_file, not both",
    ]


def test_problems_never_show_a_secret(in_tmp: Path) -> None:
    text = f"token: [{LONG_TOKEN}]\njanus: {{pin: [{LONG_TOKEN}]}}\n"
    message = "\n".join(problems_of(text))
    assert LONG_TOKEN not in message
    assert "appliance.yaml: token = ['t…f3']: " in message
    assert "appliance.yaml: janus.pin = ['t…f3']: " in message


# --- paths ---


def test_token_file_is_relative_to_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "slot.token").write_text("  from-etc\n")
    (tmp_path / "etc" / "clip.h264").write_bytes(b"\x00")
    (tmp_path / "etc" / "appliance.yaml").write_text(
        "token_file: slot.token\ncamera: {source: file, file: clip.h264}\n"
        "status: {file: status.txt}\n"
    )
    monkeypatch.chdir(tmp_path)
    config = load_appliance_config(Path("etc/appliance.yaml"), {})
    assert config.token == "from-etc"
    assert config.camera.file == str(tmp_path / "etc" / "clip.h264")
    assert config.status.file == str(tmp_path / "etc" / "status.txt")


def test_absolute_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "t"
    token_file.write_text("tok\n")
    config = parse_appliance_config({"token_file": str(token_file)}, "x", Path("/elsewhere"), {})
    assert config.token == "tok"


# --- the derived Janus URL ---


@pytest.mark.parametrize(
    ("server_url", "janus_url", "derived"),
    [
        ("", "", ""),
        ("http://192.168.1.10:5000", "", "http://192.168.1.10:8088/janus"),
        ("http://camera.local", "", "http://camera.local:8088/janus"),
        ("https://cam.example.org/cvh/", "", "https://cam.example.org:8089/janus"),
        ("http://user:pw@[fe80::1]:5000", "", "http://[fe80::1]:8088/janus"),
        ("http://h:5000", "https://j.example/janus", "https://j.example/janus"),
        ("", "http://j:8088/janus", "http://j:8088/janus"),
    ],
)
def test_janus_url(server_url: str, janus_url: str, derived: str) -> None:
    config = ApplianceConfig(server=ServerLink(server_url), janus=JanusLink(janus_url))
    assert config.janus_url == derived


# --- describe ---


def test_describe_masks_token_and_pin() -> None:
    config = ApplianceConfig(
        server=ServerLink("http://h:5000"),
        slot=2,
        token=LONG_TOKEN,
        janus=JanusLink(pin="98765432"),
    )
    line = describe(config)
    assert LONG_TOKEN not in line
    assert "98765432" not in line
    assert "token=tok…a1f3" in line
    assert "pin=***" in line
    assert "janus=http://h:8088/janus" in line
    assert line.endswith(" missing=none")


def test_describe_defaults() -> None:
    assert describe(ApplianceConfig()) == (
        "server=none socketio_path=/socket.io slot=none token='' name='' janus=none room=1000 "
        "pin='' ice=none camera=picamera2 size=1280x720 fps=30 bitrate=2000000 "
        "keyframe_interval=60 status_file=none http=0.0.0.0:8080 log=info "
        "missing=server.url,slot,token"
    )


def test_describe_is_one_line() -> None:
    config = ApplianceConfig(
        name="Board 1",
        token="x" * 9 + "\n",
        camera=CameraSettings(source="file", file="/c.h264"),
        status=StatusSettings(http_port=0),
    )
    line = describe(config)
    assert "\n" not in line
    assert "name='Board 1'" in line
    assert "camera=file file=/c.h264 " in line
    assert "http=off" in line


# --- hypothesis: whatever the data, a config or a ConfigError ---

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


def section(*keys: str) -> st.SearchStrategy[dict[str, object]]:
    return st.dictionaries(st.sampled_from([*keys, "x"]), json_values | st.integers(-2, 3000))


documents = st.fixed_dictionaries(
    {},
    optional={
        "server": section("url", "socketio_path"),
        "slot": json_values | st.integers(-1, 64),
        "token": json_values,
        "token_file": json_values,
        "name": json_values,
        "janus": section("url", "room", "pin", "ice_servers"),
        "camera": section("source", "file", "width", "height", "fps", "bitrate"),
        "status": section("file", "http_port", "http_host"),
        "log": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(data=json_values | documents)
def test_any_data_gives_a_config_or_a_config_error(data: object) -> None:
    try:
        config = parse_appliance_config(data, "h.yaml", Path("/nonexistent/cvh-camera"), {})
    except ConfigError as err:
        assert err.problems
        assert str(err).count("\n") == len(err.problems) - 1
        return
    assert config.camera.width % 2 == 0
    assert "\n" not in describe(config)
