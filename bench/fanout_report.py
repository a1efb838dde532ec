"""Figures of the slot server's benchmarks (fan-out, soak): data, printed tables, RESULTS.md."""

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
SOAK_SECTION = "## Soak (slot server)"
SOAK_KINDS = ("new_feed", "remove_feed", "command")
RSS_LIMIT_PCT = 5.0  # soak: RSS growth after the first minute
INTRO = "# Benchmarks\n\nFigures printed by the scripts in this folder; each writes its section.\n"
TARGETS_MS = {1000: 45.0, 3000: 120.0}  # every receiver informed within, max over rounds
OURS, ORIGINAL = "ours", "original"
DESCRIPTION = """\
`bench/fanout.py` measures our slot server and, with `--baseline`, the original Node.js
camera server side by side in the same run: for each N the original first, then ours, each
a fresh process (pinned to its own CPU with `--pin`, the same for both) started the way the
original is deployed (the legacy JSON configuration in `CONFIG_PATH`, slot 0 activated by
`activate_slot` on its stdin), on the same local Janus (a room of its own each). N websocket
receivers (a minimal Engine.IO v4 / socket.io v5 client, one asyncio protocol each,
timestamped on arrival with CLOCK_MONOTONIC) negotiate like Chromium: they offer
`permessage-deflate; client_max_window_bits` and inflate what the server compresses. Then
rounds of a sender (the same client) doing what a sender page does: `sender_init`, join the
Janus room as a publisher (no media), `set_feed_id` with that publisher's ids, leave.
Median (p50) and max are over the rounds (one warm-up round first, not counted).

- *connect*: until all N receivers have joined the default namespace.
- *new_feed*: from sending `set_feed_id` to the **last** receiver's `new_feed`.
- *remove_feed*: from the sender starting to leave to the last receiver's `remove_feed`.
- *RSS growth*: the server's VmRSS after connecting N minus before; *KiB/receiver*: that
  growth per receiver.
- *permessage-deflate*: how the server answered the receivers' offer.
- *full GCs*: generation-2 collections in our server during the rounds (longest).
- *ours/original*: below 1 means ours is faster or smaller.

Targets (ours): 1000 receivers informed within 45 ms, 3000 within 120 ms (max)."""


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
    """Everything measured for one server at one N."""

    server: str  # OURS or ORIGINAL
    count: int
    connect_s: float
    rss_before_kib: int
    rss_after_kib: int
    deflate: str  # how the server answered permessage-deflate
    warmup: tuple[Round, ...]
    rounds: tuple[Round, ...]
    server_full_gcs: tuple[float, ...] | None  # ms each, during the rounds; None: not logged

    def stat(self, pick: Callable[[Round], float]) -> tuple[float, float]:
        """Median and maximum of one figure over the counted rounds."""
        values = [pick(r) for r in self.rounds]
        return statistics.median(values), max(values)

    @property
    def rss_growth_kib(self) -> int:
        return self.rss_after_kib - self.rss_before_kib

    @property
    def kib_per_receiver(self) -> float:
        return self.rss_growth_kib / self.count


def _new_feed(r: Round) -> float:
    return r.new_feed_from_request


def _remove_feed(r: Round) -> float:
    return r.remove_feed_last


# The compared figures: name, how to get it, format.
FIGURES: tuple[tuple[str, Callable[[CountResult], float], str], ...] = (
    ("connect s", lambda c: c.connect_s, "{:.2f}"),
    ("new_feed p50 ms", lambda c: c.stat(_new_feed)[0], "{:.1f}"),
    ("new_feed max ms", lambda c: c.stat(_new_feed)[1], "{:.1f}"),
    ("remove_feed p50 ms", lambda c: c.stat(_remove_feed)[0], "{:.1f}"),
    ("remove_feed max ms", lambda c: c.stat(_remove_feed)[1], "{:.1f}"),
    ("RSS growth MiB", lambda c: c.rss_growth_kib / 1024, "{:.1f}"),
    ("KiB/receiver", lambda c: c.kib_per_receiver, "{:.1f}"),
)
COMPARISON_HEADER = ("N", "figure", ORIGINAL, OURS, "ours/original")
DETAIL_HEADER = (
    "N",
    "server",
    *(name for name, _, _ in FIGURES),
    "ack rtt p50 ms",
    "RSS before MiB",
    "permessage-deflate",
    "full GCs (max ms)",
)


def _ratio(ours: float, original: float) -> str:
    return f"{ours / original:.2f}" if original > 0 else "—"


def comparison_rows(results: Sequence[CountResult]) -> list[tuple[str, ...]]:
    """One row per N and figure: original, ours, ours/original (N with both servers only)."""
    by_key = {(r.count, r.server): r for r in results}
    rows: list[tuple[str, ...]] = []
    for count in sorted({r.count for r in results}):
        ours, original = by_key.get((count, OURS)), by_key.get((count, ORIGINAL))
        if ours is None or original is None:
            continue
        for name, pick, fmt in FIGURES:
            mine, theirs = pick(ours), pick(original)
            rows.append(
                (str(count), name, fmt.format(theirs), fmt.format(mine), _ratio(mine, theirs))
            )
    return rows


def _gcs(r: CountResult) -> str:
    if r.server_full_gcs is None:
        return "—"
    return f"{len(r.server_full_gcs)} ({max(r.server_full_gcs, default=0):.0f})"


def detail_rows(results: Sequence[CountResult]) -> list[tuple[str, ...]]:
    """One row per server and N, every figure."""
    return [
        (
            str(r.count),
            r.server,
            *(fmt.format(pick(r)) for _, pick, fmt in FIGURES),
            f"{r.stat(lambda x: x.ack_rtt)[0]:.1f}",
            f"{r.rss_before_kib / 1024:.1f}",
            r.deflate,
            _gcs(r),
        )
        for r in results
    ]


def target_lines(results: Sequence[CountResult]) -> list[str]:
    lines = []
    for r in results:
        target = TARGETS_MS.get(r.count)
        if target is None:
            continue
        worst = {"new_feed": r.stat(_new_feed)[1], "remove_feed": r.stat(_remove_feed)[1]}
        verdict = "met" if max(worst.values()) <= target else "NOT met"
        figures = ", ".join(f"{event} max {ms:.1f} ms" for event, ms in worst.items())
        lines.append(f"{r.server}, N={r.count}, target {target:.0f} ms: {figures}: {verdict}")
    return lines


def _round_text(r: Round) -> str:
    return (
        f"t+{r.started_s:5.1f} s  "
        f"new_feed from request {r.new_feed_from_request:6.1f} from ack {r.new_feed_last:6.1f} "
        f"median {r.new_feed_median:6.1f}  "
        f"remove_feed last {r.remove_feed_last:6.1f} median {r.remove_feed_median:6.1f}  "
        f"ack rtt {r.ack_rtt:5.1f} ms"
    )


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    table = [tuple(header), *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    print()
    for row in table:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


def print_report(results: Sequence[CountResult], info: dict[str, str]) -> None:
    print()
    for r in results:
        print(f"{r.server}, N={r.count}")
        for number, one in enumerate(r.warmup + r.rounds):
            label = "warm-up" if number < len(r.warmup) else f"round {number - len(r.warmup) + 1}"
            print(f"  {label:8} {_round_text(one)}")
    _print_table(DETAIL_HEADER, detail_rows(results))
    comparison = comparison_rows(results)
    if comparison:
        _print_table(COMPARISON_HEADER, comparison)
    print()
    for line in target_lines(results):
        print(line)
    for key, value in info.items():
        print(f"{key}: {value}")


def command_line() -> str:
    python = sys.executable
    with_cwd = os.path.relpath(python)
    return shlex.join([with_cwd if not with_cwd.startswith("..") else python, *sys.argv])


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], text: int) -> list[str]:
    """A markdown table; the first `text` columns left-aligned, the others right."""
    align = ["---|"] * text + ["---:|"] * (len(header) - text)
    return [
        "| " + " | ".join(header) + " |",
        "|" + "".join(align),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def markdown(results: Sequence[CountResult], info: dict[str, str]) -> str:
    """The Fan-out section for this run: how, where, when, the figures."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [SECTION, "", DESCRIPTION, "", f"`{command_line()}` — {when}", ""]
    lines += [f"- {key}: {value}" for key, value in info.items()]
    comparison = comparison_rows(results)
    if comparison:
        lines += ["", *_markdown_table(COMPARISON_HEADER, comparison, text=2)]
    lines += ["", *_markdown_table(DETAIL_HEADER, detail_rows(results), text=2)]
    lines += ["", *(f"- {line}" for line in target_lines(results))]
    return "\n".join(lines).rstrip() + "\n"


def replace_section(path: Path, heading: str, section: str) -> None:
    """Put `section` (starting with its `heading` line) in place of that section of `path`,
    or at the end; the other sections stay as they are."""
    text = path.read_text(encoding="utf-8") if path.exists() else INTRO
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        before, after = text, ""
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        before, after = "".join(lines[:start]), "".join(lines[end:])
    before = before.rstrip() + "\n\n" if before.strip() else INTRO + "\n"
    after = "\n" + after if after else ""
    path.write_text(before + section.rstrip() + "\n" + after, encoding="utf-8")


def write_results(path: Path, results: Sequence[CountResult], info: dict[str, str]) -> None:
    """Rewrite the Fan-out section of `path` with this run."""
    replace_section(path, SECTION, markdown(results, info))


# ------------------------------------------------------------------------------- soak


@dataclass(frozen=True)
class Checks:
    """Every receiver against what the bench caused and against the others."""

    caused: list[int]  # per kind, SOAK_KINDS order
    complete: int  # receivers with exactly what was caused
    lost: int  # events missing, summed over receivers
    extra: int
    disorder: int  # out-of-order events, summed over receivers
    differing: int  # receivers whose sequence differs from the most common one
    problems: list[str]
    latency_ms: dict[str, tuple[float, float, float]]  # per kind, caused → last receiver:
    # p50, p99, max

    @property
    def clean(self) -> bool:
        return not (self.lost or self.extra or self.disorder or self.differing)


@dataclass(frozen=True)
class SoakResult:
    """The figures of one server's soak."""

    server: str
    receivers: int
    seconds: float
    deflate: str
    checks: Checks
    rss: list[tuple[float, int]]  # (seconds since the receivers joined, KiB)
    rss_reference_s: float

    @property
    def rss_growth_pct(self) -> float:
        """Highest RSS after the reference sample against it, in %."""
        reference = next(kib for t, kib in self.rss if t >= self.rss_reference_s)
        after = [kib for t, kib in self.rss if t > self.rss_reference_s] or [reference]
        return (max(after) - reference) / reference * 100

    @property
    def passed(self) -> bool:
        checks = self.checks
        complete = checks.complete == self.receivers
        return checks.clean and complete and self.rss_growth_pct < RSS_LIMIT_PCT


def _caused(index: int) -> Callable[[SoakResult], str]:
    return lambda r: str(r.checks.caused[index])


def _latency(kind: str) -> Callable[[SoakResult], str]:
    def show(r: SoakResult) -> str:
        p50, p99, worst = r.checks.latency_ms[kind]
        return f"{p50:.1f} / {p99:.1f} / {worst:.1f}"

    return show


def _rss_mib(r: SoakResult, at: str) -> float:
    if at == "first":
        return r.rss[0][1] / 1024
    if at == "last":
        return r.rss[-1][1] / 1024
    return next(kib for t, kib in r.rss if t >= r.rss_reference_s) / 1024


SOAK_FIGURES: tuple[tuple[str, Callable[[SoakResult], str]], ...] = (
    ("receivers", lambda r: str(r.receivers)),
    ("minutes", lambda r: f"{r.seconds / 60:.1f}"),
    ("permessage-deflate", lambda r: r.deflate),
    *((f"{kind} caused", _caused(i)) for i, kind in enumerate(SOAK_KINDS)),
    ("receivers with every event", lambda r: f"{r.checks.complete}/{r.receivers}"),
    ("lost (all receivers)", lambda r: str(r.checks.lost)),
    ("extra", lambda r: str(r.checks.extra)),
    ("out of order", lambda r: str(r.checks.disorder)),
    ("order unlike the others (receivers)", lambda r: str(r.checks.differing)),
    *((f"{kind} → last receiver p50 / p99 / max ms", _latency(kind)) for kind in SOAK_KINDS),
    ("RSS after connecting MiB", lambda r: f"{_rss_mib(r, 'first'):.1f}"),
    (
        "RSS at the reference MiB (s)",
        lambda r: f"{_rss_mib(r, 'ref'):.1f} ({r.rss_reference_s:.0f})",
    ),
    ("RSS at the end MiB", lambda r: f"{_rss_mib(r, 'last'):.1f}"),
    ("RSS growth after the reference", lambda r: f"{r.rss_growth_pct:+.1f} %"),
    ("verdict", lambda r: "PASS" if r.passed else "FAIL"),
)


def soak_rows(results: Sequence[SoakResult]) -> list[tuple[str, ...]]:
    """One row per figure, one column per server."""
    return [(name, *(show(r) for r in results)) for name, show in SOAK_FIGURES]


def print_soak(results: Sequence[SoakResult], info: dict[str, str]) -> None:
    _print_table(("figure", *(r.server for r in results)), soak_rows(results))
    print()
    for r in results:
        for text in r.checks.problems:
            print(f"{r.server}: problem: {text}")
    for key, value in info.items():
        print(f"{key}: {value}")


SOAK_DESCRIPTION = f"""\
`bench/soak.py` (not in CI; its docstring says what is checked): receivers that negotiate
permessage-deflate like Chromium, four senders that come and go (`sender_init`, a Janus
publisher, `set_feed_id`, a random stay, leave), the controller on the server's stdin
changing the geometry of the slots whose feed is up 10 times a second (x counting up).
Every receiver must get every event caused, in order and in the same order as the others;
the server's RSS may grow less than {RSS_LIMIT_PCT:.0f} % after the first minute (reference:
the sample at one minute, or half of a shorter run). *→ last receiver*: from the bench
causing the event (writing the line, sending `set_feed_id`, starting to leave) to its
arrival at the last receiver."""


def write_soak_results(path: Path, results: Sequence[SoakResult], info: dict[str, str]) -> None:
    """Rewrite the Soak section of `path` with this run."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [SOAK_SECTION, "", SOAK_DESCRIPTION, "", f"`{command_line()}` — {when}", ""]
    lines += [f"- {key}: {value}" for key, value in info.items()]
    header = ("figure", *(r.server for r in results))
    lines += ["", *_markdown_table(header, soak_rows(results), text=1)]
    problems = [f"- {r.server}: {text}" for r in results for text in r.checks.problems]
    if problems:
        lines += ["", "Problems (the first few):", *problems]
    replace_section(path, SOAK_SECTION, "\n".join(lines) + "\n")
