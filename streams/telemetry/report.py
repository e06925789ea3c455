"""`voicebus ops report --png FILE`: the latency distribution and the median stage waterfall, drawn."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from streams.telemetry import queries
from streams.telemetry.backend import OpsError


@dataclass(frozen=True)
class Summary:
    turns: int
    curves: dict[str, list[float]]  # latency -> its value at percentiles 1..99 (ms)
    waterfall: dict[str, float | None]  # stage -> median time spent in it (ms)


def summarize(result: queries.Result) -> Summary:
    row = result.rows[0]
    count, curves, medians = row[0], row[1 : 1 + len(queries.LATENCIES)], row[1 + len(queries.LATENCIES) :]
    usable = {
        name.removesuffix("_ms"): list(values)
        for name, values in zip(queries.LATENCIES, curves, strict=True)
        if values and not any(v is None or math.isnan(v) for v in values)
    }
    offsets = {
        stage: (None if m is None or math.isnan(m) else m)
        for stage, m in zip(queries.WATERFALL, medians, strict=True)
    }
    return Summary(int(count), usable, queries.waterfall(offsets))


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise OpsError("drawing needs matplotlib: pip install 'voicebus[ops]'") from exc
    return plt


def draw(result: queries.Result, path: str) -> Summary:
    summary = summarize(result)
    plt = _pyplot()
    fig, (dist, fall) = plt.subplots(1, 2, figsize=(13, 5))
    percentiles = list(range(1, 100))
    for name, values in summary.curves.items():
        dist.plot(values, percentiles, label=name)
    dist.set(title=f"latency distribution ({summary.turns} turns)", xlabel="ms", ylabel="percentile")
    dist.grid(alpha=0.3)
    if summary.curves:
        dist.legend()
    start, labels = 0.0, []
    for i, stage in enumerate(queries.WATERFALL):
        spent = summary.waterfall[stage] or 0.0
        fall.barh(i, spent, left=start)
        fall.text(start + spent, i, f" {spent:.0f} ms", va="center", fontsize=8)
        start += spent
        labels.append(stage)
    fall.set_yticks(range(len(labels)), labels)
    fall.invert_yaxis()
    fall.set(title="median time in each stage after speech_end", xlabel="ms after speech_end")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return summary
