"""The SD image end to end, emulated (`make image-test`, as root): a Debian arm64 root file
system (image/emulate/build-rootfs.sh, cached), the shared install step (image/install.sh)
with a wheel of this checkout, a disk with a FAT boot partition and an ext4 root
(image/emulate/build-disk.sh), cvh-camera.yaml written into the FAT with mcopy as a user
would, then qemu-system-aarch64 boots it. From the host: the appliance started by itself,
authenticated to a real slot server, published to a real Janus and a viewer decodes its
frames; with a broken YAML the status file on the FAT names the bad key.

The guest, qemu, Janus and the server run in a network namespace made here: the guest's
only link is a tap device in it, the namespace has no other interface and no route out.
Without root, binfmt (qemu-aarch64) or network namespaces the test fails loudly.
Skipped unless CVH_IMAGE_TEST=1 (make image-test sets it): it needs root and minutes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.image.rig import HOST_IP, TAP, guest_yaml

ROOT = Path(__file__).resolve().parents[2]
EMULATE = ROOT / "image" / "emulate"
WIDTH, HEIGHT, FPS = 320, 240, 10
BAD_KEY = "tokn"
RIG_TIMEOUT = 900  # one boot, seen from outside (the rig bounds its own waits below this)
BINFMT = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
DEFAULT_WORKDIR = "/var/tmp/cvh-camera-image-test"  # ~1.5 GB while it runs, then the logs

pytestmark = [
    pytest.mark.timeout(3600),  # a cold root file system build alone takes ~6 minutes
    pytest.mark.skipif(
        os.environ.get("CVH_IMAGE_TEST") != "1",
        reason="the emulated image test runs with `make image-test` (root, minutes)",
    ),
]


def loud_failure(*lines: str) -> None:
    bar = "#" * 72
    text = "\n".join([bar, "# EMULATED IMAGE TEST CANNOT RUN", *(f"#   {x}" for x in lines), bar])
    pytest.fail(text, pytrace=False)


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kwargs)


@pytest.fixture(scope="module")
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
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-cache-dir",
         "-w", str(workdir / "dist"), str(source)])  # fmt: skip
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


@pytest.fixture(scope="module")
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


@pytest.fixture
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


def tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(none)"


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


def show_figures(capsys: pytest.CaptureFixture[str], image: Image, result: dict[str, Any]) -> None:
    guest = result.get("guest", {})
    figures = {
        "wheel + disk image built in (s)": image.build_seconds,
        "publish boot, rig total (s)": result.get("rig_seconds"),
        "qemu start → new_feed at the receiver (s)": result.get("qemu_to_new_feed_s"),
        "qemu start → first decoded frame (s)": result.get("qemu_to_first_frame_s"),
        # initramfs-tools' initramfs runs no systemd: "kernel" includes the initramfs.
        "systemd-analyze kernel+initramfs / userspace / total (s)": [
            guest.get(f"systemd_{part}_s") for part in ("kernel", "userspace", "total")
        ],
        "multi-user.target reached in userspace (s)": guest.get("target_reached_in_userspace_s"),
        "cvh-camera.service started / READY at (s since kernel start)": [
            guest.get("unit_started_s"), guest.get("unit_ready_s")],
        "appliance start → READY=1 (s)": guest.get("appliance_start_to_ready_s"),
        "appliance state=streaming at (s since kernel start)": guest.get("streaming_s"),
        "units up at (s since kernel start)": guest.get("reached_s"),
    }  # fmt: skip
    (image.workdir / "figures.json").write_text(json.dumps(result, indent=2))
    with capsys.disabled():
        print("\n\nEmulated image (qemu-system-aarch64 -M virt, TCG), boot to publishing:")
        for name, value in figures.items():
            print(f"  {name:<62} {value}")
        print(f"  (all of it: {image.workdir / 'figures.json'})\n")


def test_boots_authenticates_and_publishes_frames_a_viewer_decodes(
    image: Image, netns: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_yaml(image, guest_yaml(WIDTH, HEIGHT, FPS))
    result = boot(image, netns, "publish")
    show_figures(capsys, image, result)
    assert result["new_feed"]["slot"] == 0
    assert "custom_name 0 Emulated camera" in result["notify"], result["notify"]
    assert result["frame_sizes"] == [[WIDTH, HEIGHT]]
    # the synthetic camera's frame counter: moving pictures (a frame decoded while a packet
    # was still missing may hide its counter)
    readable = [counter for counter in result["frame_counters"] if counter is not None]
    assert len(readable) >= 8 and readable == sorted(readable) and readable[-1] > readable[0]
    assert result["guest"]["unit"].startswith("state=active"), result["guest"]
    # The power button: systemd stops the unit, the appliance leaves the room (SIGTERM).
    assert result["clean_powerdown"] and result.get("remove_feed_on_powerdown") == {"slot": 0}
    status = result["status_page"]
    if "body" in status:  # the JSON status page, where this version serves one
        assert status["body"]["state"] == "streaming", status


def test_broken_yaml_names_the_bad_key_in_the_status_file(
    image: Image, netns: str, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = guest_yaml(WIDTH, HEIGHT, FPS) + f"{BAD_KEY}: x\n"
    write_yaml(image, broken)
    result = boot(image, netns, "broken")
    unit = result["guest"]["unit"]
    assert unit is not None and "state=failed" in unit and "exit_status=2" in unit, unit
    shown = subprocess.run(["mtype", "-i", image.fat, "::/cvh-camera-status.txt"],
                           text=True, capture_output=True)  # fmt: skip
    assert shown.returncode == 0, f"no status file on the boot partition: {shown.stderr}"
    with capsys.disabled():
        print(f"\n\nStatus file after a boot with `{BAD_KEY}: x` in cvh-camera.yaml:")
        print(textwrap.indent(shown.stdout.rstrip(), "  "))
    assert BAD_KEY in shown.stdout, shown.stdout
