"""cvh_camera.janus_local: configuration generation and port picking (no Janus started)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cvh_camera.janus_local import (
    JanusStartError,
    LocalJanus,
    find_free_port,
    make_local_janus,
)

LIBRARIES = {
    "plugins": ["libjanus_videoroom.so", "libjanus_echotest.so", "libjanus_streaming.so"],
    "transports": ["libjanus_http.so", "libjanus_websockets.so", "libjanus_mqtt.so"],
    "events": ["libjanus_sampleevh.so", "libjanus_wsevh.so"],
    "loggers": ["libjanus_jsonlog.so"],
}


@pytest.fixture
def lib_dir(tmp_path: Path) -> Path:
    """A stand-in for /usr/lib/<triplet>/janus with a few libraries (and their symlinks)."""
    root = tmp_path / "lib" / "janus"
    for folder, names in LIBRARIES.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            (root / folder / name).touch()
            (root / folder / f"{name}.1").touch()
    return root


@pytest.fixture
def local(tmp_path: Path) -> LocalJanus:
    return LocalJanus(
        workdir=tmp_path / "conf",
        http_port=18088,
        ws_port=18188,
        admin_key="the-admin-key",
        rtp_port_range=(20000, 20199),
    )


def test_main_config_disables_everything_but_videoroom_http_and_websockets(
    local: LocalJanus, lib_dir: Path
) -> None:
    text = local.write_config(lib_dir).read_text()

    assert 'disable = "libjanus_echotest.so,libjanus_streaming.so"' in text
    assert 'disable = "libjanus_mqtt.so"' in text
    assert 'disable = "libjanus_sampleevh.so,libjanus_wsevh.so"' in text
    assert 'disable = "libjanus_jsonlog.so"' in text
    assert "broadcast = false" in text
    assert 'rtp_port_range = "20000-20199"' in text
    assert "ignore_mdns = true" in text
    assert f'plugins_folder = "{lib_dir / "plugins"}"' in text
    assert f'configs_folder = "{local.workdir}"' in text
    for absent in ("stun_server", "ice_enforce_list", "session_timeout = 0"):
        assert absent not in text


def test_transports_listen_on_loopback_only(local: LocalJanus, lib_dir: Path) -> None:
    local.write_config(lib_dir)
    http = (local.workdir / "janus.transport.http.jcfg").read_text()
    ws = (local.workdir / "janus.transport.websockets.jcfg").read_text()

    assert "port = 18088" in http
    assert 'ip = "127.0.0.1"' in http
    assert "admin_http = false" in http
    assert "https = false" in http
    assert "ws_port = 18188" in ws
    assert 'ws_ip = "127.0.0.1"' in ws
    assert "wss = false" in ws
    assert "admin_ws = false" in ws


def test_videoroom_config_has_admin_key_and_no_static_rooms(
    local: LocalJanus, lib_dir: Path
) -> None:
    local.write_config(lib_dir)
    text = (local.workdir / "janus.plugin.videoroom.jcfg").read_text()

    assert 'admin_key = "the-admin-key"' in text
    assert "room-" not in text


def test_urls(local: LocalJanus) -> None:
    assert local.http_url == "http://127.0.0.1:18088/janus"
    assert local.ws_url == "ws://127.0.0.1:18188"
    assert not local.running


def test_make_local_janus_picks_distinct_free_ports(tmp_path: Path) -> None:
    made = make_local_janus(tmp_path, admin_key="k")

    assert made.http_port != made.ws_port
    low, high = made.rtp_port_range
    assert 1024 < low < high < 65536
    assert made.admin_key == "k"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", made.http_port))


def test_find_free_port_is_bindable() -> None:
    port = find_free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_start_without_janus_binary_says_what_to_install(
    local: LocalJanus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(JanusStartError, match="Debian package janus"):
        local.start()
    assert not local.running


def test_stop_is_idempotent_when_never_started(local: LocalJanus) -> None:
    local.stop()
    local.stop()
