"""The paced outbound track and its reply queue, read the way aiortc's sender reads it."""

from __future__ import annotations

import numpy as np

from ingest.playout import PlayoutTrack


class Heard:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, int]] = []

    def playout_started(self, turn_id: str) -> None:
        self.events.append(("started", turn_id, 0))

    def playout_finished(self, turn_id: str, played_ms: int) -> None:
        self.events.append(("finished", turn_id, played_ms))

    def playout_interrupted(self, turn_id: str, played_ms: int) -> None:
        self.events.append(("interrupted", turn_id, played_ms))


def tone(ms: int) -> np.ndarray:
    t = np.arange(16 * ms) / 16_000
    return (6000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)


async def test_reply_is_played_in_order_then_silence_and_events_follow() -> None:
    heard, far = Heard(), []
    track = PlayoutTrack(heard, far_end=far.append)
    track.enqueue("t1", 0, tone(50), 16000)  # 2.5 frames: the tail waits for more or for the end
    track.enqueue("t1", 1, tone(50), 16000)
    track.end("t1")
    packets = [await track.recv() for _ in range(8)]
    assert [p.pts for p in packets] == [n * 960 for n in range(8)]
    assert heard.events == [("started", "t1", 0), ("finished", "t1", 100)]
    loud = [bool(np.abs(f).max() > 1000) for f in far]
    assert loud == [True] * 5 + [False] * 3  # the far-end reference is exactly what was sent
    assert len(track.lateness_ms) == 8


async def test_barge_in_stops_on_the_next_frame_and_drops_the_rest() -> None:
    heard, far = Heard(), []
    track = PlayoutTrack(heard, far_end=far.append)
    track.enqueue("t1", 0, tone(2000), 16000)
    for _ in range(3):
        await track.recv()
    assert track.interrupt() == ("t1", 60)
    await track.recv()
    assert np.abs(far[-1]).max() == 0 and track.queued_frames() == 0
    assert heard.events[-1] == ("interrupted", "t1", 60)
    assert track.interrupt() is None


async def test_cancel_drops_a_queued_reply_and_a_resampled_reply_plays() -> None:
    heard, far = Heard(), []
    track = PlayoutTrack(heard, far_end=far.append)
    track.enqueue("t1", 0, tone(100), 16000)
    track.cancel("t1")
    t = np.arange(2400) / 24_000
    track.enqueue("t2", 0, (6000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16), 24000)  # 100 ms at 24 kHz
    track.end("t2")
    for _ in range(7):
        await track.recv()
    assert [e[:2] for e in heard.events] == [("started", "t2"), ("finished", "t2")]
    assert 80 <= heard.events[-1][2] <= 120


async def test_a_redelivered_reply_plays_once() -> None:
    """A responder that takes over a turn resends it from chunk 0: only chunks not yet queued play, and chunks
    of a reply that already finished never start it again."""
    heard, far = Heard(), []
    track = PlayoutTrack(heard, far_end=far.append)
    track.enqueue("t1", 0, tone(40), 16000)
    track.enqueue("t1", 1, tone(40), 16000)
    track.enqueue("t1", 0, tone(40), 16000)  # the new responder starts over
    track.enqueue("t1", 1, tone(40), 16000)
    track.enqueue("t1", 2, tone(40), 16000)
    track.end("t1")
    for _ in range(10):
        await track.recv()
    assert heard.events == [("started", "t1", 0), ("finished", "t1", 120)]
    track.enqueue("t1", 0, tone(40), 16000)  # late duplicate after the reply finished
    track.end("t1")
    for _ in range(4):
        await track.recv()
    assert heard.events == [("started", "t1", 0), ("finished", "t1", 120)]
    assert track.queued_frames() == 0


async def test_a_reply_arriving_while_silent_is_sent_without_waiting_for_the_slot() -> None:
    """The first frame of a reply leaves as soon as its audio is there; the grid moves to it."""
    import asyncio

    heard = Heard()
    track = PlayoutTrack(heard)
    await track.recv()  # t0: the grid starts
    await track.recv()  # one silent frame, on the grid
    slot = track.send_times[-1] + 0.020  # when the next frame is due on the old grid
    waiting = asyncio.ensure_future(track.recv())
    for _ in range(3):
        await asyncio.sleep(0)  # let the track reach its wait for that slot (no wall time passes)
    track.enqueue("t1", 0, tone(100), 16000)
    await waiting
    assert heard.events == [("started", "t1", 0)]
    assert track.send_times[-1] < slot - 0.005  # sent at once, ahead of the slot it would have waited for
    nxt = await track.recv()  # the grid now runs from the reply's first frame
    assert 0.015 < track.send_times[-1] - track.send_times[-2] < 0.035  # the old grid would give ~40 ms
    assert nxt.pts == 3 * 960  # RTP timestamps stay continuous
