"""`voicebus ops`: how fast is it, where does the time go, and for whom is it slow.

  ops latency [--since 1h] [--by node|engine]   p50/p95/p99 and count of each latency
  ops turns --slowest N [--since ...]           the slowest turns (voice to voice) with their waterfall
  ops taking [--since ...]                      turn-taking rates
  ops report --png FILE [--since ...]           the slowest turns' waterfall and percentiles over time, drawn
Every command takes --format table|json|csv. Queries go through the running sink or open ClickHouse directly.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from collections.abc import Sequence
from typing import Any

from streams.telemetry import queries
from streams.telemetry.backend import Backend, OpsError, open_backend
from streams.telemetry.settings import TelemetrySettings

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str) -> int | None:
    """'90s', '30m', '1h', '7d', '2w' -> seconds; 'all' -> None (every turn)."""
    if text == "all":
        return None
    match = re.fullmatch(r"(\d+)([smhdw])", text.strip())
    if not match or int(match[1]) == 0:
        raise argparse.ArgumentTypeError(f"expected a duration like 90s, 30m, 1h, 7d or 'all', got {text!r}")
    return int(match[1]) * _UNITS[match[2]]


Table = tuple[list[str], list[list[Any]]]


def latency_table(result: queries.Result) -> Table:
    """One row per (group, latency): count, p50, p95, p99 in ms."""
    rows = []
    for row in result.rows:
        group, values = row[0], row[2:]
        for i, name in enumerate(queries.LATENCIES):
            count, levels = values[2 * i], values[2 * i + 1]
            p = [None if count == 0 else v for v in levels]
            rows.append([group, name.removesuffix("_ms"), count, *p])
    return ["group", "latency", "count", "p50_ms", "p95_ms", "p99_ms"], rows


def turns_table(result: queries.Result) -> Table:
    """One row per turn: its latencies, then the time spent in each stage of the waterfall."""
    head = [
        "turn_id",
        "node_id",
        "engine",
        "turn_time",
        "outcome",
        "voice_to_voice_ms",
        "endpointing_ms",
        "model_ms",
        "platform_overhead_ms",
    ]
    rows = []
    for rec in result.records():
        spent = queries.waterfall({s: rec[f"{s}_offset_ms"] for s in queries.WATERFALL})
        rows.append([rec[h] for h in head] + [spent[s] for s in queries.WATERFALL])
    return head + [f"{s}_ms" for s in queries.WATERFALL], rows


def taking_table(result: queries.Result) -> Table:
    """Each turn-taking event: how many turns had it, out of how many, and the rate."""
    r = result.records()[0]
    lines = [
        ("barge_ins", r["barge_ins"], r["committed"], "committed turns the person spoke over"),
        (
            "false_interruptions",
            r["false_interruptions"],
            r["interruptions"],
            "interruptions with no words after them (reply resumed)",
        ),
        (
            "speculative_withdrawn",
            r["speculative_withdrawn"],
            r["speculative"],
            "speculative turns withdrawn before a commit",
        ),
        (
            "premature_commits",
            r["premature_commits"],
            r["committed"],
            "committed turns withdrawn: the person went on speaking",
        ),
    ]
    rows = [[name, n, of, (n / of if of else None), what] for name, n, of, what in lines]
    return ["event", "turns", "of", "rate", "meaning"], rows


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1 and value != 0 else f"{value:.1f}"
    return str(value)


def render(table: Table, fmt: str) -> str:
    head, rows = table
    if fmt == "json":
        return json.dumps([dict(zip(head, row, strict=True)) for row in rows], indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(head)
        writer.writerows([["" if v is None else v for v in row] for row in rows])
        return out.getvalue().rstrip("\n")
    cells = [head] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    # Numbers right-aligned, text left-aligned (a column is numeric when its first row is).
    numeric = [bool(rows) and isinstance(rows[0][i], int | float) for i in range(len(head))]
    lines = [
        "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(r, widths, numeric, strict=True))
        for r in cells
    ]
    return "\n".join(line.rstrip() for line in [lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="voicebus ops", description=__doc__.splitlines()[0])
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--since",
        type=parse_since,
        default=3600,
        metavar="DURATION",
        help="turns from this long ago: 90s, 30m, 1h (default), 7d, or all",
    )
    common.add_argument("--format", choices=["table", "json", "csv"], default="table")
    sub = parser.add_subparsers(dest="command", required=True)
    latency = sub.add_parser("latency", parents=[common], help="p50/p95/p99 and count of each latency")
    latency.add_argument("--by", choices=["node", "engine"], default=None)
    turns = sub.add_parser("turns", parents=[common], help="the slowest turns with their waterfall")
    turns.add_argument("--slowest", type=int, default=10, metavar="N")
    sub.add_parser("taking", parents=[common], help="turn-taking rates")
    report = sub.add_parser("report", parents=[common],
                            help="draw the slowest turns' waterfall and the percentiles over time")
    report.add_argument("--png", required=True, metavar="FILE")
    report.add_argument("--slowest", type=int, default=10, metavar="N")
    return parser


def run(args: argparse.Namespace, backend: Backend) -> str:
    window = {"since_s": args.since}
    if args.command == "latency":
        table = latency_table(backend.run("latency", {**window, "by": args.by or "none"}))
    elif args.command == "turns":
        table = turns_table(backend.run("slowest", {**window, "n": args.slowest}))
    elif args.command == "taking":
        table = taking_table(backend.run("taking", window))
    else:
        from streams.telemetry.report import draw, gather

        report = gather(backend, args.since, args.slowest)
        draw(report, args.png)
        table = (["what", "value"], [["turns", report.turns], ["slowest drawn", len(report.slowest)],
                                     ["time buckets", f"{len(report.times)} of {report.bucket_s} s"], ["png", args.png]])
    return render(table, args.format)


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    try:
        print(run(args, open_backend(TelemetrySettings())))
    except (OpsError, queries.QueryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
