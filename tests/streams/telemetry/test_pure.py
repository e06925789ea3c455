"""Pure parts of the telemetry sink and `voicebus ops`: rows, turn days, waterfall, durations, output."""

from __future__ import annotations

import argparse
import csv
import io
import json
from datetime import date

import pytest

from schemas.conversation import BargeIn, TurnCancelled, TurnEnded
from schemas.edge import SessionEnded
from schemas.telemetry import StageStamped
from streams.telemetry import queries
from streams.telemetry.ops import latency_table, parse_since, render, taking_table
from streams.telemetry.rows import COLUMNS, TurnDays, to_row

SID = "ab" * 16
NOON = 1_767_268_800_000_000_000  # 2026-01-01 12:00 UTC
MIDNIGHT = 1_767_312_000_000_000_000  # 2026-01-02 00:00 UTC
BASE = dict(session_id=SID, seq=3, media_ns=0, wall_ns=NOON, node_id="edge-1")


@pytest.mark.parametrize(
    "event, table, expected",
    [
        (
            StageStamped(
                **BASE,
                turn_id="t1",
                stage="llm_first_token",
                stage_wall_ns=NOON + 5,
                stage_media_ns=7,
                service="responder",
                engine="echo",
            ),
            "stage_events",
            {
                "turn_day": date(2026, 1, 1),
                "turn_id": "t1",
                "stage": "llm_first_token",
                "stage_time": NOON + 5,
                "stage_media_ns": 7,
                "service": "responder",
                "engine": "echo",
            },
        ),
        (
            TurnCancelled(**BASE, turn_id="t1", reason="withdrawn"),
            "turn_decisions",
            {"kind": "cancelled", "detail": "withdrawn", "played_ms": None, "event_time": NOON},
        ),
        (
            BargeIn(**BASE, turn_id="t1", played_ms=420),
            "turn_decisions",
            {"kind": "barge_in", "played_ms": 420},
        ),
        (
            TurnEnded(**BASE, turn_id="t1", outcome="interrupted"),
            "turn_decisions",
            {"kind": "ended", "detail": "interrupted"},
        ),
        (
            SessionEnded(**BASE, reason="ice_failed", frames_in=9),
            "sessions",
            {"session_id": SID, "started": None, "ended": NOON, "end_reason": "ice_failed", "frames_in": 9},
        ),
    ],
)
def test_events_become_rows_of_their_table(event, table, expected):
    got_table, row = to_row(event, TurnDays())
    assert got_table == table
    named = dict(zip(COLUMNS[table], row, strict=True))
    assert {k: named[k] for k in expected} == expected


def test_a_turn_keeps_the_day_of_its_first_event_across_midnight():
    days = TurnDays(capacity=2)
    assert days.day("t1", MIDNIGHT - 1) == date(2026, 1, 1)
    assert days.day("t1", MIDNIGHT + 1) == date(2026, 1, 1)
    assert days.day("t2", MIDNIGHT + 1) == date(2026, 1, 2)
    days.day("t3", MIDNIGHT + 1)  # capacity 2: t1 is forgotten, then takes its event's day
    assert days.day("t1", MIDNIGHT + 1) == date(2026, 1, 2)


@pytest.mark.parametrize(
    "offsets, spent",
    [
        (
            {
                "vad_end": 100,
                "turn_committed": 300,
                "asr_final": 320,
                "llm_first_token": 500,
                "tts_first_audio": 550,
                "reply_first_at_edge": 560,
                "reply_first_sent": 580,
            },
            {
                "vad_end": 100,
                "turn_committed": 200,
                "asr_final": 20,
                "llm_first_token": 180,
                "tts_first_audio": 50,
                "reply_first_at_edge": 10,
                "reply_first_sent": 20,
            },
        ),
        # speculative: the first token came before the commit, so it cost nothing on the critical path
        (
            {
                "vad_end": 100,
                "turn_committed": 300,
                "asr_final": 250,
                "llm_first_token": 280,
                "tts_first_audio": 400,
                "reply_first_at_edge": None,
                "reply_first_sent": None,
            },
            {
                "vad_end": 100,
                "turn_committed": 200,
                "asr_final": 0,
                "llm_first_token": 0,
                "tts_first_audio": 100,
                "reply_first_at_edge": None,
                "reply_first_sent": None,
            },
        ),
    ],
)
def test_waterfall_is_time_after_the_latest_earlier_stage(offsets, spent):
    assert queries.waterfall(offsets) == pytest.approx(spent)


@pytest.mark.parametrize(
    "text, seconds",
    [("90s", 90), ("30m", 1800), ("1h", 3600), ("7d", 604800), ("2w", 1209600), ("all", None)],
)
def test_since_durations(text, seconds):
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "0h", "1y", "-1h", "1h30m"])
def test_bad_since_durations_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_since(text)


@pytest.mark.parametrize(
    "name, params",
    [
        ("latency", {"by": "session_id"}),
        ("latency", {"since_s": "1; DROP TABLE turns"}),
        ("slowest", {"n": 0}),
        ("slowest", {"n": "5"}),
        ("drop", {}),
    ],
)
def test_only_named_queries_with_checked_parameters_run(name, params):
    with pytest.raises(queries.QueryError):
        queries.sql_for(name, params)


LATENCY_RESULT = queries.Result(
    ["grp", "turns"] + [f"c{i}" for i in range(10)],
    [
        [
            "edge-1",
            4,
            4,
            [1.0, 2.0, 3.0],
            4,
            [10.0, 20.0, 30.0],
            4,
            [5.0, 6.0, 7.0],
            4,
            [0.5, 0.6, 0.7],
            0,
            [float("nan")] * 3,
        ]
    ],
)


def test_latency_rows_per_group_and_latency_with_no_nan():
    head, rows = latency_table(LATENCY_RESULT)
    assert head == ["group", "latency", "count", "p50_ms", "p95_ms", "p99_ms"]
    assert rows[1] == ["edge-1", "voice_to_voice", 4, 10.0, 20.0, 30.0]
    assert rows[4] == ["edge-1", "barge_in_reaction", 0, None, None, None]


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_every_format_carries_the_same_numbers(fmt):
    table = latency_table(LATENCY_RESULT)
    out = render(table, fmt)
    if fmt == "json":
        assert json.loads(out)[1] == dict(zip(table[0], table[1][1], strict=True))
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(out)))
        assert rows[0] == table[0] and rows[2] == ["edge-1", "voice_to_voice", "4", "10.0", "20.0", "30.0"]
        assert rows[5][3:] == ["", "", ""]
    else:
        lines = out.splitlines()
        assert lines[0].split() == table[0] and len(lines) == 2 + len(table[1])
        assert lines[3].split() == ["edge-1", "voice_to_voice", "4", "10.0", "20.0", "30.0"]


def test_taking_rates_have_their_denominators():
    result = queries.Result(
        [
            "committed",
            "barge_ins",
            "false_interruptions",
            "interruptions",
            "speculative",
            "speculative_withdrawn",
            "premature_commits",
        ],
        [[40, 10, 2, 11, 0, 0, 4]],
    )
    rates = {row[0]: row[1:4] for row in taking_table(result)[1]}
    assert rates == {
        "barge_ins": [10, 40, 0.25],
        "false_interruptions": [2, 11, 2 / 11],
        "speculative_withdrawn": [0, 0, None],
        "premature_commits": [4, 40, 0.1],
    }
