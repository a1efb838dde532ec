"""Figures of the fan-out benchmark: the data, the printed table and bench/RESULTS.md."""

from __future__ import annotations

import os
import shlex
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SECTION = "## Fan-out (slot server)"
SUBSECTION = "### Server: "
INTRO = "# Benchmarks\n\nFigures printed by the scripts in this folder; each writes its section.\n"
TARGETS_MS = {1000: 45.0, 3000: 120.0}  # every receiver informed within, max over rounds
DESCRIPTION = """\
`bench/fanout.py` starts a fresh slot server per N, in its own process (pinned to its own
CPU) on a local Janus, connects N websocket receivers (a minimal Engine.IO v4 / socket.io
v5 client, one asyncio protocol each, timestamped on arrival with CLOCK_MONOTONIC), then
runs rounds of a sender (the same minimal client) doing `sender_init` + `set_feed_id` and
leaving. Median and max are over the rounds (one warm-up round first, not counted).

- *connect*: until all N receivers have joined the default namespace.
- *new_feed*: from the arrival of the sender's `set_feed_id` ack to the **last**
  receiver's `new_feed`; *from request*: from sending `set_feed_id` (the ack leaves the
  server only after the broadcast has been queued, so this one counts that work too).
- *remove_feed*: from the sender starting to leave to the last receiver's `remove_feed`.
- *RSS*: the server's VmRSS before and after connecting N.
- *server full GCs*: generation-2 collections in the server during the rounds (longest).

Targets: 1000 receivers informed within 45 ms, 3000 within 120 ms (max)."""


@dataclass(frozen=True)
class Round:
    """One set_feed_id / disconnect of the sender, in milliseconds."""

    started_s: float  # seconds after the last receiver joined
    new_feed_last: float  # set_feed_id ack → last receiver's new_feed
    new_feed_median: float  # set_feed_id ack → the median receiver's new_feed
    new_feed_from_request: float  # set_feed_id sent → last receiver's new_feed
    remove_feed_last: float  # sender's disconnect → last receiver's remove_feed
    remove_feed_median: float
    ack_rtt: float  # set_feed_id sent → ack


@dataclass(frozen=True)
class CountResult:
    """Everything measured for one N."""

    count: int
    connect_s: float
    rss_before_kib: int
    rss_after_kib: int
    warmup: tuple[Round, ...]
    rounds: tuple[Round, ...]
    server_full_gcs: tuple[float, ...]  # ms each, during the rounds

    def stat(self, pick: Callable[[Round], float]) -> tuple[float, float]:
        """Median and maximum of one figure over the counted rounds."""
        values = [pick(r) for r in self.rounds]
        return statistics.median(values), max(values)

    @property
    def kib_per_receiver(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / self.count


HEADER = (
    "N",
    "connect s",
    "new_feed median ms",
    "new_feed max ms",
    "from request median ms",
    "from request max ms",
    "remove_feed median ms",
    "remove_feed max ms",
    "RSS before MiB",
    "RSS after MiB",
    "KiB/receiver",
    "server full GCs (max ms)",
)


def table_rows(results: Sequence[CountResult]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in results:
        new_median, new_max = r.stat(lambda x: x.new_feed_last)
        request_median, request_max = r.stat(lambda x: x.new_feed_from_request)
        remove_median, remove_max = r.stat(lambda x: x.remove_feed_last)
        rows.append(
            (
                str(r.count),
                f"{r.connect_s:.2f}",
                f"{new_median:.1f}",
                f"{new_max:.1f}",
                f"{request_median:.1f}",
                f"{request_max:.1f}",
                f"{remove_median:.1f}",
                f"{remove_max:.1f}",
                f"{r.rss_before_kib / 1024:.1f}",
                f"{r.rss_after_kib / 1024:.1f}",
                f"{r.kib_per_receiver:.1f}",
                f"{len(r.server_full_gcs)} ({max(r.server_full_gcs, default=0):.0f})",
            )
        )
    return rows


def target_lines(results: Sequence[CountResult]) -> list[str]:
    lines = []
    for r in results:
        target = TARGETS_MS.get(r.count)
        if target is None:
            continue
        worst = {
            "new_feed": r.stat(lambda x: x.new_feed_last)[1],
            "new_feed from request": r.stat(lambda x: x.new_feed_from_request)[1],
            "remove_feed": r.stat(lambda x: x.remove_feed_last)[1],
        }
        verdict = "met" if max(worst.values()) <= target else "NOT met"
        figures = ", ".join(f"{event} max {ms:.1f} ms" for event, ms in worst.items())
        lines.append(f"N={r.count}, target {target:.0f} ms: {figures}: {verdict}")
    return lines


def _round_text(r: Round) -> str:
    return (
        f"t+{r.started_s:5.1f} s  "
        f"new_feed last {r.new_feed_last:6.1f} median {r.new_feed_median:6.1f}  "
        f"remove_feed last {r.remove_feed_last:6.1f} median {r.remove_feed_median:6.1f}  "
        f"ack rtt {r.ack_rtt:5.1f} ms"
    )


def print_report(results: Sequence[CountResult], info: dict[str, str]) -> None:
    print()
    for r in results:
        print(f"N={r.count}")
        for number, one in enumerate(r.warmup + r.rounds):
            label = "warm-up" if number < len(r.warmup) else f"round {number - len(r.warmup) + 1}"
            print(f"  {label:8} {_round_text(one)}")
    rows = [HEADER, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    print()
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    print()
    for line in target_lines(results):
        print(line)
    for key, value in info.items():
        print(f"{key}: {value}")


def command_line() -> str:
    python = sys.executable
    with_cwd = os.path.relpath(python)
    return shlex.join([with_cwd if not with_cwd.startswith("..") else python, *sys.argv])


def markdown(results: Sequence[CountResult], info: dict[str, str], variant: str) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"{SUBSECTION}{variant}",
        "",
        f"`{command_line()}` — {when}",
        "",
        *(f"- {key}: {value}" for key, value in info.items()),
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---:|" * len(HEADER),
        *("| " + " | ".join(row) + " |" for row in table_rows(results)),
        "",
        *(f"- {line}" for line in target_lines(results)),
    ]
    return "\n".join(lines).rstrip() + "\n"


def _split_section(text: str) -> tuple[str, str, str]:
    """(before, the section without its heading, after) of SECTION in `text`."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.rstrip() == SECTION]
    if not starts:
        return text, "", ""
    start = starts[0]
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    return "".join(lines[:start]), "".join(lines[start + 1 : end]), "".join(lines[end:])


def _subsections(section: str) -> dict[str, str]:
    """The section's parts, one per server variant, by variant."""
    parts: dict[str, str] = {}
    name = None
    for line in section.splitlines(keepends=True):
        if line.startswith(SUBSECTION):
            name = line[len(SUBSECTION) :].strip()
            parts[name] = ""
        if name is not None:
            parts[name] += line
    return parts


def write_results(
    path: Path, results: Sequence[CountResult], info: dict[str, str], variant: str
) -> None:
    """Rewrite SECTION of `path` with this run's part; other server variants' parts stay."""
    text = path.read_text(encoding="utf-8") if path.exists() else INTRO
    before, section, after = _split_section(text)
    parts = _subsections(section)
    parts[variant] = markdown(results, info, variant)
    body = "\n".join(part.rstrip() + "\n" for part in parts.values())
    new_section = f"{SECTION}\n\n{DESCRIPTION}\n\n{body}"
    before = before.rstrip() + "\n\n" if before.strip() else INTRO + "\n"
    after = "\n" + after if after else ""
    path.write_text(before + new_section + after, encoding="utf-8")
