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

    def playout_paused(self, turn_id: str, played_ms: int) -> None:
        self.events.append(("paused", turn_id, played_ms))

    def playout_resumed(self, turn_id: str, played_ms: int) -> None:
        self.events.append(("resumed", turn_id, played_ms))

    def playout_dropped(self, turn_id: str, played_ms: int) -> None:
        self.events.append(("dropped", turn_id, played_ms))


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


def ramp(first: int, n: int) -> np.ndarray:
    """Samples that say where they are in the reply: sample i of the reply is 100 + i."""
    return (100 + np.arange(first, first + n)).astype(np.int16)


def sent_reply(far: list[np.ndarray]) -> np.ndarray:
    """The reply samples sent, in order, silence left out."""
    return np.concatenate([f for f in far if np.abs(f).max() > 0])


async def test_barge_in_pauses_on_the_next_frame_and_a_resume_plays_on_from_there() -> None:
    heard, far = Heard(), []
    track = PlayoutTrack(heard, far_end=far.append)
    track.enqueue("t1", 0, ramp(0, 3200), 16000)  # 200 ms
    for _ in range(3):
        await track.recv()
    assert track.interrupt() == ("t1", 60)
    assert track.playing_turn is None and track.paused_turn == "t1" and track.interrupt() is None
    track.enqueue("t1", 1, ramp(3200, 3200), 16000)  # the rest still arrives while paused: it queues
    track.end("t1")
    for _ in range(4):
        await track.recv()
    assert all(np.abs(f).max() == 0 for f in far[3:]) and track.queued_frames() == 17
    assert heard.events == [("started", "t1", 0), ("paused", "t1", 60)]
    assert track.resume("t1") and not track.resume("t1")
    for _ in range(18):
        await track.recv()
    assert heard.events[2:] == [("resumed", "t1", 60), ("finished", "t1", 400)]  # frames actually sent
    sent = sent_reply(far)
    expected = ramp(0, 6400)
    assert len(sent) == 6400 and np.array_equal(sent[:960], expected[:960])  # exactly where it stopped ...
    assert np.array_equal(sent[960 + 160:], expected[960 + 160:])
    fade = sent[960:960 + 160].astype(int) / expected[960:960 + 160]  # ... after a 10 ms fade-in (no click)
    assert fade[0] == 0 and np.all(np.diff(fade) > 0) and fade[-1] > 0.98


async def test_a_paused_reply_is_dropped_by_its_cancel_or_a_newer_reply() -> None:
    heard, far = Heard(), []
    track = PlayoutTrack(heard, far_end=far.append)
    track.enqueue("t1", 0, tone(1000), 16000)
    await track.recv()
    track.interrupt()
    track.cancel("t1")  # the words made the barge-in real: ReplyCancelled
    assert heard.events == [("started", "t1", 0), ("paused", "t1", 20), ("dropped", "t1", 20)]
    assert track.queued_frames() == 0 and not track.resume("t1")

    track.enqueue("t2", 0, tone(1000), 16000)
    await track.recv()
    await track.recv()
    track.interrupt()
    track.enqueue("t2", 1, tone(100), 16000)  # its own chunks queue behind the pause
    assert track.paused_turn == "t2"
    track.enqueue("t3", 0, tone(60), 16000)  # a newer reply: the paused one is given up, the new one plays
    track.end("t3")
    assert heard.events[-1] == ("dropped", "t2", 40) and track.paused_turn is None
    for _ in range(4):
        await track.recv()
    assert heard.events[-2:] == [("started", "t3", 0), ("finished", "t3", 60)]
    track.enqueue("t2", 2, tone(100), 16000)  # late chunks of a dropped reply never play
    assert not track.resume("t2") and track.queued_frames() == 0


async def test_a_paused_reply_is_kept_for_the_resume_window_only() -> None:
    heard, far = Heard(), []
    track = PlayoutTrack(heard, far_end=far.append, resume_window_ms=100)  # five frames
    track.enqueue("t1", 0, tone(1000), 16000)
    await track.recv()
    track.interrupt()
    for _ in range(5):
        await track.recv()
    assert track.paused_turn == "t1"  # 100 ms of silence sent: a resume now would still play it
    await track.recv()
    assert heard.events[-1] == ("dropped", "t1", 20) and track.paused_turn is None
    assert not track.resume("t1") and track.queued_frames() == 0
    assert all(np.abs(f).max() == 0 for f in far[1:])


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


async def test_a_reply_that_stops_coming_is_finished_after_the_stall() -> None:
    """Its responder died mid-reply: the edge does not stay "playing" (the next words would be a barge-in)."""
    heard, far = Heard(), []
    track = PlayoutTrack(heard, far_end=far.append, stall_ms=100)  # five frames
    track.enqueue("t1", 0, tone(40), 16000)
    for _ in range(2 + 4):
        await track.recv()
    assert track.playing_turn == "t1" and heard.events == [("started", "t1", 0)]  # a short underrun waits
    track.enqueue("t1", 1, tone(40), 16000)  # the next chunk resets the count
    for _ in range(2 + 4):
        await track.recv()
    assert track.playing_turn == "t1"
    await track.recv()
    assert heard.events[-1] == ("finished", "t1", 80) and track.playing_turn is None
    track.enqueue("t1", 2, tone(40), 16000)  # what comes later of it is not played
    assert track.queued_frames() == 0
