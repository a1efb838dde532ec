"""The benchmarks' one results writer and one description of the machine.

Every benchmark prints its figures as markdown and, with --write-results, rewrites its own
`## ` section of bench/RESULTS.md (its description, the command and date, the machine, the
figures), leaving every other section as it is.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
INTRO = "# Benchmarks\n\nFigures printed by the modules in this folder; each writes its section.\n"
PACKAGES = (
    "python-socketio", "python-engineio", "aiohttp", "uvloop", "aiortc", "av", "aioice",
    "pylibsrtp",
)  # fmt: skip


def tool_version(argv: Sequence[str]) -> str:
    """What `argv` (a `--version` command) prints, or "" if it cannot run."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine_info(load_before: float | None = None) -> dict[str, str]:
    """What the figures were measured on; `load_before`: the 1-minute load average before
    the run (other work on the machine disturbs latencies more than CPU times)."""
    model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or "unknown CPU",
    )  # fmt: skip
    versions = []
    for package in PACKAGES:
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} (not installed)")
    janus = tool_version(["dpkg-query", "-W", "-f", "${Version}", "janus"])
    info = {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": ", ".join(versions),
        "janus": f"Debian janus {janus}" if janus else "janus (version unknown)",
    }
    if load_before is not None:
        info["load average before the run"] = f"{load_before:.2f} (1 min)"
    return info


def command_line() -> str:
    """How this benchmark was started: `python -m bench.<name> …`."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    python = os.path.relpath(sys.executable)
    python = sys.executable if python.startswith("..") else python
    start = ["-m", spec.name] if spec is not None else [sys.argv[0]]
    return shlex.join([python, *start, *sys.argv[1:]])


def table(header: Sequence[str], rows: Sequence[Sequence[str]], text: int = 1) -> list[str]:
    """A markdown table; the first `text` columns left-aligned, the others right."""
    align = ["---|"] * text + ["---:|"] * (len(header) - text)
    return [
        "| " + " | ".join(header) + " |",
        "|" + "".join(align),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def publish(
    heading: str, description: str, info: dict[str, str], lines: Sequence[str], write: bool
) -> None:
    """Print the figures (`lines`) under the command and the machine; with `write`, make
    them, after `description`, the section `heading` of bench/RESULTS.md."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"`{command_line()}` — {when}", "", *(f"- {k}: {v}" for k, v in info.items())]
    body += ["", *lines]
    print("\n" + "\n".join(body), flush=True)
    if write:
        replace_section(RESULTS, heading, "\n".join([description, "", *body]))
        print(f"wrote {RESULTS}")


def replace_section(path: Path, heading: str, body: str) -> None:
    """Write `heading` + `body` as the `## ` section of that name in `path`, in place of the
    old one (or at the end); every other section stays as it is."""
    text = path.read_text(encoding="utf-8") if path.exists() else INTRO
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), len(lines))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    before, after = "".join(lines[:start]).rstrip() + "\n\n", "".join(lines[end:])
    section = f"{heading}\n\n{body.strip()}\n"
    path.write_text(before + section + ("\n" + after if after else ""), encoding="utf-8")
