"""`voicebus ops report --png FILE`: where the slowest turns spent their time (a waterfall of their stages), and
the latency percentiles over time. The dashboard in infra/grafana has the same panels."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams.telemetry import queries
from streams.telemetry.backend import Backend, OpsError

# Bucket sizes for the time axis (s): the smallest that gives at most TARGET_BUCKETS points.
BUCKETS = (10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
TARGET_BUCKETS = 60
LEVELS = [f"p{round(p * 100)}" for p in queries.PERCENTILES]


@dataclass(frozen=True)
class Report:
    turns: int
    slowest: list[dict[str, Any]]  # turn_id, voice_to_voice_ms, and the ms spent in each waterfall stage
    bucket_s: int
    times: list[int]  # start of each bucket, s since the epoch
    percentiles: dict[str, list[list[float | None]]]  # latency -> per bucket [p50, p95, p99] (None: no value)


def bucket_for(span_s: float) -> int:
    return next((b for b in BUCKETS if span_s / b <= TARGET_BUCKETS), BUCKETS[-1])


def _number(value: Any) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def gather(backend: Backend, since_s: int | None, slowest: int = 10) -> Report:
    """Run the report's queries: the slowest turns, the window's span, the percentiles per bucket."""
    window = {"since_s": since_s}
    turns = []
    for rec in backend.run("slowest", {**window, "n": slowest}).records():
        spent = queries.waterfall({s: rec[f"{s}_offset_ms"] for s in queries.WATERFALL})
        turns.append({"turn_id": rec["turn_id"], "voice_to_voice_ms": rec["voice_to_voice_ms"], **spent})
    span = backend.run("span", window).records()[0]
    count = int(span["turns"])
    bucket = bucket_for(since_s if since_s is not None else (span["last"] - span["first"]) if count else 0)
    times: list[int] = []
    percentiles: dict[str, list[list[float | None]]] = {lat: [] for lat in queries.OVER_TIME}
    for rec in backend.run("over_time", {**window, "bucket_s": bucket}).records():
        times.append(int(rec["time"]))
        for lat in queries.OVER_TIME:
            levels = rec[lat.removesuffix("_ms")]
            percentiles[lat].append([_number(v) for v in levels] if levels else [None] * len(LEVELS))
    return Report(count, turns, bucket, times, percentiles)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise OpsError("drawing needs matplotlib: pip install 'voicebus[ops]'") from exc
    return plt


def draw(report: Report, path: str) -> None:
    plt = _pyplot()
    fig = plt.figure(figsize=(13, 10), layout="constrained")
    grid = fig.add_gridspec(3, 2, height_ratios=[1.3, 1, 1])
    _waterfall(fig.add_subplot(grid[0, :]), report)
    for i, lat in enumerate(queries.OVER_TIME):
        _over_time(fig.add_subplot(grid[1 + i // 2, i % 2]), report, lat)
    fig.suptitle(f"voicebus latency: {report.turns} turns", fontsize=13)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _waterfall(ax: Any, report: Report) -> None:
    """One bar per turn, slowest on top: the time spent reaching each stage after the person stopped speaking."""
    colors = [f"C{i}" for i in range(len(queries.WATERFALL))]
    for row, turn in enumerate(report.slowest):
        left = 0.0
        for stage, color in zip(queries.WATERFALL, colors, strict=True):
            spent = turn[stage] or 0.0
            ax.barh(row, spent, left=left, color=color, label=stage if row == 0 else None)
            left += spent
        ax.text(left, row, f" {turn['voice_to_voice_ms']:.0f} ms", va="center", fontsize=8)
    ax.set_yticks(range(len(report.slowest)), [t["turn_id"][-16:] for t in report.slowest], fontsize=8)
    ax.invert_yaxis()
    ax.set(title=f"the {len(report.slowest)} slowest turns (voice to voice): time to reach each stage",
           xlabel="ms after the end of the person's speech")
    if report.slowest:
        ax.legend(fontsize=8, ncols=len(queries.WATERFALL), loc="upper center", bbox_to_anchor=(0.5, -0.2))
    else:
        ax.text(0.5, 0.5, "no complete turn in this window", transform=ax.transAxes, ha="center")


def _over_time(ax: Any, report: Report, latency: str) -> None:
    when = [datetime.fromtimestamp(t, UTC) for t in report.times]
    for i, level in enumerate(LEVELS):
        values = [float("nan") if v[i] is None else v[i] for v in report.percentiles[latency]]
        ax.plot(when, values, marker="." if len(when) < 30 else None, label=level)
    ax.set(title=f"{latency.removesuffix('_ms').replace('_', ' ')} per {_duration(report.bucket_s)}", ylabel="ms")
    ax.grid(alpha=0.3)
    ax.tick_params(axis="x", labelsize=8, labelrotation=20)
    if when:
        ax.legend(fontsize=8)


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"
