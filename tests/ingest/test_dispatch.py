"""The front's dispatch decision: which worker takes a new session, or the refusal with its Retry-After."""

from __future__ import annotations

import pytest

from ingest.dispatch import RETRY_FULL_S, RETRY_STARTING_S, Refusal, WorkerLoad, choose


def w(node: str, sessions: int = 0, cpu: float = 0.0, ready: bool = True) -> WorkerLoad:
    return WorkerLoad(node, ready, sessions, cpu)


CASES = [
    ("one idle worker", [w("a")], "a"),
    ("fewest sessions wins", [w("a", 3), w("b", 1), w("c", 2)], "b"),
    ("fewer sessions beats less CPU", [w("a", 2, 0.1), w("b", 1, 0.6)], "b"),
    ("equal sessions: least CPU", [w("a", 2, 0.5), w("b", 2, 0.2)], "b"),
    ("all equal: the first by node id", [w("b", 1, 0.2), w("a", 1, 0.2)], "a"),
    ("a worker not ready is skipped", [w("a", 0, ready=False), w("b", 5)], "b"),
    ("a worker at its session limit is skipped", [w("a", 10), w("b", 9)], "b"),
    ("a worker at its CPU limit is skipped", [w("a", 1, 0.95), w("b", 4, 0.5)], "b"),
    ("all at the session limit: refused", [w("a", 10), w("b", 10)], Refusal(RETRY_FULL_S, "full")),
    ("all over the CPU limit: refused", [w("a", 1, 0.9), w("b", 2, 1.3)], Refusal(RETRY_FULL_S, "full")),
    ("full or not ready: refused as full", [w("a", 10), w("b", ready=False)], Refusal(RETRY_FULL_S, "full")),
    ("none ready: refused, retry soon", [w("a", ready=False), w("b", ready=False)],
     Refusal(RETRY_STARTING_S, "ready")),
    ("no workers at all", [], Refusal(RETRY_STARTING_S, "ready")),
]


@pytest.mark.parametrize(("workers", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_choose(workers: list[WorkerLoad], expected: str | Refusal) -> None:
    got = choose(workers, max_sessions=10, cpu_limit=0.9)
    if isinstance(expected, Refusal):
        assert isinstance(got, Refusal) and got.retry_after_s == expected.retry_after_s
        assert expected.reason in got.reason
    else:
        assert got == expected


def test_a_burst_spreads_when_each_dispatch_is_counted() -> None:
    # The front counts each offer it sends until the next report: ten offers between two reports alternate.
    loads = {"a": 0, "b": 0}
    for _ in range(10):
        node = choose([w(n, s) for n, s in loads.items()], max_sessions=50, cpu_limit=0.9)
        assert isinstance(node, str)
        loads[node] += 1
    assert loads == {"a": 5, "b": 5}
