"""An edge worker: one edge node in its own process behind the signaling front (ingest.front), which starts it.

It serves the node's signaling on a loopback port of its own (the front forwards offers there) and reports to
the front over a pipe, one JSON object a line:

- ``{"type": "ready", "port": P, "pid": N}`` once it answers offers;
- ``{"type": "load", "healthy": bool, "cpu": C, "sessions": {session id: next seq}}`` every REPORT_S: ``cpu`` is
  the cores it used since the last report; the seqs let the front continue a session's events if the worker dies;
- ``{"type": "ended", "session_id": S, "reason": R}`` as each session ends.

When the pipe breaks (the front is gone) the worker drains and exits: workers never outlive their front.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time
from typing import Any

from ingest.peer import EdgeSession
from ingest.server import EdgeNode, running_edge
from ingest.settings import IngestSettings
from runtime.log import setup_logging
from runtime.service import run_until_signal

log = logging.getLogger("ingest.worker")  # not __main__: it runs with -m

REPORT_S = 0.5


class _Pipe(asyncio.Protocol):
    def __init__(self, gone: asyncio.Event) -> None:
        self._gone = gone

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone.set()


class Reporter:
    """JSON lines to the front; ``gone`` is set when the front no longer reads them."""

    def __init__(self, transport: asyncio.WriteTransport, gone: asyncio.Event) -> None:
        self._transport, self.gone = transport, gone

    @classmethod
    async def open(cls, fd: int) -> Reporter:
        gone = asyncio.Event()
        transport, _ = await asyncio.get_running_loop().connect_write_pipe(lambda: _Pipe(gone),
                                                                           os.fdopen(fd, "wb", buffering=0))
        return cls(transport, gone)

    def send(self, message: dict[str, Any]) -> None:
        if not self.gone.is_set() and not self._transport.is_closing():
            self._transport.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def close(self) -> None:
        self._transport.close()


async def serve_worker(settings: IngestSettings, report_fd: int, stop: asyncio.Event) -> None:
    reporter = await Reporter.open(report_fd)

    def ended(session: EdgeSession) -> None:
        reporter.send({"type": "ended", "session_id": session.id, "reason": session.end_reason})

    async with running_edge(settings) as node:
        node.behind_front, node.on_session_ended = True, ended
        reporter.send({"type": "ready", "port": node.port, "pid": os.getpid()})
        log.info("edge worker %s ready on port %d", settings.node_id, node.port, extra={"node_id": settings.node_id})
        await _report(node, reporter, stop)
        log.info("draining", extra={"node_id": settings.node_id})
    reporter.close()


async def _report(node: EdgeNode, reporter: Reporter, stop: asyncio.Event) -> None:
    wall, cpu = time.monotonic(), time.process_time()
    stopping = asyncio.ensure_future(stop.wait())
    gone = asyncio.ensure_future(reporter.gone.wait())
    try:
        while True:
            done, _ = await asyncio.wait([stopping, gone], timeout=REPORT_S)  # the report interval, not a sync
            if done:
                if gone in done:
                    log.warning("the signaling front is gone: stopping", extra={"node_id": node.settings.node_id})
                return
            now_wall, now_cpu = time.monotonic(), time.process_time()
            used = (now_cpu - cpu) / max(now_wall - wall, 1e-3)
            wall, cpu = now_wall, now_cpu
            reporter.send({"type": "load", "healthy": node.tasks.healthy, "cpu": round(used, 3),
                           "sessions": {s.id: s.seq for s in node.sessions.values()}})
    finally:
        stopping.cancel()
        gone.cancel()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ingest.worker", description=__doc__)
    parser.add_argument("--report-fd", type=int, required=True, help="the pipe to report to the front on")
    args = parser.parse_args(argv)
    settings = IngestSettings()
    setup_logging(settings.log_level, settings.log_json)
    try:
        return run_until_signal(settings, lambda stop: serve_worker(settings, args.report_fd, stop))
    except OSError as exc:
        log.error("cannot start the edge worker: %s", exc)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
