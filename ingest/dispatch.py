"""Which edge worker takes a new session: the signaling front's one decision, pure.

Each worker reports the sessions it holds and the CPU it used (a fraction of one core) over its report pipe;
the front adds the offers it has sent the worker since that report. A new session goes to the least-loaded
worker that can take it, as LiveKit dispatches agents to the worker reporting the least load: fewest sessions
first (reports lag, so a burst of offers must not all land on the worker that looked idlest half a second ago;
counting sessions dispatched since the report keeps a burst spread), then the least CPU. A worker is full at its
session limit or once its CPU reaches the limit (its frames would run late); when every worker is full or none is
ready, the offer is refused with a Retry-After.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

RETRY_FULL_S = 2  # every worker at its limit: sessions end all the time
RETRY_STARTING_S = 1  # no worker ready (starting or restarting): a worker starts in about a second


@dataclass(frozen=True)
class WorkerLoad:
    node_id: str
    ready: bool  # running, answering, its Kafka tasks up
    sessions: int  # held, as last reported, plus offers sent to it since
    cpu: float  # CPU used over the last report interval, in cores (1.0: one core busy)


@dataclass(frozen=True)
class Refusal:
    retry_after_s: int
    reason: str


def choose(workers: Sequence[WorkerLoad], max_sessions: int, cpu_limit: float) -> str | Refusal:
    """The node id of the worker that takes the next session, or why none can (and when to retry)."""
    ready = [w for w in workers if w.ready]
    if not ready:
        return Refusal(RETRY_STARTING_S, "no edge worker is ready")
    free = [w for w in ready if w.sessions < max_sessions and w.cpu < cpu_limit]
    if not free:
        return Refusal(RETRY_FULL_S, f"every edge worker is full ({max_sessions} sessions or "
                                     f"{cpu_limit:.0%} of a core)")
    return min(free, key=lambda w: (w.sessions, w.cpu, w.node_id)).node_id
