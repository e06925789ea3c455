"""Logging: a client repeating one error on every retry while the broker is away does not flood the log."""

from __future__ import annotations

import logging

import pytest

from runtime.log import setup_logging


@pytest.fixture
def fresh_logging():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    root.handlers[:], _ = saved
    root.setLevel(saved[1])


def test_a_repeated_client_error_passes_once_a_minute_with_its_count(fresh_logging, capsys) -> None:
    setup_logging("INFO")
    client = logging.getLogger("aiokafka.client")
    for _ in range(500):  # a broker away for a while: the same line on every retry
        client.error("Unable connect to node with id %s: %s", 1, "Connect call failed")
    later = client.makeRecord(client.name, logging.ERROR, __file__, 0, "Unable connect to node with id %s: %s",
                              (1, "Connect call failed"), None)
    later.created += 61  # a minute on: it passes, and says how many were held back
    client.handle(later)
    logging.getLogger("ingest.publisher").warning("kafka unreachable")
    logging.getLogger("ingest.publisher").warning("kafka unreachable")
    lines = capsys.readouterr().err.splitlines()
    repeated = [line for line in lines if "Unable connect to node with id 1" in line]
    assert len(repeated) == 2 and "(and 499 more like it in the last minute)" in repeated[1]
    assert sum("kafka unreachable" in line for line in lines) == 2  # our own lines are never held back
