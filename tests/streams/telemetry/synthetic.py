"""Synthetic turns as real contract events, with the latencies they must produce, computed here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
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

MS = 1_000_000
STAGE_SERVICE = {
    "speech_end": "streams",
    "vad_end": "streams",
    "turn_speculative": "streams",
    "turn_committed": "streams",
    "asr_final": "streams",
    "llm_first_token": "responder",
    "tts_first_audio": "responder",
    "reply_first_at_edge": "ingest",
    "reply_first_sent": "ingest",
    "reply_last_sent": "ingest",
    "barge_in_speech_start": "ingest",
}


@dataclass
class Turn:
    turn_id: str
    session_id: str
    node_id: str
    llm_engine: str
    stages: dict[str, int]  # stage -> wall ns
    decisions: list[str] = field(default_factory=list)

    def ms(self, a: str, b: str) -> float | None:
        if a not in self.stages or b not in self.stages:
            return None
        return (self.stages[b] - self.stages[a]) / 1e6

    def latencies(self) -> dict[str, float | None]:
        """The definitions of streams/telemetry/ddl/003_turn_latency.sql, written again in Python."""
        s = self.stages
        chain = ("speech_end", "turn_committed", "asr_final", "llm_first_token", "tts_first_audio")
        model = None
        if all(k in s for k in chain):
            asr = max(0, s["asr_final"] - s["turn_committed"])
            llm = max(0, s["llm_first_token"] - max(s["turn_committed"], s["asr_final"]))
            tts = max(
                0, s["tts_first_audio"] - max(s["turn_committed"], s["asr_final"], s["llm_first_token"])
            )
            model = (asr + llm + tts) / 1e6
        endpointing = self.ms("speech_end", "turn_committed")
        v2v = self.ms("speech_end", "reply_first_sent")
        overhead = None if None in (v2v, endpointing, model) else v2v - endpointing - model  # type: ignore[operator]
        return {
            "endpointing_ms": endpointing,
            "voice_to_voice_ms": v2v,
            "model_ms": model,
            "platform_overhead_ms": overhead,
            "barge_in_reaction_ms": self.ms("barge_in_speech_start", "reply_last_sent"),
        }

    def events(self) -> list[BaseModel]:
        out: list[BaseModel] = []
        base: dict[str, Any] = dict(
            session_id=self.session_id, media_ns=0, turn_id=self.turn_id, node_id=self.node_id
        )
        for seq, (stage, wall) in enumerate(sorted(self.stages.items(), key=lambda kv: kv[1])):
            engine = {"asr_final": "sphinx", "llm_first_token": self.llm_engine, "tts_first_audio": "espeak"}
            out.append(
                StageStamped(
                    **base,
                    seq=seq,
                    wall_ns=wall,
                    stage=stage,
                    stage_wall_ns=wall,  # type: ignore[arg-type]
                    service=STAGE_SERVICE[stage],
                    engine=engine.get(stage, ""),
                )
            )  # type: ignore[arg-type]
        at = self.stages["speech_end"]
        for seq, kind in enumerate(self.decisions, start=100):
            kw = dict(base, seq=seq, wall_ns=at + seq * MS)
            out.append(decision(kind, kw))
        return out


def decision(kind: str, kw: dict[str, Any]) -> BaseModel:
    if kind == "speculative":
        return TurnSpeculative(**kw, text="hi", speech_start_media_ns=0, speech_end_media_ns=0)
    if kind == "committed":
        return TurnCommitted(**kw, text="hi", speech_start_media_ns=0, speech_end_media_ns=0)
    if kind == "withdrawn":
        return TurnCancelled(**kw, reason="withdrawn")
    if kind in ("barge_in", "false_interruption"):
        return (BargeIn if kind == "barge_in" else FalseInterruption)(**kw, played_ms=300)
    return TurnEnded(**kw, outcome=kind)


def make_turns(
    n: int, now_ns: int, rng: np.random.Generator, age_s: tuple[float, float] = (60, 1800), sessions: int = 5
) -> list[Turn]:
    """n turns that started between age_s[0] and age_s[1] seconds before now_ns, on two nodes and two LLMs.

    Some are speculative (LLM done before the commit), some barged in, some withdrawn, some unfinished."""
    turns = []
    for i in range(n):
        start = now_ns - int(rng.uniform(*age_s) * 1e9)
        gap = rng.gamma(2.0, 60.0, 7) * MS  # ms between consecutive stages
        committed = start + int(150 * MS + gap[0])
        stages = {
            "speech_end": start,
            "vad_end": start + int(100 * MS + gap[1] / 4),
            "turn_committed": committed,
            "asr_final": committed + int(gap[2] - 60 * MS),
        }
        decisions = ["committed"]
        if i % 4 == 0:  # speculative: the LLM answered before the commit
            stages["turn_speculative"] = stages["vad_end"] + MS
            stages["llm_first_token"] = committed - int(gap[3] / 10) - MS
            decisions.insert(0, "speculative")
        else:
            stages["llm_first_token"] = max(committed, stages["asr_final"]) + int(gap[3])
        stages["tts_first_audio"] = stages["llm_first_token"] + int(gap[4])
        if i % 10 != 9:  # one in ten never got a reply out
            stages["reply_first_at_edge"] = max(stages["tts_first_audio"], committed) + int(gap[5] / 3)
            stages["reply_first_sent"] = stages["reply_first_at_edge"] + int(gap[6] / 3)
            stages["reply_last_sent"] = stages["reply_first_sent"] + int(rng.uniform(500, 3000) * MS)
        if i % 7 == 3 and "reply_last_sent" in stages:
            stages["barge_in_speech_start"] = stages["reply_last_sent"] - int(rng.uniform(20, 200) * MS)
            decisions.append("barge_in")
        if i % 14 == 3:
            decisions.append("false_interruption")
        if i % 11 == 5:
            decisions.append("withdrawn")
        decisions.append("completed")
        turns.append(
            Turn(
                f"turn-{i:05d}",
                f"{i % sessions:032x}",
                f"edge-{i % 2}",
                ("echo", "vllm")[i % 3 == 0],
                stages,
                decisions,
            )
        )
    return turns


def session_events(session_id: str, node_id: str, started_ns: int, ended_ns: int) -> list[BaseModel]:
    return [
        SessionStarted(
            session_id=session_id,
            seq=0,
            media_ns=0,
            wall_ns=started_ns,
            node_id=node_id,
            remote="127.0.0.1:5000",
        ),
        SessionEnded(
            session_id=session_id,
            seq=1,
            media_ns=0,
            wall_ns=ended_ns,
            node_id=node_id,
            reason="client_closed",
            frames_in=500,
            frames_dropped=2,
        ),
    ]


async def seed(dsn: str, turns: list[Turn]) -> None:
    """Write the turns' events to ClickHouse as the sink would (rows through the sink's own code)."""
    from streams.telemetry.rows import TurnDays, to_row
    from streams.telemetry.writer import ClickHouse

    clickhouse = ClickHouse(dsn)
    await clickhouse.open()
    rows: dict[str, list[tuple]] = {}
    days = TurnDays()
    for turn in turns:
        for event in turn.events():
            table, row = to_row(event, days)
            rows.setdefault(table, []).append(row)
    await clickhouse.write(rows)
    await clickhouse.close()
