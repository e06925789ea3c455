"""The edge's receive buffer: reorder packets, release them at once, give up on a missing one adaptively.

aiortc's own buffer holds four packets (80 ms) before anything leaves it, and waits for a lost packet until
its 16 slots overflow. Our consumers are a VAD and Kafka, not a sound card: they need frames in order and
without gaps, as early as possible, not smoothed. So a packet that is next in order leaves the moment it
arrives (hold 0 on a clean network); only a *missing* packet holds the ones behind it, and only until its
deadline: expected arrival + ``wait``, where ``wait`` follows the network (a high percentile of recent
arrival jitter plus a margin, between ``min_wait_ms`` and ``max_wait_ms``). Past the deadline the slot is
concealed; if the packet turns up later it is counted late, dropped, and its lateness raises ``wait``.

Pure and clock-injected (times are arguments), so it is tested with tables of arrivals.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ingest.audio import RTP_TICKS_PER_FRAME
from schemas.audio import NS_PER_FRAME

SEQ_MOD = 1 << 16
TS_MOD = 1 << 32
SPECULATIVE_SLOTS = 3  # slots concealed past the newest packet before waiting for the sender to resume
MAX_GAP = 500  # slots (10 s): a larger jump is a resync, not a loss to conceal


@dataclass(frozen=True)
class Slot:
    seq: int  # extended (unwrapped) RTP sequence number
    rtp_ts: int  # extended RTP timestamp; for a concealed slot, extrapolated
    payload: bytes | None  # None: lost, conceal it
    arrival_ns: int  # when the packet arrived, or when it was given up


def unwrap(value: int, reference: int, modulus: int) -> int:
    """The integer congruent to ``value`` mod ``modulus`` that is closest to ``reference``."""
    delta = (value - reference) % modulus
    if delta >= modulus // 2:
        delta -= modulus
    return reference + delta


class AdaptiveJitterBuffer:
    def __init__(self, frame_ns: int = NS_PER_FRAME, ticks_per_frame: int = RTP_TICKS_PER_FRAME, min_wait_ms: float = 10.0,
                 max_wait_ms: float = 120.0, margin_ms: float = 5.0, window: int = 100,
                 quantile: float = 0.95) -> None:
        self.frame_ns, self.ticks_per_frame = frame_ns, ticks_per_frame
        self.min_wait_ns, self.max_wait_ns = int(min_wait_ms * 1e6), int(max_wait_ms * 1e6)
        self.margin_ns, self.quantile = int(margin_ms * 1e6), quantile
        self._jitter: deque[int] = deque(maxlen=window)
        self._wait_ns = self.min_wait_ns
        self._pending: dict[int, tuple[int, bytes, int]] = {}  # ext seq -> (ext ts, payload, arrival)
        self._next: int | None = None  # ext seq of the next slot to release
        self._last_ts: int | None = None  # ext ts of the last released slot
        self._base: tuple[int, int] | None = None  # (0, offset): expected arrival of seq k = offset + k * frame
        self._transits: deque[int] = deque(maxlen=window)  # arrival - seq * frame of recent packets
        self._ref_seq = self._ref_ts = 0
        self._newest = 0  # highest extended seq received
        self._given_up: deque[int] = deque(maxlen=64)  # recently concealed seqs, to tell late from duplicate
        self.received = self.released = self.concealed = self.late = self.duplicates = self.resyncs = 0

    @property
    def wait_ms(self) -> float:
        return self._wait_ns / 1e6

    @property
    def depth(self) -> int:
        return len(self._pending)

    def push(self, seq: int, ts: int, payload: bytes, now_ns: int) -> list[Slot]:
        """Add an arrived packet; returns the slots that are now releasable, in order."""
        if self._next is None:
            self._ref_seq, self._ref_ts = seq, ts
            self._next = seq
        seq = unwrap(seq, self._ref_seq, SEQ_MOD)
        ts = unwrap(ts, self._ref_ts, TS_MOD)
        self._ref_seq, self._ref_ts = seq, ts
        self.received += 1
        self._newest = max(self._newest, seq) if self.received > 1 else seq
        self._observe(seq, now_ns)
        if seq < self._next:
            if seq in self._given_up:
                self.late += 1  # its lateness is in the jitter window now: the wait grows
                self._adapt()
            else:
                self.duplicates += 1
            return []
        if seq - self._next > MAX_GAP and not self._pending:
            self._next = seq  # the sender jumped (restart, long outage): resynchronise rather than conceal
            self.resyncs += 1
        if seq in self._pending:
            self.duplicates += 1
            return []
        self._pending[seq] = (ts, payload, now_ns)
        return self._release(now_ns)

    def poll(self, now_ns: int) -> list[Slot]:
        """Conceal missing slots whose deadline has passed and release what follows them."""
        return self._release(now_ns)

    def deadline_ns(self) -> int | None:
        """When ``poll`` should next be called: the give-up time of the next slot, while one may be missing."""
        if self._next is None or self._base is None or not self._may_conceal():
            return None
        return self._expected_ns(self._next) + self._wait_ns

    def _may_conceal(self) -> bool:
        # With packets behind the gap, the gap is loss. With none, the sender may have stopped (mute, DTX,
        # hang-up): conceal a few slots, then wait for packets to say how long the gap was.
        assert self._next is not None
        return bool(self._pending) or self._next - self._newest <= SPECULATIVE_SLOTS

    def _expected_ns(self, seq: int) -> int:
        assert self._base is not None
        return self._base[1] + (seq - self._base[0]) * self.frame_ns

    def _observe(self, seq: int, now_ns: int) -> None:
        # The earliest-arrival line: the recent packet that came soonest relative to its place in the stream.
        # A window, not all time: a sender that falls behind real time (or a drifting clock) moves the line.
        transit = now_ns - seq * self.frame_ns
        self._transits.append(transit)
        if self._base is None or transit < self._base[1] or self.received % 10 == 0:
            self._base = (0, min(self._transits))
        jitter = now_ns - self._expected_ns(seq)
        self._jitter.append(jitter)
        if self.received % 10 == 0:
            self._adapt()

    def _adapt(self) -> None:
        ordered = sorted(self._jitter)
        high = ordered[min(len(ordered) - 1, int(self.quantile * len(ordered)))] if ordered else 0
        self._wait_ns = max(self.min_wait_ns, min(self.max_wait_ns, high + self.margin_ns))

    def _release(self, now_ns: int) -> list[Slot]:
        out: list[Slot] = []
        while self._next is not None and self._base is not None:
            item = self._pending.pop(self._next, None)
            if item is not None:
                ts, payload, arrival = item
                out.append(Slot(self._next, ts, payload, arrival))
                self.released += 1
            elif self._may_conceal() and now_ns >= self._expected_ns(self._next) + self._wait_ns:
                ts = (self._last_ts + self.ticks_per_frame) if self._last_ts is not None else self._ts_before()
                out.append(Slot(self._next, ts, None, now_ns))
                self._given_up.append(self._next)
                self.concealed += 1
            else:
                break
            self._last_ts = out[-1].rtp_ts
            self._next += 1
        return out

    def _ts_before(self) -> int:
        # Nothing released yet: extrapolate from the earliest packet we hold, or the reference.
        assert self._next is not None
        if not self._pending:
            return self._ref_ts - (self._ref_seq - self._next) * self.ticks_per_frame
        first = min(self._pending)
        return self._pending[first][0] - (first - self._next) * self.ticks_per_frame
