"""The wheel: one top-level import package, the pages inside, no test-only code.

Built from a copy of this checkout with the venv's locked build backend, as the image
build does, then installed without dependencies into a clean venv.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Imports only the tests and benches may make.
TEST_ONLY_IMPORTS = ("playwright", "pytest", "tests.", "bench.")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "node_modules", "build", "dist", "*.egg-info", "__pycache__",
        ".*_cache", ".hypothesis"))  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "-w", str(work / "dist"), str(source)],
        check=True, timeout=120,
    )  # fmt: skip
    (built,) = (work / "dist").glob("cvh_camera-*.whl")
    return built


def test_the_wheel_holds_one_top_level_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (top_level,) = (n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert archive.read(top_level).decode().split() == ["cvh_camera"]
    tops = {PurePosixPath(name).parts[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"cvh_camera"}
    assert "cvh_camera/server/web/static/receiver.html" in names
    assert "cvh_camera/server/web/static/vendor/socket.io.esm.min.js" in names
    assert "cvh_camera/appliance/cli.py" in names


def test_the_wheel_ships_no_test_only_code(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        sources = {n: archive.read(n).decode() for n in archive.namelist() if n.endswith(".py")}
    offenders = [
        f"{name}: {line.strip()}"
        for name, text in sources.items()
        for line in text.splitlines()
        if line.lstrip().startswith(("import ", "from "))
        and line.split()[1].startswith(TEST_ONLY_IMPORTS)
    ]
    assert offenders == []


def test_installing_it_adds_exactly_cvh_camera(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "clean"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    (site,) = venv.glob("lib/python*/site-packages")
    before = set(path.name for path in site.iterdir())
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin/python"), "install",
         "--quiet", "--no-deps", "--no-cache-dir", str(wheel)],
        check=True, timeout=120,
    )  # fmt: skip
    added = {name for name in set(path.name for path in site.iterdir()) - before}
    assert {name for name in added if not name.endswith(".dist-info")} == {"cvh_camera"}
    assert (venv / "bin/cvh-camera").exists()
