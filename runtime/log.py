"""Structured logging with the standard library.

Services log with ``extra={"session_id": ..., "turn_id": ...}``; both appear on every line that has them.
"""

from __future__ import annotations

import json
import logging
import sys

_CONTEXT_KEYS = ("session_id", "turn_id", "node_id")
QUIETED = ("aiokafka", "kafka")  # clients that repeat one error on every retry while a broker is away
REPEAT_WINDOW_S = 60.0


class _Repeats(logging.Filter):
    """While a broker is away aiokafka logs the same failure on every retry (tens of lines a second per
    client): of each message of theirs, the first in a minute passes, with the count of those held back since
    the last one that did. Our own services log a broker's state once per change (ingest.publisher)."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[tuple[str, object], tuple[float, int]] = {}  # (logger, message template) -> (passed, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(QUIETED):
            return True
        key = (record.name, record.msg)
        passed, held = self._seen.get(key, (float("-inf"), 0))
        if record.created - passed < REPEAT_WINDOW_S:
            self._seen[key] = (passed, held + 1)
            return False
        self._seen[key] = (record.created, 0)
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last minute)"
        return True


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        ctx = " ".join(f"{k}={getattr(record, k)}" for k in _CONTEXT_KEYS if hasattr(record, k))
        return f"{base} {ctx}" if ctx else base


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": record.created,
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k in _CONTEXT_KEYS:
            if hasattr(record, k):
                out[k] = getattr(record, k)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str = "INFO", as_json: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Repeats())
    handler.setFormatter(
        _JsonFormatter() if as_json else _TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka and faust are chatty at INFO.
    for noisy in ("aiokafka", "kafka", "faust", "mode", "aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
