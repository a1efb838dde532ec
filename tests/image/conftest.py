"""What the emulated image tests share (`make image-test`, as root): a host that can run
them, or a loud failure, and one image per session: a wheel of this checkout, the cached
Debian trixie arm64 root file system (image/emulate/build-rootfs.sh) with the shared install
step (image/install.sh) and the test-only files, as a disk for qemu
(image/emulate/build-disk.sh).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.image.rig import HOST_IP, TAP

ROOT = Path(__file__).resolve().parents[2]
EMULATE = ROOT / "image" / "emulate"
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
DEFAULT_WORKDIR = "/var/tmp/cvh-camera-image-test"  # ~2.5 GB while it runs, then the logs
IMAGE_TEST = os.environ.get("CVH_IMAGE_TEST") == "1"
SKIP_REASON = "the emulated image tests run with `make image-test` (root, minutes)"
RIG_TIMEOUT = 900  # one boot, seen from outside (the rig bounds its own waits below this)


def loud_failure(*lines: str) -> None:
    bar = "#" * 72
    text = "\n".join([bar, "# EMULATED IMAGE TEST CANNOT RUN", *(f"#   {x}" for x in lines), bar])
    pytest.fail(text, pytrace=False)


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kwargs)


@pytest.fixture(scope="session")
def host_ready() -> None:
    """Root, binfmt qemu-aarch64, network namespaces and the tools: or a loud failure."""
    if os.geteuid() != 0:
        loud_failure("it needs root: run `make image-test` as root")
    if not BINFMT.exists() or "enabled" not in BINFMT.read_text():
        loud_failure(f"{BINFMT} is missing or disabled: run image/emulate/prepare-host.sh")
    tools = ["mmdebstrap", "qemu-system-aarch64", "mcopy", "mtype", "mkfs.vfat", "mkfs.ext4",
             "sfdisk", "ip", "janus"]  # fmt: skip
    if missing := [tool for tool in tools if shutil.which(tool) is None]:
        loud_failure(f"missing tools: {', '.join(missing)}: run image/emulate/prepare-host.sh")
    probe = f"cvh-image-probe-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        loud_failure("network namespaces are unavailable (ip netns add failed)")
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)


@dataclass(frozen=True)
class Image:
    workdir: Path
    disk: Path
    kernel: Path
    initrd: Path
    fat_offset: int
    build_seconds: float  # wheel + disk

    @property
    def fat(self) -> str:
        """mtools' name for the boot partition: the disk file at the partition's offset."""
        return f"{self.disk}@@{self.fat_offset}"


def build_wheel(workdir: Path) -> Path:
    """`pip wheel` of this checkout, from a copy (a build in the tree would leave build/)."""
    if not (ROOT / "server/web/static/vendor").is_dir():
        loud_failure("the pages' assets are not built: run `make web` (or `make setup`)")
    source = workdir / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "build", "dist", "*.egg-info", "__pycache__",
        ".*_cache", ".hypothesis", ".work", "image", "tests", "bench", "docs"))  # fmt: skip
    # The build backend is the venv's locked one (requirements/build.txt).
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-cache-dir",
         "--no-build-isolation", "-w", str(workdir / "dist"), str(source)])  # fmt: skip
    shutil.rmtree(source)
    return next((workdir / "dist").glob("cvh_camera-*.whl"))


def run_bounded(argv: list[str], log: Path, timeout: float) -> int:
    """Run `argv` in its own process group, output to `log`; past `timeout` SIGTERM the
    group (the scripts' traps unmount and clean up), then SIGKILL. Returns the status."""
    with log.open("w") as output:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            output.write(f"\n*** killed after {timeout:.0f} s ***\n")
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            return -1


def fresh_workdir() -> Path:
    """The test's folder, emptied: it keeps the logs of the last run for a post-mortem.
    Whatever is still mounted under it (a killed install step) is unmounted first, and
    nothing is deleted across a mount point."""
    workdir = Path(os.environ.get("CVH_IMAGE_WORKDIR", DEFAULT_WORKDIR)).resolve()
    mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True)
    inside = [m for m in mounts.stdout.split() if m == str(workdir) or m.startswith(f"{workdir}/")]
    for target in sorted(inside, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)
    subprocess.run(["rm", "-rf", "--one-file-system", str(workdir)], check=True)
    workdir.mkdir(parents=True)
    return workdir


@pytest.fixture(scope="session")
def image(host_ready: None) -> Iterator[Image]:
    workdir = fresh_workdir()
    started = time.monotonic()
    wheel = build_wheel(workdir)
    log = workdir / "build-disk.log"
    status = run_bounded([str(EMULATE / "build-disk.sh"), str(wheel), str(workdir)], log, 2400)
    if status != 0:
        pytest.fail(f"build-disk.sh failed, its log ({log}):\n{tail(log, 60)}", pytrace=False)
    env = dict(line.split("=", 1) for line in (workdir / "disk.env").read_text().split())
    built = Image(workdir, workdir / "disk.img", workdir / "vmlinuz", workdir / "initrd.img",
                  int(env["FAT_OFFSET"]), round(time.monotonic() - started, 1))  # fmt: skip
    yield built
    built.disk.unlink(missing_ok=True)  # 1.5 GB; the logs stay


def tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(none)"


@pytest.fixture(scope="session")
def netns() -> Iterator[str]:
    """A network namespace with a tap device for the guest: no other link, no route out."""
    name = f"cvh-image-{os.getpid()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    run(["ip", "netns", "add", name])
    try:
        for argv in (
            ["link", "set", "lo", "up"],
            ["tuntap", "add", "dev", TAP, "mode", "tap"],
            ["addr", "add", f"{HOST_IP}/24", "dev", TAP],
            ["link", "set", TAP, "up"],
        ):
            run(["ip", "-n", name, *argv])  # fmt: skip
        links = run(["ip", "-n", name, "-o", "link", "show"]).stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo", TAP]
        routes = run(["ip", "-n", name, "route", "show"]).stdout.split("\n")
        assert [r.split()[0] for r in routes if r] == ["10.77.0.0/24"], routes
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def write_yaml(image: Image, text: str) -> None:
    """What a user does with the SD card in another computer: put the file on the FAT."""
    source = image.workdir / "cvh-camera.yaml"
    source.write_text(text)
    run(["mcopy", "-o", "-i", image.fat, str(source), "::/cvh-camera.yaml"])


def boot(image: Image, netns: str, mode: str) -> dict[str, Any]:
    """Run the rig (tests/image/rig.py) inside the namespace; return its RESULT."""
    log = image.workdir / f"rig-{mode}.log"
    argv = ["ip", "netns", "exec", netns, sys.executable, "-m", "tests.image.rig",
            "--mode", mode, "--disk", str(image.disk), "--kernel", str(image.kernel),
            "--initrd", str(image.initrd), "--workdir", str(image.workdir)]  # fmt: skip
    run_bounded(argv, log, RIG_TIMEOUT)
    results = [line for line in log.read_text().splitlines() if line.startswith("RESULT ")]
    console = image.workdir / f"console-{mode}.log"
    result: dict[str, Any] = json.loads(results[-1][len("RESULT ") :]) if results else {}
    if not result or "error" in result:
        pytest.fail(
            f"the {mode} boot failed; rig log {log}:\n{tail(log, 40)}\n"
            f"serial console {console}:\n{tail(console, 60)}",
            pytrace=False,
        )
    return result
