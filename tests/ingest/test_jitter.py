"""The receive buffer, driven by tables of packet arrivals (times in ms)."""

from __future__ import annotations

import pytest

from ingest.jitter import AdaptiveJitterBuffer

MS = 1_000_000


Out = list[tuple[int, bool, float]]


def run(arrivals: list[tuple[int, float]], after_ms: float = 0, **kw: float) -> tuple[Out, AdaptiveJitterBuffer]:
    """Feed (seq, arrival ms) in order of arrival, polling at deadlines until ``after_ms`` past the last
    arrival; returns (seq, concealed, time released in ms) per slot."""
    jb = AdaptiveJitterBuffer(**kw)
    out: Out = []
    events = sorted(arrivals, key=lambda a: a[1])
    until_ms = events[-1][1] + after_ms
    i = 0
    while True:
        deadline = jb.deadline_ns()
        next_arrival = events[i][1] if i < len(events) else None
        if deadline is not None and deadline / MS <= until_ms and (next_arrival is None or deadline / MS < next_arrival):
            now = deadline / MS
            slots = jb.poll(deadline)
        elif next_arrival is not None:
            now = next_arrival
            seq, t = events[i]
            i += 1
            slots = jb.push(seq % 65536, (1000 + seq * 960) % (1 << 32), b"x%d" % seq, int(t * MS))
        else:
            break
        out += [(s.seq, s.payload is None, now) for s in slots]
    return out, jb


def test_in_order_packets_leave_at_once() -> None:
    out, jb = run([(n, n * 20.0) for n in range(50)])
    assert [s for s, _, _ in out] == list(range(50))
    assert all(t == n * 20.0 for n, (_, _, t) in enumerate(out))  # hold 0
    assert jb.concealed == 0 and jb.late == 0


@pytest.mark.parametrize("lost", [[10], [10, 11], [3, 20, 21, 22]])
def test_a_lost_packet_is_concealed_after_a_short_wait(lost: list[int]) -> None:
    out, jb = run([(n, n * 20.0) for n in range(40) if n not in lost])
    assert [s for s, _, _ in out] == list(range(40))
    assert [s for s, c, _ in out if c] == lost
    for seq, concealed, t in out:
        if concealed:
            assert t - seq * 20.0 <= jb.wait_ms + 0.001  # given up at its deadline, not at overflow
            assert t - seq * 20.0 <= 40


def test_reordered_packets_within_the_wait_are_put_back_in_order() -> None:
    arrivals = [(n, n * 20.0) for n in range(30)]
    arrivals[10], arrivals[11] = (10, 11 * 20.0 + 4), (11, 11 * 20.0)  # 10 comes 24 ms late, after 11
    out, jb = run(arrivals, min_wait_ms=30)
    assert [s for s, _, _ in out] == list(range(30))
    assert jb.concealed == 0


def test_wait_grows_under_jitter_and_stays_bounded() -> None:
    clean, jb_clean = run([(n, n * 20.0) for n in range(200)])
    jittery = [(n, n * 20.0 + (n * 37 % 60)) for n in range(200)]  # up to 59 ms late
    out, jb = run(jittery, max_wait_ms=120)
    assert jb_clean.wait_ms <= 20
    assert jb.wait_ms > 40 and jb.wait_ms <= 120
    assert [s for s, _, _ in out] == list(range(200))


def test_late_packet_after_concealment_is_counted_and_dropped() -> None:
    arrivals = [(n, n * 20.0) for n in range(20) if n != 5] + [(5, 5 * 20.0 + 100)]
    out, jb = run(arrivals)
    assert [s for s, _, _ in out] == list(range(20))
    assert [s for s, c, _ in out if c] == [5]
    assert jb.late == 1


def test_when_the_sender_stops_only_a_few_slots_are_concealed() -> None:
    out, jb = run([(n, n * 20.0) for n in range(10)], after_ms=1000)
    assert [s for s, c, _ in out if c] == [10, 11, 12]
    assert jb.deadline_ns() is None  # then it waits for packets


def test_sequence_numbers_wrap() -> None:
    start = 65530
    out, _ = run([(start + n, n * 20.0) for n in range(12)])
    assert [s - start for s, _, _ in out] == list(range(12))
