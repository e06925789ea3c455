"""ClickHouse through clickhouse-connect on the embedded chDB engine."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.clickhouse import connect

pytestmark = pytest.mark.integration


def test_mergetree_insert_and_query_on_chdb(chdb_dsn):
    client = connect(chdb_dsn)
    client.command("CREATE TABLE t (turn String, latency_ms Float64) ENGINE = MergeTree ORDER BY turn")
    values = np.random.default_rng(7).gamma(2.0, 40.0, 1000)
    client.insert("t", [[f"turn-{i}", float(v)] for i, v in enumerate(values)], column_names=["turn", "latency_ms"])
    count, median = client.query("SELECT count(), quantileExact(0.5)(latency_ms) FROM t").result_rows[0]
    assert count == 1000
    # quantileExact picks an element: index floor(0.5 * n) of the sorted values.
    assert median == pytest.approx(np.sort(values)[500])
