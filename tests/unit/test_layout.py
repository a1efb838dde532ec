"""The one import namespace: code imports cvh_camera.server and cvh_camera.appliance.

server/ and appliance/ sit at the top of the repository (the design card), so from a
checkout `import server` would work too, and then break in the installed wheel.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOP_LEVEL_IMPORT = re.compile(r"^\s*(?:from|import)\s+(server|appliance|wire)\b", re.MULTILINE)
SKIPPED = {".venv", ".git", "node_modules", "build", "dist"}


def test_nothing_imports_the_folders_by_their_top_level_names() -> None:
    offenders = []
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        if SKIPPED & set(relative.parts) or relative.parts[0] == "cvh_camera":
            continue  # cvh_camera/server and cvh_camera/appliance are the same files again
        offenders += [f"{relative}: {m.group(0).strip()}" for m in TOP_LEVEL_IMPORT.finditer(
            path.read_text())]  # fmt: skip
    assert offenders == []


def test_the_package_links_point_at_the_design_cards_folders() -> None:
    for name in ("server", "appliance"):
        link = ROOT / "cvh_camera" / name
        assert link.is_symlink(), f"cvh_camera/{name} should be a link to ../{name}"
        assert link.resolve() == (ROOT / name).resolve()
