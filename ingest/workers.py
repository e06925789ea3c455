"""The signaling front's edge workers: started, watched over their report pipes, restarted when they die.

The front owns which sessions each worker holds: a session is added when the worker's answer passes through the
front and removed when the worker reports its end. So when a worker dies the front knows exactly whose sessions
went with it (``on_lost``), even those started after its last report.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ingest.dispatch import WorkerLoad
from ingest.settings import IngestSettings

log = logging.getLogger(__name__)

EARLY_ENDS_KEPT = 256  # sessions a worker reported ended before the front saw their answer go by
STALE_S = 5.0  # a worker silent this long (it reports every half second) is stuck: it gets no new session


@dataclass
class Worker:
    node_id: str
    proc: asyncio.subprocess.Process | None = None
    port: int = 0
    ready: bool = False  # reported ready since its last start and its Kafka tasks are up
    cpu: float = 0.0
    pending: int = 0  # offers forwarded to it, not answered yet
    sessions: dict[str, int] = field(default_factory=dict)  # session id -> its next seq, as last reported
    restarts: int = 0
    reported_at: float = 0.0  # monotonic time of its last report
    started_at: float = 0.0  # monotonic time of the last start
    ready_after_s: float | None = None  # start to ready of the last start
    _early_ends: deque[str] = field(default_factory=lambda: deque(maxlen=EARLY_ENDS_KEPT))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def load(self) -> WorkerLoad:
        fresh = time.monotonic() - self.reported_at < STALE_S
        return WorkerLoad(self.node_id, self.ready and fresh, len(self.sessions) + self.pending, self.cpu)

    def held(self, session_id: str) -> bool:
        """The front saw the worker answer this session: it is the worker's until it reports its end. False
        if it ended already."""
        if session_id in self._early_ends:
            return False
        self.sessions[session_id] = 0
        return True


# What the pool tells the front: a session ended on a worker (worker, session id, reason), a worker died with
# these sessions (worker, {session id: next seq}).
OnEnded = Callable[[Worker, str, str], None]
OnLost = Callable[[Worker, dict[str, int]], None]


class WorkerPool:
    def __init__(self, settings: IngestSettings, token: str, on_ended: OnEnded, on_lost: OnLost) -> None:
        self.settings, self._token = settings, token
        self._on_ended, self._on_lost = on_ended, on_lost
        self.workers = [Worker(node_id) for node_id in settings.worker_node_ids()]
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self.changed = asyncio.Event()  # a worker became ready, died or was restarted (tests and startup wait on it)

    def by_node(self, node_id: str) -> Worker:
        return next(w for w in self.workers if w.node_id == node_id)

    def holding(self, session_id: str) -> Worker | None:
        return next((w for w in self.workers if session_id in w.sessions), None)

    async def start(self, timeout_s: float = 60.0) -> None:
        """Start every worker and return once each is ready (or RuntimeError after ``timeout_s``)."""
        self._tasks = [asyncio.create_task(self._keep(w), name=f"worker {w.node_id}") for w in self.workers]
        try:
            await self.wait_for(lambda: all(w.ready for w in self.workers), timeout_s)
        except TimeoutError:
            raise RuntimeError(f"edge workers not ready in {timeout_s:.0f} s: "
                               f"{[w.node_id for w in self.workers if not w.ready]}") from None

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def stop(self, timeout_s: float) -> None:
        """SIGTERM every worker (each drains its sessions), kill those that take longer than ``timeout_s``."""
        self._stopping = True
        running = [w.proc for w in self.workers if w.proc is not None and w.proc.returncode is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(*(p.wait() for p in running))
        except TimeoutError:
            for proc in running:
                if proc.returncode is None:
                    log.warning("edge worker pid %d did not stop in %.0f s: killing it", proc.pid, timeout_s)
                    proc.kill()
                    await proc.wait()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- one worker's life --

    async def _keep(self, worker: Worker) -> None:
        deaths: list[float] = []
        while not self._stopping:
            code = await self._run(worker)
            if self._stopping:
                return
            lost, worker.sessions, worker.pending, worker.ready, worker.cpu = worker.sessions, {}, 0, False, 0.0
            self.changed.set()
            log.error("edge worker %s died (exit %s) with %d sessions: restarting it", worker.node_id, code,
                      len(lost), extra={"node_id": worker.node_id})
            self._on_lost(worker, lost)
            now = time.monotonic()
            deaths = [t for t in deaths if now - t < 60] + [now]
            # The first restart is at once (a crash is rare); one that keeps dying is restarted ever more slowly.
            if len(deaths) > 1:
                await asyncio.sleep(min(10.0, 0.5 * 2 ** (len(deaths) - 2)))
            worker.restarts += 1

    async def _run(self, worker: Worker) -> int | None:
        """Start the worker, follow its reports until the pipe closes, return its exit code."""
        read_fd, write_fd = os.pipe()
        env = {**os.environ, **_env_of(self.settings), "VOICEBUS_NODE_ID": worker.node_id,
               "VOICEBUS_INGEST_HOST": "127.0.0.1", "VOICEBUS_INGEST_PORT": "0", "VOICEBUS_AUTH_TOKEN": self._token,
               # the front checks tokens, origins and rates; a worker hears only the front
               "VOICEBUS_SESSION_SECRET": "", "VOICEBUS_OPERATOR_SECRET": "", "VOICEBUS_OFFERS_PER_MINUTE": "0",
               "PYTHONUNBUFFERED": "1"}
        worker.started_at, worker.ready_after_s = time.monotonic(), None
        try:
            worker.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "ingest.worker", "--report-fd", str(write_fd), env=env,
                stdin=asyncio.subprocess.DEVNULL, pass_fds=(write_fd,))
        finally:
            os.close(write_fd)
        log.info("started edge worker %s (pid %d)", worker.node_id, worker.proc.pid, extra={"node_id": worker.node_id})
        reader = asyncio.StreamReader(limit=4 * 1024 * 1024)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                    os.fdopen(read_fd, "rb", buffering=0))
        try:
            while line := await reader.readline():
                try:
                    self._report(worker, json.loads(line))
                except (ValueError, KeyError, TypeError):
                    log.warning("unreadable report from edge worker %s: %r", worker.node_id, line[:200])
        finally:
            transport.close()
        return await worker.proc.wait()

    def _report(self, worker: Worker, report: dict[str, Any]) -> None:
        worker.reported_at = time.monotonic()
        kind = report["type"]
        if kind == "load":
            worker.cpu = float(report["cpu"])
            for session_id, seq in report["sessions"].items():
                if session_id in worker.sessions:
                    worker.sessions[session_id] = int(seq)
            ready = bool(report["healthy"]) and worker.port > 0
            if ready != worker.ready:
                worker.ready = ready
                self.changed.set()
        elif kind == "ended":
            session_id = report["session_id"]
            if worker.sessions.pop(session_id, None) is None:
                worker._early_ends.append(session_id)
            self._on_ended(worker, session_id, str(report["reason"]))
        elif kind == "ready":
            worker.port, worker.ready = int(report["port"]), True
            worker.ready_after_s = time.monotonic() - worker.started_at
            log.info("edge worker %s ready in %.2f s", worker.node_id, worker.ready_after_s,
                     extra={"node_id": worker.node_id})
            self.changed.set()


def _env_of(settings: IngestSettings) -> dict[str, str]:
    """The front's settings as the environment a worker reads them from (flags given to the front included)."""
    env = {}
    for name, value in settings.model_dump(mode="json").items():
        env[f"VOICEBUS_{name.upper()}"] = value if isinstance(value, str) else json.dumps(value)
    return env
