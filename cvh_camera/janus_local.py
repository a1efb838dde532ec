"""Run the Debian ``janus`` binary locally with a generated configuration.

Used by the integration tests and by ``cvh-camera demo``. The API is synchronous
(call it from fixtures, or through ``asyncio.to_thread`` from async code).

The generated configuration exposes only what CVH-Camera uses: the HTTP
transport and the WebSocket transport (plain ``ws``) bound to 127.0.0.1 (or `host`), and the
VideoRoom plugin with an ``admin_key`` and no static rooms. Every other plugin,
transport, event handler and logger is disabled.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import json
import logging
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

VIDEOROOM_LIBRARY = "libjanus_videoroom.so"
ENABLED_TRANSPORTS = ("libjanus_http.so", "libjanus_websockets.so")
RTP_RANGE_WIDTH = 200
# Below Linux's ephemeral range (32768+), so find_free_port() rarely collides with it.
RTP_RANGE_LOW, RTP_RANGE_HIGH = 20000, 32000
LOG_TAIL_LINES = 30


PR_SET_PDEATHSIG = 1


class JanusStartError(Exception):
    """Janus is not installed, or did not come up (or go down) as asked."""


def _die_with_parent() -> None:
    """In the child: have Linux stop Janus when the thread that started it dies (a killed
    test run or demo must not leave a Janus behind). Start Janus from a long-lived thread."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def find_free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def find_janus_binary() -> str:
    path = shutil.which("janus")
    if path is None:
        raise JanusStartError("janus binary not found: install the Debian package janus")
    return path


def find_janus_lib_dir() -> Path:
    """The folder holding Janus' plugins/, transports/, events/ and loggers/."""
    candidates = [Path(p) for p in sorted(glob.glob("/usr/lib/*/janus"))]
    candidates.append(Path("/usr/lib/janus"))
    for candidate in candidates:
        if (candidate / "plugins" / VIDEOROOM_LIBRARY).exists():
            return candidate
    raise JanusStartError(
        "Janus plugin folder not found under /usr/lib/*/janus: install the Debian package janus"
    )


def _libraries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("libjanus_*.so"))


def _disable_line(names: list[str]) -> str:
    return f'\tdisable = "{",".join(names)}"\n' if names else ""


def _quote(value: str) -> str:
    # jcfg (libconfig) strings use C-like escapes; JSON's are a compatible subset here.
    return json.dumps(value)


def render_config(janus: LocalJanus, lib_dir: Path) -> dict[str, str]:
    """Return the configuration files (name → text) for ``janus``, for a given lib folder."""
    plugins = [n for n in _libraries(lib_dir / "plugins") if n != VIDEOROOM_LIBRARY]
    transports = [n for n in _libraries(lib_dir / "transports") if n not in ENABLED_TRANSPORTS]
    events = _libraries(lib_dir / "events")
    loggers = _libraries(lib_dir / "loggers")
    low, high = janus.rtp_port_range
    main = (
        "general: {\n"
        f"\tconfigs_folder = {_quote(str(janus.workdir))}\n"
        f"\tplugins_folder = {_quote(str(lib_dir / 'plugins'))}\n"
        f"\ttransports_folder = {_quote(str(lib_dir / 'transports'))}\n"
        f"\tevents_folder = {_quote(str(lib_dir / 'events'))}\n"
        f"\tloggers_folder = {_quote(str(lib_dir / 'loggers'))}\n"
        "\tdebug_level = 4\n\tdebug_timestamps = true\n\tdebug_colors = false\n"
        "\tsession_timeout = 60\n\thide_dependencies = true\n"
        "}\n"
        f'media: {{\n\trtp_port_range = "{low}-{high}"\n}}\n'
        "nat: {\n\tignore_mdns = true\n\tnice_debug = false\n}\n"
        f"plugins: {{\n{_disable_line(plugins)}}}\n"
        f"transports: {{\n{_disable_line(transports)}}}\n"
        f"loggers: {{\n{_disable_line(loggers)}}}\n"
        f"events: {{\n\tbroadcast = false\n{_disable_line(events)}}}\n"
    )
    http = (
        "general: {\n"
        '\tjson = "compact"\n\tbase_path = "/janus"\n\tevents = false\n'
        f'\thttp = true\n\tport = {janus.http_port}\n\tip = "{janus.host}"\n\thttps = false\n'
        "}\n"
        "admin: {\n\tadmin_http = false\n\tadmin_https = false\n}\n"
    )
    websockets = (
        "general: {\n"
        '\tjson = "compact"\n\tevents = false\n'
        f'\tws = true\n\tws_port = {janus.ws_port}\n\tws_ip = "{janus.host}"\n\twss = false\n'
        "}\n"
        "admin: {\n\tadmin_ws = false\n\tadmin_wss = false\n}\n"
    )
    videoroom = f"general: {{\n\tadmin_key = {_quote(janus.admin_key)}\n}}\n"
    return {
        "janus.jcfg": main,
        "janus.transport.http.jcfg": http,
        "janus.transport.websockets.jcfg": websockets,
        "janus.plugin.videoroom.jcfg": videoroom,
    }


@dataclass
class LocalJanus:
    """One local Janus process with its own configuration folder."""

    workdir: Path
    http_port: int
    ws_port: int
    admin_key: str
    rtp_port_range: tuple[int, int]
    host: str = "127.0.0.1"  # where the HTTP and WebSocket APIs listen
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}/janus"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "janus.jcfg"

    @property
    def log_path(self) -> Path:
        return self.workdir / "janus.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def write_config(self, lib_dir: Path | None = None) -> Path:
        """Write every configuration file into ``workdir``; return the main file's path."""
        if lib_dir is None:
            lib_dir = find_janus_lib_dir()
        self.workdir.mkdir(parents=True, exist_ok=True)
        for name, text in render_config(self, lib_dir).items():
            (self.workdir / name).write_text(text)
        return self.config_path

    def start(self, timeout: float = 15.0) -> None:
        """Spawn Janus and return once its HTTP API answers ``GET /janus/info``."""
        if self.running:
            return
        binary = find_janus_binary()
        config = self.write_config()
        argv = [binary, "-C", str(config), "-F", str(self.workdir)]
        with self.log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        log.info("janus spawned pid=%d http_port=%d", self._proc.pid, self.http_port)
        try:
            self._wait_ready(timeout)
        except JanusStartError:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        url = f"{self.http_url}/info"
        while True:
            if self._proc is None or self._proc.poll() is not None:
                code = None if self._proc is None else self._proc.returncode
                raise JanusStartError(f"janus exited with status {code}\n{self.log_tail()}")
            if _answers_info(url):
                log.info("janus ready url=%s", self.http_url)
                return
            if time.monotonic() >= deadline:
                raise JanusStartError(
                    f"janus did not answer {url} within {timeout} s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("janus ignored SIGTERM pid=%d, killing", proc.pid)
                proc.kill()
                proc.wait()
        log.info("janus stopped pid=%d status=%s", proc.pid, proc.returncode)

    def restart(self) -> None:
        """Stop and start again on the same ports with the same configuration."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no janus log)"
        return "\n".join(text.splitlines()[-lines:])


def _answers_info(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as resp:
            return bool(json.loads(resp.read()).get("janus") == "server_info")
    except (OSError, ValueError, AttributeError):
        return False


def make_local_janus(workdir: Path, *, admin_key: str = "cvh-test-admin") -> LocalJanus:
    """A LocalJanus on free ports with a randomly placed RTP port range (not started)."""
    low = random.randrange(RTP_RANGE_LOW, RTP_RANGE_HIGH - RTP_RANGE_WIDTH, 2)
    http_port = find_free_port()
    ws_port = find_free_port()
    while ws_port == http_port:
        ws_port = find_free_port()
    return LocalJanus(
        workdir=workdir,
        http_port=http_port,
        ws_port=ws_port,
        admin_key=admin_key,
        rtp_port_range=(low, low + RTP_RANGE_WIDTH - 1),
    )
