"""The appliance's picamera2 adapter against the real picamera2 (0.3.38 from PyPI) and
libcamera 0.7's virtual camera, in the emulated image: a boot with a file `cvh-test-probe`
on the FAT runs tests/image/picamera2_probe.py instead of the appliance, and its report
(cvh-probe.json on the FAT) is checked here. The unit tests
(tests/unit/test_picamera2_adapter.py) drive the same adapter with a fake picamera2; this is
where our calls meet the library a Pi runs. It runs in the guest, not in the image's tree
under qemu-user: the virtual camera allocates its buffers through /dev/udmabuf, which
Debian's kernel has and this build host's kernel does not. The Pi's hardware encoder is the
one part that cannot run here (docs/camera.md says what is verified only on a Pi).

Skipped unless CVH_IMAGE_TEST=1 (`make image-test`): it needs root and minutes.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.image.conftest import IMAGE_TEST, SKIP_REASON, Image, boot, run

INTERVAL, FPS, BITRATE = 10, 10, 400_000  # the probe's defaults
SPS, PPS, IDR = 7, 8, 5
MARKER = "::/cvh-test-probe"

pytestmark = [
    pytest.mark.timeout(3600),
    pytest.mark.skipif(not IMAGE_TEST, reason=SKIP_REASON),
]


@pytest.fixture(scope="module")
def report(image: Image, netns: str) -> Iterator[dict[str, Any]]:
    marker = image.workdir / "cvh-test-probe"
    marker.write_text("the picamera2 probe boot (tests/image/test_picamera2_adapter.py)\n")
    run(["mcopy", "-o", "-i", image.fat, str(marker), MARKER])
    try:
        result = boot(image, netns, "probe")
    finally:
        subprocess.run(["mdel", "-i", image.fat, MARKER], capture_output=True)
    shown = subprocess.run(["mtype", "-i", image.fat, "::/cvh-probe.json"],
                           text=True, capture_output=True)  # fmt: skip
    probe_log = "\n".join(result.get("guest", {}).get("probe_log", []))
    if shown.returncode != 0:
        pytest.fail(f"the probe wrote no report: {shown.stderr}\n{probe_log}", pytrace=False)
    (image.workdir / "picamera2-probe.json").write_text(shown.stdout)
    found: dict[str, Any] = json.loads(shown.stdout)
    if "error" in found:
        pytest.fail(f"the probe failed: {found['error']}\n" + "\n".join(found["log"][-40:]),
                    pytrace=False)  # fmt: skip
    yield found


def keyframe_gaps(units: list[dict[str, Any]]) -> list[int]:
    at = [index for index, unit in enumerate(units) if unit["keyframe"]]
    return [b - a for a, b in itertools.pairwise(at)]


def starts_a_stream(unit: dict[str, Any]) -> bool:
    """An IDR picture with SPS and PPS in front: a decoder can start here."""
    types = unit["nal_types"]
    if not unit["keyframe"] or not {SPS, PPS, IDR} <= set(types):
        return False
    return types.index(SPS) < types.index(PPS) < types.index(IDR)


def test_the_software_encoder_is_chosen_and_said_so(report: dict[str, Any]) -> None:
    assert report["software_encoder"] is True
    assert {e["class"] for e in report["encoders"]} == {"LibavH264Encoder"}
    assert any("using picamera2's software encoder" in line for line in report["log"])


def test_the_first_unit_is_an_idr_with_sps_and_pps(report: dict[str, Any]) -> None:
    assert starts_a_stream(report["first"][0]), report["first"][0]


def test_keyframes_come_every_keyframe_interval(report: dict[str, Any]) -> None:
    units = report["first"]
    assert keyframe_gaps(units) == [INTERVAL, INTERVAL], [u["nal_types"] for u in units]
    assert all(starts_a_stream(u) for u in units if u["keyframe"])


def test_timestamps_start_at_zero_and_increase(report: dict[str, Any]) -> None:
    first_encoder = [f["timestamp"] for f in report["frames"] if f["epoch"] == 0]
    assert first_encoder[0] == 0, first_encoder[:5]  # picamera2's, per encoder
    assert first_encoder == sorted(first_encoder)
    ours = [u["timestamp_us"] for phase in ("first", "before_force", "after_force",
            "after_bitrate", "after_restart") for u in report[phase]]  # fmt: skip
    assert all(b > a for a, b in itertools.pairwise(ours)), "not strictly increasing"
    # (not one frame duration apart: the virtual camera is not paced, it delivers frames as
    # fast as it draws them)


def test_a_requested_keyframe_comes_before_the_periodic_one(report: dict[str, Any]) -> None:
    after = report["after_force"]  # requested right after a periodic keyframe
    forced = [index for index, unit in enumerate(after) if unit["keyframe"]]
    assert forced and forced[0] < INTERVAL - 2, [u["keyframe"] for u in after]
    assert starts_a_stream(after[forced[0]])
    assert report["stats"]["forced_keyframes"] >= 1


def test_a_bitrate_change_restarts_the_software_encoder_with_it(report: dict[str, Any]) -> None:
    # the encoders in order: the first, one restart for the requested keyframe (PyAV 14+,
    # see test_a_requested_keyframe…), then the one with the new bitrate
    bitrates = [e["bitrate"] for e in report["encoders"]]
    assert bitrates[:3] == [BITRATE, BITRATE, BITRATE // 2], bitrates
    assert any(f"bitrate={BITRATE // 2}: restarting the software encoder" in line
               for line in report["log"])  # fmt: skip
    after = report["after_bitrate"]
    restart = next(index for index, unit in enumerate(after) if unit["keyframe"])
    assert starts_a_stream(after[restart])


def test_stop_and_start_begin_again_with_an_idr(report: dict[str, Any]) -> None:
    after = report["after_restart"]
    assert starts_a_stream(after[0]), after[0]
    assert after[0]["timestamp_us"] > report["after_bitrate"][-1]["timestamp_us"]


def test_frames_reach_the_output_on_picamera2s_threads(report: dict[str, Any]) -> None:
    frames = report["frames"]
    assert frames and not any(f["main_thread"] for f in frames)
    # LibavH264Encoder hands over its av.Packet too (the Pi's V4L2 encoder passes None)
    assert all(f["packet"] for f in frames)


def test_a_camera_that_stops_delivering_ends_the_source_with_an_error(
    report: dict[str, Any],
) -> None:
    gone = report["gone"]
    assert gone["error"] is not None and "no frame" in gone["error"], gone
    assert gone["seconds"] < 5.0 * 3, gone  # the stall timeout (5 s), plus emulation
