"""The CI entry points run what the README's test command runs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _check_prerequisites() -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^check: (.+?)(?:\s+##.*)?$", makefile, re.MULTILINE)
    assert match is not None, "the Makefile has no check target"
    return match.group(1).split()


def test_ci_run_is_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make check" in readme.split("\n## ")[0]  # among the README's first lines
    assert "exec make check" in (ROOT / ".ci" / "run").read_text()


def test_pushes_and_pull_requests_run_every_part_of_make_check() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "test.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert "push" in triggers and "pull_request" in triggers
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert sorted(f"make {target}" for target in _check_prerequisites()) == sorted(
        run for run in runs if run.startswith("make ")
    )
