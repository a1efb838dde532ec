"""server.config (the YAML configuration) and wire.secrets.mask."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from cvh_camera.secrets import mask
from cvh_camera.server.config import (
    ConfigError,
    ConfigProblem,
    EdgeSettings,
    IceServer,
    JanusSettings,
    PreactivatedSlot,
    ServerConfig,
    describe,
    load_server_config,
    parse_server_config,
)

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "server.yaml"
LONG_TOKEN = "tok-7f3a9c2e51d04b88a1f3"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in tmp_path, so that a file written there is named plainly "server.yaml"."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load_text(text: str, environ: dict[str, str] | None = None) -> ServerConfig:
    Path("server.yaml").write_text(text, encoding="utf-8")
    return load_server_config(Path("server.yaml"), environ or {})


def problems_of(text: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_text(text, environ)
    return [str(problem) for problem in caught.value.problems]


# --- the shipped file ---


def test_shipped_file_equals_the_defaults() -> None:
    assert load_server_config(SHIPPED, {}) == ServerConfig()


def test_shipped_file_lists_every_key() -> None:
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    layout = {section: sorted(keys) for section, keys in data.items()}
    assert layout == {
        "listen": ["host", "port"],
        "socketio": ["compression", "cors_allowed_origins", "path"],
        "senders": ["attempt_window", "failed_attempts", "publisher_grace"],
        "slots": ["count", "preactivated"],
        "controller": ["notify_path", "stdin"],
        "janus": sorted(f.name for f in dataclasses.fields(JanusSettings)),
        "log": ["level"],
    }
    janus_fields = {f.name for f in dataclasses.fields(JanusSettings)}
    assert janus_fields == set(data["janus"])


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n", "listen:\njanus: {}\n"])
def test_empty_file_and_sections_mean_defaults(in_tmp: Path, text: str) -> None:
    assert load_text(text) == ServerConfig()


def test_every_key_is_read(in_tmp: Path) -> None:
    config = load_text(
        """
listen: {host: "::", port: 5001}
socketio: {path: /socket.io/5000, cors_allowed_origins: [https://a.example, https://b.example]}
slots: {count: 8, preactivated: [{slot: 7, token: abc, annotation: <b>Board</b>}]}
controller: {stdin: false, notify_path: /run/cvh/notify}
janus: {url: "https://janus.example/janus", room: 1234, secret: s3cret, pin: "0042",
        admin_key: adm, bitrate: 0, browser_url: /janus}
log: {level: debug}
"""
    )
    assert config == ServerConfig(
        host="::",
        port=5001,
        socketio_path="/socket.io/5000",
        cors_allowed_origins=("https://a.example", "https://b.example"),
        slots=8,
        preactivated=(PreactivatedSlot(7, "abc", "<b>Board</b>"),),
        notify_path="/run/cvh/notify",
        read_stdin=False,
        janus=JanusSettings(
            "https://janus.example/janus", 1234, "s3cret", "0042", "adm", 0, "/janus"
        ),
        log_level="debug",
    )


# --- bad files: the exact problem text ---

P0 = "slots.preactivated[0]"
SHAPE = "{slot, token | token_file | token_env, annotation}"
ONE_OF = "expected exactly one of token, token_file, token_env; got"
LEVELS = "expected one of debug, info, warning, error"
SECTIONS = "listen, socketio, senders, slots, controller, janus, log"


def pre(*entries: str) -> str:
    """A slots section preactivating ``entries``."""
    return f"slots: {{preactivated: [{', '.join(entries)}]}}"


BAD = [
    ("janus: {rooom: 1000}", "janus.rooom: unknown key, did you mean 'room'?"),
    ("janis: {}", "janis: unknown key, did you mean 'janus'?"),
    (
        "listen: {prt: 1, zzz: 2}",
        "listen.prt: unknown key, did you mean 'port'?\n"
        "server.yaml: listen.zzz: unknown key; expected one of: host, port",
    ),
    ("controller: {zzz: 1}", "controller.zzz: unknown key; expected one of: stdin, notify_path"),
    ("listen: {port: '5000'}", "listen.port = '5000': expected an integer 1..65535, got string"),
    ("listen: {port: true}", "listen.port = true: expected an integer 1..65535, got boolean"),
    ("listen: {port: 5000.0}", "listen.port = 5000.0: expected an integer 1..65535, got float"),
    ("listen: {port: 0}", "listen.port = 0: expected an integer 1..65535"),
    ("listen: {port: 65536}", "listen.port = 65536: expected an integer 1..65535"),
    ("listen: {host: ''}", "listen.host = '': expected a non-empty string"),
    ("listen: 5000", "listen = 5000: expected a mapping with keys host, port, got integer"),
    ("janus: {room: abc}", "janus.room = 'abc': expected an integer 1..2^53-1, got string"),
    ("janus: {room: 0}", "janus.room = 0: expected an integer 1..2^53-1"),
    (
        "janus: {room: 9007199254740992}",
        "janus.room = 9007199254740992: expected an integer 1..2^53-1",
    ),
    ("janus: {bitrate: -1}", "janus.bitrate = -1: expected an integer 0..4294967295"),
    ("janus: {url: 'ws://h/j'}", "janus.url = 'ws://h/j': expected an http:// or https:// URL"),
    ("janus: {pin: 1234}", "janus.pin = ***: expected a string, got integer (put it in quotes)"),
    (
        "janus: {secret: no}",
        "janus.secret = ***: expected a string, got boolean (put it in quotes)",
    ),
    ("janus: {browser_url: null}", "janus.browser_url = null: expected a string, got null"),
    ("slots: {count: 0}", "slots.count = 0: expected an integer 1..64"),
    ("slots: {count: 65}", "slots.count = 65: expected an integer 1..64"),
    ("socketio: {path: sio}", "socketio.path = 'sio': expected a path starting with '/'"),
    (
        "socketio: {cors_allowed_origins: https://a.example}",
        "socketio.cors_allowed_origins = 'https://a.example': expected '*' or a list of origins"
        " (put a single origin in a list: [https://a.example])",
    ),
    (
        "socketio: {cors_allowed_origins: [https://a.example, '']}",
        "socketio.cors_allowed_origins = ['https://a.example', '']: expected '*' or a list of"
        " origins; every origin a non-empty string",
    ),
    ("controller: {stdin: 'yes'}", "controller.stdin = 'yes': expected true or false, got string"),
    (
        "controller: {notify_path: 5}",
        "controller.notify_path = 5: expected a string, got integer (put it in quotes)",
    ),
    ("log: {level: INFO}", f"log.level = 'INFO': {LEVELS}, did you mean 'info'?"),
    ("log: {level: warn}", f"log.level = 'warn': {LEVELS}, did you mean 'warning'?"),
    ("- listen", f"server.yaml: expected a mapping with keys {SECTIONS}, got list"),
    # preactivated slots and their tokens
    (
        "slots: {preactivated: {slot: 0}}",
        f"slots.preactivated = {{'slot': 0}}: expected a list of {SHAPE}, got mapping",
    ),
    (pre("null"), f"{P0} = null: expected a mapping {SHAPE}, got null"),
    (pre("{slot: 0}"), f"{P0}: {ONE_OF} none"),
    (pre("{slot: 0, token: abcdefgh, token_env: X}"), f"{P0}: {ONE_OF} token, token_env"),
    (pre("{token: abcdefgh}"), f"{P0}.slot: missing; expected an integer 0..3 (slots.count is 4)"),
    (pre("{slot: 4, token: abc}"), f"{P0}.slot = 4: expected an integer 0..3 (slots.count is 4)"),
    (
        "slots: {count: 2, preactivated: [{slot: '1', token: abcdefgh}]}",
        f"{P0}.slot = '1': expected an integer 0..1 (slots.count is 2), got string",
    ),
    (
        "slots: {count: 99, preactivated: [{slot: 99, token: abcdefgh}]}",
        f"slots.count = 99: expected an integer 1..64\n"
        f"server.yaml: {P0}.slot = 99: expected an integer 0..63",
    ),
    (pre("{slot: 0, token: ' '}"), f"{P0}.token = ***: expected a non-empty string"),
    (
        pre("{slot: 0, token: 123456789012}"),
        f"{P0}.token = 12…12: expected a non-empty string, got integer (put it in quotes)",
    ),
    (
        pre("{slot: 0, tokn: abcdefgh}"),
        f"{P0}.tokn: unknown key, did you mean 'token'?\nserver.yaml: {P0}: {ONE_OF} none",
    ),
    (
        pre("{slot: 0, token: abcdefgh, annotation: 5}"),
        f"{P0}.annotation = 5: expected a string (HTML) or null, got integer",
    ),
    (
        pre("{slot: 1, token: abcdefgh}", "{slot: 1, token: ijklmnop}"),
        "slots.preactivated[1].slot = 1: duplicate: slot 1 is already preactivated in"
        " slots.preactivated[0]",
    ),
    (
        pre("{slot: 0, token_env: CVH_UNSET}"),
        f"{P0}.token_env = 'CVH_UNSET': environment variable is not set",
    ),
    (
        pre("{slot: 0, token_env: CVH_BLANK}"),
        f"{P0}.token_env = 'CVH_BLANK': environment variable is empty",
    ),
    (pre("{slot: 0, token_env: ''}"), f"{P0}.token_env = '': expected a non-empty string"),
    (
        pre("{slot: 0, token_file: missing.token}"),
        f"{P0}.token_file = 'missing.token': cannot read {{dir}}/missing.token:"
        " No such file or directory",
    ),
    (
        pre("{slot: 0, token_file: empty.token}"),
        f"{P0}.token_file = 'empty.token': {{dir}}/empty.token is empty",
    ),
    (
        pre("{slot: 0, token_file: two.token}"),
        f"{P0}.token_file = 'two.token': {{dir}}/two.token holds more than one line",
    ),
    (
        pre("{slot: 0, token_file: .}"),
        f"{P0}.token_file = '.': cannot read {{dir}}: not a regular file",
    ),
    # the file itself
    (
        "janus: {room: 1000",
        "server.yaml: invalid YAML at line 1, column 19: expected ',' or '}', but got"
        " '<stream end>' (while parsing a flow mapping)",
    ),
    (
        "janus: {}\njanus: {}\n",
        "server.yaml: invalid YAML at line 2, column 1: duplicate key 'janus'",
    ),
    (
        "\tlisten: {}",
        "server.yaml: invalid YAML at line 1, column 1: found character '\\t' that cannot start"
        " any token (while scanning for the next token)",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD, ids=[text for text, _ in BAD])
def test_bad_file_gives_exact_problem(in_tmp: Path, text: str, expected: str) -> None:
    Path("empty.token").write_text("\n")
    Path("two.token").write_text("first\nsecond\n")
    environ = {"CVH_BLANK": "  "}
    lines = problems_of(text, environ)
    prefix = "" if expected.startswith("server.yaml:") else "server.yaml: "
    assert "\n".join(lines) == prefix + expected.replace("{dir}", str(in_tmp))


def test_missing_file(in_tmp: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_server_config(Path("nowhere.yaml"), {})
    assert str(caught.value) == "nowhere.yaml: cannot read the file: No such file or directory"
    assert caught.value.problems == (
        ConfigProblem("nowhere.yaml", "", ..., "cannot read the file: No such file or directory"),
    )


def test_file_that_is_not_utf8(in_tmp: Path) -> None:
    Path("server.yaml").write_bytes(b"janus: {secret: \xff}\n")
    with pytest.raises(ConfigError, match=r"^server.yaml: cannot read the file: not UTF-8 text$"):
        load_server_config(Path("server.yaml"), {})


def test_all_problems_are_reported_at_once(in_tmp: Path) -> None:
    lines = problems_of(
        "listen: {port: 0}\njanus: {room: abc, bitrat: 5}\nlog: {level: loud}\nextra: 1\n"
    )
    assert lines == [
        "server.yaml: extra: unknown key; expected one of: listen, socketio, senders, slots,"
        " controller, janus, log",
        "server.yaml: janus.bitrat: unknown key, did you mean 'bitrate'?",
        "server.yaml: listen.port = 0: expected an integer 1..65535",
        "server.yaml: janus.room = 'abc': expected an integer 1..2^53-1, got string",
        "server.yaml: log.level = 'loud': expected one of debug, info, warning, error",
    ]


def test_problem_without_key_or_value() -> None:
    assert str(ConfigProblem("a.yaml", "", ..., "broken")) == "a.yaml: broken"
    assert str(ConfigProblem("a.yaml", "x.y", ..., "broken")) == "a.yaml: x.y: broken"
    assert str(ConfigProblem("a.yaml", "x.y", None, "broken")) == "a.yaml: x.y = null: broken"


def test_long_values_are_shortened_in_problems(in_tmp: Path) -> None:
    (line,) = problems_of(f"listen: {{host: [{', '.join(['x' * 200] * 50)}]}}")
    assert len(line) < 400


# --- token sources and paths ---


def test_token_sources_are_resolved(in_tmp: Path) -> None:
    (in_tmp / "tokens").mkdir()
    (in_tmp / "tokens" / "slot1").write_text("  file-token-1\n")
    absolute = in_tmp / "slot2.token"
    absolute.write_text("file-token-2")
    config = load_text(
        f"""
slots:
  preactivated:
    - {{slot: 0, token: inline-token}}
    - {{slot: 1, token_file: tokens/slot1, annotation: one}}
    - {{slot: 2, token_file: {absolute}}}
    - {{slot: 3, token_env: CVH_SLOT3_TOKEN, annotation: null}}
""",
        {"CVH_SLOT3_TOKEN": "env-token-3\n"},
    )
    assert config.preactivated == (
        PreactivatedSlot(0, "inline-token"),
        PreactivatedSlot(1, "file-token-1", "one"),
        PreactivatedSlot(2, "file-token-2"),
        PreactivatedSlot(3, "env-token-3"),
    )


def test_token_file_is_relative_to_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "slot0.token").write_text("from-etc\n")
    (tmp_path / "etc" / "server.yaml").write_text(
        "slots: {preactivated: [{slot: 0, token_file: slot0.token}]}\n"
        "controller: {notify_path: notify.fifo}\n"
    )
    monkeypatch.chdir(tmp_path)
    config = load_server_config(Path("etc/server.yaml"), {})
    assert config.preactivated == (PreactivatedSlot(0, "from-etc"),)
    assert config.notify_path == str(tmp_path / "etc" / "notify.fifo")


def test_notify_path_absolute_or_empty_stays(in_tmp: Path) -> None:
    assert load_text("controller: {notify_path: /run/cvh/notify}").notify_path == "/run/cvh/notify"
    assert load_text("controller: {notify_path: ''}").notify_path == ""


def test_parse_resolves_against_the_given_folder(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("tok\n")
    data = {
        "slots": {"preactivated": [{"slot": 0, "token_file": "t"}]},
        "controller": {"notify_path": "n"},
    }
    config = parse_server_config(data, "inline", tmp_path, {})
    assert config.preactivated == (PreactivatedSlot(0, "tok"),)
    assert config.notify_path == str(tmp_path / "n")


# --- secrets stay masked ---


def test_describe_masks_every_secret() -> None:
    config = ServerConfig(
        preactivated=(PreactivatedSlot(0, LONG_TOKEN), PreactivatedSlot(2, "short")),
        janus=JanusSettings(secret="room-secret-value", pin="987654", admin_key="admin-key-value"),
    )
    line = describe(config)
    for secret in (LONG_TOKEN, "short", "room-secret-value", "987654", "admin-key-value"):
        assert secret not in line
    assert "preactivated=0:tok…a1f3,2:***" in line
    assert "secret=roo…alue" in line
    assert "\n" not in line


def test_describe_defaults() -> None:
    assert describe(ServerConfig()) == (
        "listen=0.0.0.0:5000 socketio_path=/socket.io cors=own-origin compression=off "
        "attempts=5/10s publisher_grace=10s slots=4 preactivated=none "
        "stdin=on notify=none janus=http://127.0.0.1:8088/janus room=1000 secret=random "
        "pin='' admin_key='' bitrate=128000 browser_url=auto edges=none ice_servers=none "
        "log=info"
    )
    assert describe(ServerConfig(host="::")).startswith("listen=[::]:5000 ")


def test_problems_never_show_a_secret(in_tmp: Path) -> None:
    text = f"""
slots:
  count: 2
  preactivated:
    - {{slot: 5, token: {LONG_TOKEN}}}
    - {{slot: 5, token: [{LONG_TOKEN}]}}
    - {{slot: 0, token: {LONG_TOKEN}, token_env: X}}
janus:
  {{secret: [{LONG_TOKEN}], pin: 98765432, admin_key: {{k: {LONG_TOKEN}}}, secrett: {LONG_TOKEN}}}
"""
    message = "\n".join(problems_of(text))
    assert LONG_TOKEN not in message
    assert "98765432" not in message


# --- hypothesis: whatever the data, only ConfigError ---

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
entry_keys = st.sampled_from(["slot", "token", "token_file", "token_env", "annotation", "tok"])
entries = st.dictionaries(entry_keys, json_values | st.integers(0, 5), max_size=4)
sections = st.fixed_dictionaries(
    {},
    optional={
        "listen": st.dictionaries(st.sampled_from(["host", "port", "x"]), json_values),
        "slots": st.fixed_dictionaries(
            {},
            optional={
                "count": st.integers(-2, 70) | json_values,
                "preactivated": st.lists(entries),
            },
        ),
        "janus": st.dictionaries(st.sampled_from(["url", "room", "pin", "bitrate"]), json_values),
        "socketio": st.dictionaries(st.sampled_from(["path", "cors_allowed_origins"]), json_values),
        "log": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(data=json_values | sections, environ=st.dictionaries(st.text(max_size=5), st.text()))
def test_any_data_gives_a_config_or_a_config_error(data: object, environ: dict[str, str]) -> None:
    try:
        config = parse_server_config(data, "h.yaml", Path("/nonexistent/cvh-camera"), environ)
    except ConfigError as err:
        assert err.problems
        assert str(err).count("\n") == len(err.problems) - 1
        return
    slots = [p.slot for p in config.preactivated]
    assert len(slots) == len(set(slots))
    assert all(0 <= slot < config.slots for slot in slots)


# --- wire.secrets.mask ---


@pytest.mark.parametrize(
    ("secret", "shown"),
    [
        ("", "''"),
        ("a", "***"),
        ("12345678", "***"),
        ("123456789", "12…89"),
        ("abcdefghijklmno", "ab…no"),
        ("abcdefghijklmnop", "abc…mnop"),
        (LONG_TOKEN, "tok…a1f3"),
    ],
)
def test_mask(secret: str, shown: str) -> None:
    assert mask(secret) == shown


@given(st.text())
def test_mask_never_shows_most_of_a_secret(secret: str) -> None:
    shown = mask(secret).replace("…", "")
    assert len(shown) <= max(3, (len(secret) - 1) // 2)
    if len(secret) > 8:
        assert secret not in mask(secret)


def test_the_documented_default_secret_is_refused(in_tmp: Path) -> None:
    assert problems_of("janus: {secret: default}\n") == [
        "server.yaml: janus.secret = ***: the original's documented default is refused "
        '(anyone can read it); leave it out or set it to "" for a random secret per start'
    ]


def test_sender_limits_and_compression(in_tmp: Path) -> None:
    Path("server.yaml").write_text(
        "socketio: {compression: true, cors_allowed_origins: '*'}\n"
        "senders: {failed_attempts: 3, attempt_window: 60, publisher_grace: 5}\n"
    )
    config = load_server_config(Path("server.yaml"), {})
    assert config.websocket_compression and config.cors_allowed_origins == ("*",)
    assert (config.failed_attempts, config.attempt_window, config.publisher_grace) == (3, 60, 5)
    assert problems_of("senders: {failed_attempts: 0, publisher_grace: yes}\n") == [
        "server.yaml: senders.failed_attempts = 0: expected an integer 1..1000",
        "server.yaml: senders.publisher_grace = true: expected an integer 1..3600, got boolean",
    ]


# --- edges ---


def test_edges_with_their_secrets_from_everywhere(in_tmp: Path) -> None:
    (in_tmp / "edge.key").write_text("file-key\n")
    config = load_text(
        "janus:\n  edges:\n"
        "    - {url: 'http://10.0.0.11:8088/janus', secret: s1, admin_key_env: EDGE_KEY}\n"
        "    - {url: 'http://e2/janus', admin_key_file: edge.key, rtp_host: 10.0.0.12,"
        " browser_url: 'https://e2.example/janus'}\n",
        {"EDGE_KEY": "env-key"},
    )
    assert config.janus.edges == (
        EdgeSettings("http://10.0.0.11:8088/janus", secret="s1", admin_key="env-key"),
        EdgeSettings(
            "http://e2/janus",
            admin_key="file-key",
            rtp_host="10.0.0.12",
            browser_url="https://e2.example/janus",
        ),
    )
    assert [edge.media_host for edge in config.janus.edges] == ["10.0.0.11", "10.0.0.12"]
    assert "edges=http://10.0.0.11:8088/janus,http://e2/janus " in describe(config)
    assert "s1" not in describe(config) and "env-key" not in describe(config)


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ("http://e/janus", "janus.edges = 'http://e/janus': expected a list of {url,"),
        ("[{}]", "janus.edges[0].url: missing; expected the edge's Janus HTTP API URL"),
        ("[{url: 'ftp://e'}]", "janus.edges[0].url = 'ftp://e': expected an http://"),
        ("[{url: 'http://127.0.0.1:8088/janus'}]", "the same Janus as janus.url"),
        ("[{url: 'http://e/j'}, {url: 'http://e/j/'}]", "the same Janus as janus.edges[0]"),
        ("[{url: 'http://e/j', secret: default}]", "documented default is refused"),
        ("[{url: 'http://e/j', secret: a, secret_env: B}]", "at most one of secret,"),
        ("[{url: 'http://e/j', admin_key_env: NOT_SET}]", "environment variable is not set"),
        ("[{url: 'http://e/j', admin_key_file: gone.key}]", "cannot read"),
        ("[{url: 'http://e/j', rtp: h}]", "janus.edges[0].rtp: unknown key"),
    ],
)
def test_bad_edges_are_named(in_tmp: Path, edges: str, expected: str) -> None:
    problems = problems_of(f"janus:\n  edges: {edges}\n")
    assert any(expected in problem for problem in problems), problems


def test_an_edge_secret_never_shows(in_tmp: Path) -> None:
    problems = problems_of("janus:\n  edges: [{url: x, secret: [hunter2-hunter2]}]\n")
    assert problems and not any("hunter2" in problem for problem in problems)


# --- ICE servers for the pages ---


def test_ice_servers(in_tmp: Path) -> None:
    config = load_text(
        "janus:\n  ice_servers:\n"
        "    - urls: 'stun:stun.example.org:3478'\n"
        "    - {urls: ['turn:t.example.org', 'turns:t.example.org:443'], username: cvh,"
        " credential_env: TURN_PASSWORD}\n",
        {"TURN_PASSWORD": "turn-secret-1234"},
    )
    assert config.janus.ice_servers == (
        IceServer(("stun:stun.example.org:3478",)),
        IceServer(("turn:t.example.org", "turns:t.example.org:443"), "cvh", "turn-secret-1234"),
    )
    assert "turn-secret-1234" not in describe(config)
    assert "ice_servers=stun:stun.example.org:3478,turn:t.example.org," in describe(config)


@pytest.mark.parametrize(
    ("servers", "expected"),
    [
        ("stun:x", "janus.ice_servers = 'stun:x': expected a list of {urls,"),
        ("[{}]", "janus.ice_servers[0].urls: missing; expected a URL or a list of URLs"),
        ("[{urls: 'http://x'}]", "starting with stun:, turn:, turns:"),
        ("[{urls: []}]", "expected a URL or a list of URLs"),
        ("[{urls: 'turn:x', credential: a, credential_env: B}]", "at most one of credential"),
        ("[{urls: 'turn:x', pass: a}]", "janus.ice_servers[0].pass: unknown key"),
        ("[{urls: 'turn:x', credential: [hunter2-hunter2]}]", "ice_servers[0].credential = "),
    ],
)
def test_bad_ice_servers_are_named(in_tmp: Path, servers: str, expected: str) -> None:
    problems = problems_of(f"janus:\n  ice_servers: {servers}\n")
    assert any(expected in problem for problem in problems), problems
    assert not any("hunter2" in problem for problem in problems)
