"""Responder benchmark on a private real broker: committed turn -> first reply event, speculative turns,
the work speculation wastes, and how fast a cancel stops a reply. Embedded engines (rules LLM, espeak-ng).

Run: .venv/bin/python -m bench.inference_responder [--turns 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from inference.responder import Responder
from inference.settings import ResponderSettings
from runtime.broker import LocalKafka
from runtime.kafka import make_consumer, make_producer
from runtime.provisioning import create_topics
from runtime.settings import CommonSettings, KafkaBrokerSettings
from schemas.base import new_session_id
from schemas.conversation import TurnCancelled, TurnCommitted, TurnSpeculative
from schemas.topics import REPLIES, TURNS, replies_topic

NODE = "bench-edge"
TEXTS = ["hello", "how are you", "what is seven times six", "my name is alice", "what is my name",
         "go forward ten meters", "what can you do", "I like trains"]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bench:
    def __init__(self, settings: ResponderSettings) -> None:
        self.settings = settings
        self.producer = make_producer(settings)
        self.consumer = make_consumer(settings, settings.topic(replies_topic(NODE)), group_id=None)
        self.arrived: dict[tuple[str, str], float] = {}  # (turn id, event type) -> first arrival (perf_counter)
        self.changed = asyncio.Event()
        self.seq = 0

    async def watch(self) -> None:
        while True:
            for records in (await self.consumer.getmany(timeout_ms=50)).values():
                for record in records:
                    event = REPLIES.codec.decode(record.value)
                    self.arrived.setdefault((event.turn_id, event.type), time.perf_counter())
            self.changed.set()

    async def until(self, turn_id: str, kind: str, timeout: float = 30) -> float:
        async with asyncio.timeout(timeout):
            while (turn_id, kind) not in self.arrived:
                self.changed.clear()
                await self.changed.wait()
        return self.arrived[(turn_id, kind)]

    async def send(self, cls: Any, session: str, turn_id: str, **kw: Any) -> float:
        self.seq += 1
        event = cls(session_id=session, seq=self.seq, media_ns=0, wall_ns=time.time_ns(), node_id=NODE,
                    turn_id=turn_id, **kw)
        t0 = time.perf_counter()
        await self.producer.send_and_wait(self.settings.topic(TURNS.name), TURNS.codec.encode(event),
                                          key=session.encode())
        return t0


def ms(values: list[float]) -> str:
    values = sorted(values)
    return f"median {statistics.median(values):6.1f} ms, p90 {values[int(len(values) * 0.9) - 1]:6.1f} ms"


async def run(settings: ResponderSettings, turns: int) -> None:
    responder = Responder(settings)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(responder.run(stop, ready))
    await ready.wait()
    b = Bench(settings)
    await b.producer.start()
    await b.consumer.start()
    watcher = asyncio.create_task(b.watch())
    session = new_session_id()
    try:
        # Warm-up turn (consumer assignment, first metadata lookups).
        await b.send(TurnCommitted, session, "warm", text="hello", speech_start_media_ns=0, speech_end_media_ns=0)
        await b.until("warm", "reply_ended")

        cold = []
        for i in range(turns):
            t0 = await b.send(TurnCommitted, session, f"c{i}", text=TEXTS[i % len(TEXTS)], speech_start_media_ns=0, speech_end_media_ns=0)
            cold.append((await b.until(f"c{i}", "reply_audio_chunk") - t0) * 1000)
            await b.until(f"c{i}", "reply_ended")
        inside = list(responder.stats.commit_to_first_chunk_ms)[1:]
        print(f"committed turn -> first reply chunk at the edge (2 Kafka hops), {turns} turns: {ms(cold)}")
        print(f"  inside the responder (commit consumed -> first chunk handed to Kafka): {ms(inside)}")

        warm = []
        for i in range(turns):
            text = TEXTS[i % len(TEXTS)]
            await b.send(TurnSpeculative, session, f"s{i}", text=text, speech_start_media_ns=0, speech_end_media_ns=0)
            await responder.wait_for(lambda r, t=f"s{i}": r.held_audio_ms(t) > 0, 30)
            t0 = await b.send(TurnCommitted, session, f"s{i}", text=text, speech_start_media_ns=0, speech_end_media_ns=0)
            warm.append((await b.until(f"s{i}", "reply_audio_chunk") - t0) * 1000)
            await b.until(f"s{i}", "reply_ended")
        print(f"speculative turn prepared, then committed -> first chunk at the edge: {ms(warm)}")

        # Speculation waste: of 4 speculative turns, 2 committed as guessed, 1 committed with other text, 1 withdrawn.
        s0 = responder.stats
        used0, wasted0 = (s0.used.tokens, s0.used.audio_ms), (s0.wasted.tokens, s0.wasted.audio_ms)
        for i in range(turns):
            tid, text, kind = f"w{i}", TEXTS[i % len(TEXTS)], i % 4
            await b.send(TurnSpeculative, session, tid, text=text if kind != 2 else text + " please",
                         speech_start_media_ns=0, speech_end_media_ns=0)
            await responder.wait_for(lambda r, t=tid: r.held_audio_ms(t) > 0, 30)
            if kind == 3:
                await b.send(TurnCancelled, session, tid, reason="withdrawn")
                await b.send(TurnCommitted, session, f"{tid}x", text="thank you", speech_start_media_ns=0, speech_end_media_ns=0)
                await b.until(f"{tid}x", "reply_ended")
            else:
                await b.send(TurnCommitted, session, tid, text=text, speech_start_media_ns=0, speech_end_media_ns=0)
                await b.until(tid, "reply_ended")
        s = responder.stats
        used = (s.used.tokens - used0[0], s.used.audio_ms - used0[1])
        wasted = (s.wasted.tokens - wasted0[0], s.wasted.audio_ms - wasted0[1])
        print(f"speculation mix (1/2 as guessed, 1/4 other text, 1/4 withdrawn), {turns} turns: wasted "
              f"{wasted[0]} tokens / {wasted[1] / 1000:.1f} s audio vs used {used[0]} tokens / {used[1] / 1000:.1f} s "
              f"({wasted[1] / max(1.0, used[1]):.0%} extra audio work); totals: {s.speculative_used} used, "
              f"{s.speculative_wasted} wasted, {s.wasted.busy_s * 1000:.0f} ms busy on wasted replies")

        cancel_e2e = []
        n0 = len(responder.stats.cancel_ms)
        for i in range(max(5, turns // 2)):
            await b.send(TurnCommitted, session, f"k{i}", text="tell me a story", speech_start_media_ns=0, speech_end_media_ns=0)
            await b.until(f"k{i}", "reply_audio_chunk")
            t0 = await b.send(TurnCancelled, session, f"k{i}", reason="barge_in")
            cancel_e2e.append((await b.until(f"k{i}", "reply_cancelled") - t0) * 1000)
        inside = list(responder.stats.cancel_ms)[n0:]
        print(f"cancel mid-reply -> reply_cancelled at the edge (2 Kafka hops): {ms(cancel_e2e)}")
        print(f"  inside the responder (cancel consumed -> reply stopped, reply_cancelled handed to Kafka): "
              f"{ms(inside)}")
    finally:
        watcher.cancel()
        stop.set()
        await task
        await b.consumer.stop()
        await b.producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="voicebus-responder-bench-"))
    broker = LocalKafka(KafkaBrokerSettings(kafka_port=free_port(), kafka_controller_port=free_port()),
                        state_dir=work / "kafka")
    started = broker.start()
    try:
        common = CommonSettings(kafka_bootstrap=started.bootstrap, topic_prefix=f"b{uuid.uuid4().hex[:6]}.")
        asyncio.run(create_topics(common, (NODE,)))
        settings = ResponderSettings(**common.model_dump(), responder_group_id=f"bench-{uuid.uuid4().hex[:6]}")
        asyncio.run(run(settings, args.turns))
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
