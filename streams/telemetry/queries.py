"""The operator queries, by name: one SQL whether `voicebus ops` opens ClickHouse itself or asks the sink.

Only these named queries with checked parameters are run; nobody sends SQL to the sink's endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

LATENCIES = (
    "endpointing_ms",
    "voice_to_voice_ms",
    "model_ms",
    "platform_overhead_ms",
    "barge_in_reaction_ms",
)
PERCENTILES = (0.5, 0.95, 0.99)
# The turn timeline of design.md (speculative aside), in order: the waterfall's stages after speech_end.
WATERFALL = (
    "vad_end",
    "turn_committed",
    "asr_final",
    "llm_first_token",
    "tts_first_audio",
    "reply_first_at_edge",
    "reply_first_sent",
)
GROUPS = {"none": "'all'", "node": "node_id", "engine": "engine"}
# Exact, interpolated like numpy's default ("linear", R7); fast enough at 10 M turns (bench/telemetry_ops).
QUANTILES = "quantilesExactInclusive"
MAX_ROWS = 10_000


class QueryError(ValueError):
    """A query name or parameter that is not allowed."""


@dataclass(frozen=True)
class Result:
    columns: list[str]
    rows: list[list[Any]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def to_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows}


def _int(params: Mapping[str, Any], name: str, default: int | None, low: int, high: int) -> int | None:
    value = params.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise QueryError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _window(params: Mapping[str, Any]) -> str:
    """WHERE clause: turns since `since_s` seconds ago (every turn when None); turn_day prunes partitions."""
    since = _int(params, "since_s", None, 1, 100 * 365 * 86400)
    if since is None:
        return "1"
    return (
        f"turn_day >= toDate(now() - INTERVAL {since} SECOND) "
        f"AND turn_time >= now64(9) - INTERVAL {since} SECOND"
    )


def latency_sql(params: Mapping[str, Any]) -> str:
    by = params.get("by", "none")
    if by not in GROUPS:
        raise QueryError(f"by must be one of {sorted(GROUPS)}, got {by!r}")
    levels = ", ".join(map(str, PERCENTILES))
    cols = ", ".join(f"count({lat}), {QUANTILES}({levels})({lat})" for lat in LATENCIES)
    return (
        f"SELECT {GROUPS[by]} AS grp, count() AS turns, {cols} FROM turn_latency "
        f"WHERE {_window(params)} GROUP BY grp ORDER BY grp"
    )


def slowest_sql(params: Mapping[str, Any]) -> str:
    n = _int(params, "n", 10, 1, MAX_ROWS)
    offsets = ", ".join(f"{stage}_offset_ms" for stage in WATERFALL)
    latencies = ", ".join(LATENCIES[:4])
    # Rank on the two columns the order needs, then read the whole rows of the N turns by primary key.
    return (
        f"SELECT turn_id, session_id, node_id, engine, toString(turn_time) AS turn_time, outcome, "
        f"{latencies}, "
        f"asr_ms, llm_ms, tts_ms, {offsets} FROM turn_latency "
        f"WHERE (turn_day, turn_id) IN (SELECT turn_day, turn_id FROM turn_latency WHERE {_window(params)} "
        f"AND voice_to_voice_ms IS NOT NULL ORDER BY voice_to_voice_ms DESC LIMIT {n}) "
        f"ORDER BY voice_to_voice_ms DESC, turn_id"
    )


def taking_sql(params: Mapping[str, Any]) -> str:
    return (
        "SELECT countIf(was_committed = 1) AS committed, countIf(barged_in = 1) AS barge_ins, "
        "countIf(false_interruption = 1) AS false_interruptions, "
        "countIf(barged_in = 1 OR false_interruption = 1) AS interruptions, "
        "countIf(was_speculative = 1) AS speculative, "
        "countIf(was_speculative = 1 AND withdrawn = 1 AND was_committed = 0) AS speculative_withdrawn, "
        "countIf(was_committed = 1 AND withdrawn = 1) AS premature_commits "
        f"FROM turn_latency WHERE {_window(params)}"
    )


# The latencies drawn over time (`ops report`, and the dashboard's time series).
OVER_TIME = ("voice_to_voice_ms", "endpointing_ms", "model_ms", "platform_overhead_ms")
MAX_BUCKETS = 500


def span_sql(params: Mapping[str, Any]) -> str:
    """The first and last turn in the window, in seconds since the epoch (what `ops report` divides in buckets)."""
    return (
        "SELECT count() AS turns, toUnixTimestamp(min(turn_time)) AS first, toUnixTimestamp(max(turn_time)) AS last "
        f"FROM turn_latency WHERE {_window(params)}"
    )


def over_time_sql(params: Mapping[str, Any]) -> str:
    """p50/p95/p99 of each OVER_TIME latency per `bucket_s` seconds of turn time."""
    bucket = _int(params, "bucket_s", 60, 1, 366 * 86400)
    levels = ", ".join(map(str, PERCENTILES))
    cols = ", ".join(f"{QUANTILES}({levels})({lat}) AS {lat.removesuffix('_ms')}" for lat in OVER_TIME)
    return (
        f"SELECT toUnixTimestamp(toStartOfInterval(turn_time, INTERVAL {bucket} SECOND)) AS time, count() AS turns, "
        f"{cols} FROM turn_latency WHERE {_window(params)} GROUP BY time ORDER BY time LIMIT {MAX_BUCKETS}"
    )


def session_turns_sql(params: Mapping[str, Any]) -> str:
    """Every turn of the given sessions with its latencies and waterfall (what `voicebus simulate` reads back)."""
    ids = params.get("session_ids")
    if (not isinstance(ids, list) or not 1 <= len(ids) <= MAX_ROWS
            or not all(isinstance(i, str) and len(i) == 32 and set(i) <= set("0123456789abcdef") for i in ids)):
        raise QueryError("session_ids must be a list of 1 to 10000 session ids (32 lowercase hex characters)")
    offsets = ", ".join(f"{stage}_offset_ms" for stage in WATERFALL)
    quoted = ", ".join(f"'{i}'" for i in ids)
    return (
        f"SELECT turn_id, session_id, toString(turn_time) AS turn_time, outcome, {', '.join(LATENCIES)}, "
        f"asr_ms, llm_ms, tts_ms, {offsets} FROM turn_latency "
        f"WHERE session_id IN ({quoted}) ORDER BY turn_time, turn_id"
    )


QUERIES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "latency": latency_sql,
    "slowest": slowest_sql,
    "taking": taking_sql,
    "span": span_sql,
    "over_time": over_time_sql,
    "session_turns": session_turns_sql,
}


def sql_for(name: str, params: Mapping[str, Any]) -> str:
    builder = QUERIES.get(name)
    if builder is None:
        raise QueryError(f"no query named {name!r}; known: {sorted(QUERIES)}")
    return builder(params)


def _plain(value: Any) -> Any:
    """JSON-safe values (the sink's endpoint sends results as JSON)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def execute(client: Any, name: str, params: Mapping[str, Any]) -> Result:
    """Run a named query on a clickhouse-connect client."""
    result = client.query(sql_for(name, params))
    return Result(list(result.column_names), [[_plain(v) for v in row] for row in result.result_rows])


def waterfall(offsets: Mapping[str, float | None]) -> dict[str, float | None]:
    """Time spent in each stage (ms): from the latest earlier stage to this one, 0 if it was already done.

    `offsets` maps a stage to its time after speech_end; a stage that was not stamped has None."""
    out: dict[str, float | None] = {}
    latest = 0.0
    for stage in WATERFALL:
        at = offsets.get(stage)
        if at is None:
            out[stage] = None
            continue
        out[stage] = max(0.0, at - latest)
        latest = max(latest, at)
    return out
