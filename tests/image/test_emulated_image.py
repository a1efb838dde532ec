"""The SD image end to end, emulated (`make image-test`, as root): the image of
tests/image/conftest.py (Debian trixie arm64 with libcamera 0.7's virtual camera, the shared
install step with a wheel of this checkout), cvh-camera.yaml written into the FAT with mcopy
as a user would, then qemu-system-aarch64 boots it. From the host: the appliance started by
itself, streamed from `camera.source: picamera2` (the real Picamera2, libcamera's request
cycle on the virtual camera, picamera2's software encoder, our Output), authenticated to a
real slot server, published to a real Janus, and a viewer decodes its frames at the
configured size; with a broken YAML the status file on the FAT names the bad key.

The guest, qemu, Janus and the server run in a network namespace made here: the guest's
only link is a tap device in it, the namespace has no other interface and no route out.
Without root, binfmt (qemu-aarch64) or network namespaces the test fails loudly.
Skipped unless CVH_IMAGE_TEST=1 (make image-test sets it): it needs root and minutes.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from typing import Any

import pytest

from tests.image.conftest import IMAGE_TEST, SKIP_REASON, Image, boot, write_yaml
from tests.image.rig import guest_yaml

WIDTH, HEIGHT, FPS = 320, 240, 10  # the virtual camera's size (guest/…/virtual.yaml)
BAD_KEY = "tokn"

pytestmark = [
    pytest.mark.timeout(3600),  # a cold root file system build alone takes ~10 minutes
    pytest.mark.skipif(not IMAGE_TEST, reason=SKIP_REASON),
]


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


def test_boots_streams_from_picamera2_and_publishes_frames_a_viewer_decodes(
    image: Image, netns: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write_yaml(image, guest_yaml(WIDTH, HEIGHT, FPS, source="picamera2"))
    result = boot(image, netns, "publish")
    show_figures(capsys, image, result)
    assert result["new_feed"]["slot"] == 0
    assert "custom_name 0 Emulated camera" in result["notify"], result["notify"]
    assert result["frame_sizes"] == [[WIDTH, HEIGHT]]
    digests = result["frame_digests"]
    assert len(set(digests)) >= len(digests) // 2, digests  # the virtual camera's lines move
    journal = "\n".join(result["guest"]["journal"])
    # the appliance said which camera and which encoder it streams from
    assert "source=picamera2 started" in journal, journal
    assert "using picamera2's software encoder" in journal, journal
    assert result["guest"]["unit"].startswith("state=active"), result["guest"]
    # The power button: systemd stops the unit, the appliance leaves the room (SIGTERM).
    assert result["clean_powerdown"] and result.get("remove_feed_on_powerdown") == {"slot": 0}
    status = result["status_page"]
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
