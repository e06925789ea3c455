"""Events -> ClickHouse rows (pure). One table per kind of event; the column order is the insert's."""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel

from schemas.conversation import (
    BargeIn,
    FalseInterruption,
    TurnCancelled,
    TurnCommitted,
    TurnEnded,
    TurnSpeculative,
)
from schemas.edge import SessionEnded, SessionStarted
from schemas.telemetry import StageStamped

Row = tuple[Any, ...]

STAGE_EVENTS = "stage_events"
TURN_DECISIONS = "turn_decisions"
SESSIONS = "sessions"

COLUMNS: dict[str, tuple[str, ...]] = {
    STAGE_EVENTS: (
        "turn_day",
        "turn_id",
        "stage",
        "session_id",
        "node_id",
        "stage_time",
        "stage_media_ns",
        "service",
        "engine",
        "event_time",
        "seq",
    ),
    TURN_DECISIONS: (
        "turn_day",
        "turn_id",
        "kind",
        "detail",
        "session_id",
        "node_id",
        "event_time",
        "played_ms",
        "seq",
    ),
    SESSIONS: (
        "session_id",
        "node_id",
        "started",
        "ended",
        "end_reason",
        "remote",
        "user_agent",
        "frames_in",
        "frames_dropped",
    ),
}


def utc_day(wall_ns: int) -> date:
    return datetime.fromtimestamp(wall_ns // 1_000_000_000, UTC).date()  # floor: floats round up


class TurnDays:
    """The UTC day of the first event seen of each turn, so a turn running over midnight stays one row.

    Bounded (least recently used turns are forgotten): a turn forgotten, or one whose first events were
    written
    before the sink restarted, takes the day of its event instead; only a turn that also crosses midnight
    then splits in two partial rows.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self._days: OrderedDict[str, date] = OrderedDict()
        self._capacity = capacity

    def day(self, turn_id: str, wall_ns: int) -> date:
        found = self._days.get(turn_id)
        if found is None:
            found = self._days[turn_id] = utc_day(wall_ns)
            if len(self._days) > self._capacity:
                self._days.popitem(last=False)
        else:
            self._days.move_to_end(turn_id)
        return found


DECISIONS = (TurnSpeculative, TurnCommitted, TurnCancelled, BargeIn, FalseInterruption, TurnEnded)
Decision = TurnSpeculative | TurnCommitted | TurnCancelled | BargeIn | FalseInterruption | TurnEnded


def _kind(event: Decision) -> tuple[str, str, int | None]:
    """(kind, detail, played_ms) of a voice.turns decision."""
    match event:
        case TurnSpeculative():
            return "speculative", "", None
        case TurnCommitted():
            return "committed", "", None
        case TurnCancelled(reason=reason):
            return "cancelled", reason, None
        case BargeIn(played_ms=played):
            return "barge_in", "", played
        case FalseInterruption(played_ms=played):
            return "false_interruption", "", played
        case TurnEnded(outcome=outcome):
            return "ended", outcome, None
    raise AssertionError(event)


def to_row(event: BaseModel, days: TurnDays) -> tuple[str, Row] | None:
    """(table, row) for an event the sink stores, None for one it does not."""
    if isinstance(event, StageStamped):
        day = days.day(event.turn_id, event.stage_wall_ns)
        return STAGE_EVENTS, (
            day,
            event.turn_id,
            event.stage,
            event.session_id,
            event.node_id,
            event.stage_wall_ns,
            event.stage_media_ns,
            event.service,
            event.engine,
            event.wall_ns,
            event.seq,
        )
    if isinstance(event, SessionStarted):
        return SESSIONS, (
            event.session_id,
            event.node_id,
            event.wall_ns,
            None,
            "",
            event.remote,
            event.user_agent,
            0,
            0,
        )
    if isinstance(event, SessionEnded):
        return SESSIONS, (
            event.session_id,
            event.node_id,
            None,
            event.wall_ns,
            event.reason,
            "",
            "",
            event.frames_in,
            event.frames_dropped,
        )
    if isinstance(event, DECISIONS):
        kind, detail, played_ms = _kind(event)
        return TURN_DECISIONS, (
            days.day(event.turn_id, event.wall_ns),
            event.turn_id,
            kind,
            detail,
            event.session_id,
            event.node_id,
            event.wall_ns,
            played_ms,
            event.seq,
        )
    return None
