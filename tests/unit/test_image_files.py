"""image/: the boot partition's cvh-camera.yaml, the systemd unit and the install scripts."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cvh_camera.appliance import cli as appliance_cli
from cvh_camera.appliance.config import ApplianceConfig, load_appliance_config

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "image"
BOOT_YAML = IMAGE / "cvh-camera.yaml"
UNIT = IMAGE / "cvh-camera.service"
REFERENCE_YAML = ROOT / "config" / "appliance.yaml"
SCRIPTS = [
    IMAGE / "install.sh",
    IMAGE / "build-image.sh",
    IMAGE / "pi-gen" / "stage-cvh" / "prerun.sh",
    IMAGE / "pi-gen" / "stage-cvh" / "00-cvh-camera" / "01-run.sh",
]
EXEC_START = (
    "/opt/cvh-camera/venv/bin/cvh-camera appliance --config /boot/firmware/cvh-camera.yaml "
    "--status-file /boot/firmware/cvh-camera-status.txt"
)
# A commented-out setting: "# key: value" at the key's own indentation.
COMMENTED_KEY = re.compile(r"^(\s*)# (?=\s*[a-z_]+:)", re.MULTILINE)
# status.file is not offered: the image's unit always passes --status-file.
NOT_OFFERED = {"status.file"}


def load_text(tmp_path: Path, text: str, encoding: str = "utf-8") -> ApplianceConfig:
    path = tmp_path / "cvh-camera.yaml"
    path.write_bytes(text.encode(encoding))
    return load_appliance_config(path, {})


def dotted_keys(data: object, prefix: str = "") -> set[str]:
    if not isinstance(data, dict):
        return {prefix}
    keys: set[str] = set()
    for key, value in data.items():
        keys |= dotted_keys(value, f"{prefix}{key}" if not prefix else f"{prefix}.{key}")
    return keys


def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file as {section: {key: [values in order]}}: keys may repeat."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path}: {line!r} outside a section"
        key, separator, value = line.partition("=")
        assert separator, f"{path}: not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


# --- the boot partition's YAML ---


def test_boot_yaml_loads_as_not_configured_defaults() -> None:
    config = load_appliance_config(BOOT_YAML, {})
    assert config == ApplianceConfig()
    assert config.missing() == ["server.url", "slot", "token"]
    assert config.camera.source == "picamera2" and config.status.http_port == 8080


def test_uncommenting_every_setting_changes_nothing(tmp_path: Path) -> None:
    text = BOOT_YAML.read_text(encoding="utf-8")
    uncommented = COMMENTED_KEY.sub(r"\1", text)
    assert uncommented != text
    assert load_text(tmp_path, uncommented) == ApplianceConfig()
    # ...and then every key of the reference file is there, but the one the unit sets.
    offered = dotted_keys(yaml.safe_load(uncommented))
    reference = dotted_keys(yaml.safe_load(REFERENCE_YAML.read_text(encoding="utf-8")))
    assert offered == reference - NOT_OFFERED


def test_filling_in_the_three_marked_lines_configures_it(tmp_path: Path) -> None:
    text = BOOT_YAML.read_text(encoding="utf-8")
    edits = {
        '  url: ""': '  url: "http://192.168.1.10:5000"',
        "slot: null": "slot: 2",
        'token: ""': 'token: "7f3a9c2e51d04b88"',
    }
    for old, new in edits.items():
        assert text.count(f"\n{old}\n") == 1, old
        text = text.replace(f"\n{old}\n", f"\n{new}\n")
    config = load_text(tmp_path, text)
    assert config.configured
    assert (config.server.url, config.slot, config.token) == (
        "http://192.168.1.10:5000",
        2,
        "7f3a9c2e51d04b88",
    )


def test_a_file_saved_by_notepad_loads_the_same(tmp_path: Path) -> None:
    windows = BOOT_YAML.read_text(encoding="utf-8").replace("\n", "\r\n")
    assert load_text(tmp_path, windows, encoding="utf-8-sig") == ApplianceConfig()


# --- the systemd unit ---


def test_unit_runs_the_appliance_as_systemd_expects() -> None:
    unit = read_unit(UNIT)
    service = unit["Service"]
    assert service["ExecStart"] == [EXEC_START]
    assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"]
    assert service["WatchdogSec"] == ["30s"]
    assert service["Restart"] == ["always"] and service["RestartSec"] == ["5s"]
    assert service["RestartPreventExitStatus"] == [str(appliance_cli.EXIT_CONFIG)]
    assert (service["User"], service["Group"]) == (["cvh-camera"], ["cvh-camera"])
    assert service["SupplementaryGroups"] == ["video"]
    assert unit["Unit"]["RequiresMountsFor"] == ["/boot/firmware"]
    assert "network-online.target" in unit["Unit"]["After"][0].split()
    assert "network-online.target" in unit["Unit"]["Wants"][0].split()
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_sandbox() -> None:
    service = read_unit(UNIT)["Service"]
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/boot/firmware",
        "PrivateTmp": "yes",
        "DevicePolicy": "closed",
        "CapabilityBoundingSet": "",
        "SystemCallFilter": "@system-service",
    }.items():
        assert service[key][0] == value, key
    assert "PrivateDevices" not in service  # it would hide the camera devices
    assert service["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"]
    allowed = {entry.split()[0] for entry in service["DeviceAllow"]}
    assert {"char-video4linux", "char-media", "char-dma_heap"} <= allowed
    protected = {path.lstrip("-") for entry in service["ReadOnlyPaths"] for path in entry.split()}
    assert {"/boot/firmware/config.txt", "/boot/firmware/cmdline.txt"} <= protected


def test_exec_start_matches_the_appliance_command_line() -> None:
    program, command, *arguments = shlex.split(EXEC_START)
    assert (Path(program).name, command) == ("cvh-camera", "appliance")
    parser = argparse.ArgumentParser()
    appliance_cli.add_arguments(parser)
    args = parser.parse_args(arguments)
    assert args.config == appliance_cli.DEFAULT_CONFIG == Path("/boot/firmware/cvh-camera.yaml")
    assert args.status_file == Path("/boot/firmware/cvh-camera-status.txt")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_unit_exposure_stays_low() -> None:
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    if found is None:  # systemd older than 252 has no --offline
        pytest.skip(f"systemd-analyze security --offline unavailable: {result.stderr.strip()}")
    assert float(found.group(1)) <= 5.0, result.stdout


# --- the scripts ---


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: str(path.relative_to(IMAGE)))
def test_scripts_parse_and_are_executable(script: Path) -> None:
    # pi-gen only runs the stage scripts that are executable.
    assert os.access(script, os.X_OK), f"{script} is not executable"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="no shellcheck")
def test_scripts_pass_shellcheck() -> None:
    others = [*sorted((ROOT / "scripts").glob("*.sh")), ROOT / ".ci" / "run"]
    subprocess.run(
        ["shellcheck", "--shell=bash", *map(str, [*SCRIPTS, *others])], check=True, timeout=60
    )
