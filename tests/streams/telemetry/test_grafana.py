"""Grafana provisioning, checked statically against the compose stack, and every panel's SQL run on chDB."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
import yaml

from runtime.clickhouse import connect
from streams.telemetry.backend import Direct
from streams.telemetry.queries import WATERFALL
from streams.telemetry.report import gather
from tests.conftest import REPO
from tests.streams.telemetry.synthetic import make_turns, seed

GRAFANA = REPO / "infra" / "grafana"
DATASOURCES = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "clickhouse.yaml").read_text())
PROVIDERS = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "voicebus.yaml").read_text())
DASHBOARD = json.loads((GRAFANA / "dashboards" / "voicebus-latency.json").read_text())
COMPOSE = yaml.safe_load((REPO / "infra" / "docker-compose.yml").read_text())
TARGETS = [(panel, target) for panel in DASHBOARD["panels"] for target in panel["targets"]]


def test_the_data_source_is_the_compose_clickhouse():
    [source] = DATASOURCES["datasources"]
    assert source["type"] == "grafana-clickhouse-datasource"
    data, secret = source["jsonData"], source["secureJsonData"]
    clickhouse = COMPOSE["services"][data["host"]]
    env = clickhouse["environment"]
    assert data["protocol"] == "http" and f"{data['port']}:{data['port']}" in clickhouse["ports"]
    assert (data["username"], secret["password"], data["defaultDatabase"]) == (
        env["CLICKHOUSE_USER"],
        env["CLICKHOUSE_PASSWORD"],
        env["CLICKHOUSE_DB"],
    )


def test_every_panel_uses_the_provisioned_data_source_and_has_sql():
    uid = DATASOURCES["datasources"][0]["uid"]
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)) and DASHBOARD["uid"]
    for panel, target in TARGETS:
        assert panel["datasource"]["uid"] == uid and target["datasource"]["uid"] == uid, panel["title"]
        assert target["editorType"] == "sql" and target["rawSql"].strip(), panel["title"]
        assert target["queryType"] == ("timeseries" if panel["type"] == "timeseries" else "table"), panel[
            "title"
        ]


def test_panels_do_not_overlap():
    cells: set[tuple[int, int]] = set()
    for panel in DASHBOARD["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24, panel["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & mine, panel["title"]
        cells |= mine


def test_compose_mounts_the_provisioning_where_grafana_reads_it():
    grafana = COMPOSE["services"].get("grafana")
    if grafana is None:
        pytest.skip("infra/docker-compose.yml has no grafana service yet")
    mounts = {
        src.removeprefix("./"): dst.removesuffix(":ro")
        for src, dst in (v.split(":", 1) for v in grafana["volumes"])
    }
    assert mounts["grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["grafana/dashboards"] == PROVIDERS["providers"][0]["options"]["path"]
    assert "grafana-clickhouse-datasource" in str(grafana.get("environment", {}))


def grafana_macros(sql: str) -> str:
    """What the ClickHouse plugin makes of its macros, for a 6 h range and 1 min interval."""
    sql = re.sub(r"\$__timeFilter\((\w+)\)", r"(\1 >= now() - INTERVAL 6 HOUR AND \1 <= now())", sql)
    return re.sub(r"\$__timeInterval\((\w+)\)", r"toStartOfInterval(\1, INTERVAL 60 SECOND)", sql)


@pytest.mark.integration
async def test_every_panel_query_runs_on_the_schema_and_finds_the_turns(chdb_dsn):
    now = time.time_ns()
    turns = make_turns(120, now, np.random.default_rng(3), age_s=(60, 3000))
    await seed(chdb_dsn, turns)
    client = connect(chdb_dsn)
    client.command("SYSTEM REFRESH VIEW latency_by_minute_refresh")
    client.command("SYSTEM WAIT VIEW latency_by_minute_refresh")
    for panel, target in TARGETS:
        if "sessions" in target["rawSql"]:
            continue  # the seeded data has no session events
        rows = client.query(grafana_macros(target["rawSql"])).result_rows
        assert rows, panel["title"]
    # The per-minute states merge to the percentile of all turns (exact below the reservoir's 8192 values).
    v2v = [t.latencies()["voice_to_voice_ms"] for t in turns]
    merged = client.query(
        "SELECT quantilesMerge(0.5, 0.95, 0.99)(voice_to_voice) FROM latency_by_minute FINAL"
    )
    assert merged.result_rows[0][0] == pytest.approx(
        np.percentile([v for v in v2v if v is not None], [50, 95, 99])
    )


@pytest.mark.integration
async def test_the_waterfall_panel_draws_what_ops_report_draws(chdb_dsn):
    await seed(chdb_dsn, make_turns(80, time.time_ns(), np.random.default_rng(4), age_s=(60, 3000)))
    [(panel, target)] = [(p, t) for p, t in TARGETS if p["type"] == "barchart"]
    result = connect(chdb_dsn).query(grafana_macros(target["rawSql"]))
    drawn = [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]
    report = gather(Direct(chdb_dsn), 6 * 3600, slowest=10)
    assert [d["turn"] for d in drawn] == [f"{t['turn_id'][-16:]} ({round(t['voice_to_voice_ms'])} ms)"
                                          for t in report.slowest]
    for bar, turn in zip(drawn, report.slowest, strict=True):
        assert [bar[s] for s in WATERFALL] == pytest.approx([turn[s] for s in WATERFALL]), bar["turn"]
    assert panel["options"]["xField"] == "turn" and panel["fieldConfig"]["defaults"]["unit"] == "ms"
