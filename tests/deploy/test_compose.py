"""docker-compose cannot run here: check statically what can be checked against the code."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from voicebus.cli import BUILTIN, SERVICES
from voicebus.config_doc import env_vars

REPO = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((REPO / "infra" / "docker-compose.yml").read_text())
CLUSTER_OVERRIDE = yaml.safe_load((REPO / "infra" / "docker-compose.cluster.yml").read_text())
OURS = {name: svc for name, svc in COMPOSE["services"].items() if svc.get("image") == "voicebus:dev"}
KNOWN_VARS = {var for var, *_ in env_vars()}


def merged(base: dict, override: dict) -> dict:
    """What `docker compose -f base -f override` runs: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


CLUSTER = merged(COMPOSE, CLUSTER_OVERRIDE)


def test_every_voicebus_service_runs_a_real_subcommand():
    assert {"ingest", "streams", "asr", "responder", "telemetry", "topics"} <= set(OURS)
    for name, svc in OURS.items():
        command = svc["command"]
        assert command[0] in {**BUILTIN, **SERVICES}, f"{name}: voicebus has no command {command[0]!r}"
        if command[0] in SERVICES:  # its --help runs: the command's module imports and parses arguments
            with pytest.raises(SystemExit) as done:
                SERVICES[command[0]][0](["--help"])
            assert done.value.code == 0, f"{name}: voicebus {command[0]} --help failed"


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_environment_variable_is_read_by_a_settings_object(name):
    for var in OURS[name]["environment"]:
        if var.startswith("VOICEBUS_"):
            assert var in KNOWN_VARS, f"{name} sets {var}, which no settings object reads"


def test_published_ports_match_the_port_settings():
    for name, svc in OURS.items():
        env = svc["environment"]
        for mapping in svc.get("ports", []):
            container_port = str(mapping).split(":")[-1]
            port_vars = [v for k, v in env.items() if k.endswith("_PORT")]
            assert container_port in port_vars, f"{name} publishes {container_port} but listens on {port_vars}"


@pytest.mark.parametrize(("layout", "brokers"), [(COMPOSE, 1), (CLUSTER, 3)], ids=["one-broker", "cluster"])
def test_kafka_and_clickhouse_addresses_point_at_compose_services(layout, brokers):
    ours = {name: svc for name, svc in layout["services"].items() if name in OURS}
    for name, svc in ours.items():
        env = svc["environment"]
        servers = env["VOICEBUS_KAFKA_BOOTSTRAP"].split(",")
        assert len(servers) == brokers, name
        for server in servers:
            host, port = server.split(":")
            advertised = layout["services"][host]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
            assert f"//{host}:{port}" in advertised, name
        dsn = urlparse(env["VOICEBUS_CLICKHOUSE_DSN"])
        ch = COMPOSE["services"][dsn.hostname]
        assert f"{dsn.port}:{dsn.port}" in ch["ports"]
        assert (dsn.username, dsn.password) == (ch["environment"]["CLICKHOUSE_USER"],
                                                ch["environment"]["CLICKHOUSE_PASSWORD"])


def test_dockerfile_copies_every_package():
    dockerfile = (REPO / "Dockerfile").read_text()
    packages = re.findall(r'"(\w+)\*"', (REPO / "pyproject.toml").read_text())
    for package in packages:
        assert f"COPY {package} {package}" in dockerfile, package


def test_the_cluster_layout_is_three_kraft_nodes_of_one_cluster():
    nodes = {name: svc for name, svc in CLUSTER["services"].items() if svc.get("image", "").startswith("apache/kafka")}
    assert len(nodes) == 3
    envs = [svc["environment"] for svc in nodes.values()]
    assert sorted(int(e["KAFKA_NODE_ID"]) for e in envs) == [1, 2, 3]
    assert len({e["CLUSTER_ID"] for e in envs}) == 1  # formatted as one cluster
    voters = {e["KAFKA_CONTROLLER_QUORUM_VOTERS"] for e in envs}
    assert len(voters) == 1
    # Every node is a voter, reached at its service name on its controller listener.
    listed = dict(v.split("@") for v in voters.pop().split(","))
    for name, svc in nodes.items():
        env = svc["environment"]
        controller_port = next(x for x in env["KAFKA_LISTENERS"].split(",") if x.startswith("CONTROLLER:"))
        assert listed[str(env["KAFKA_NODE_ID"])] == f"{name}:{controller_port.rsplit(':', 1)[1]}"
        assert env["KAFKA_ADVERTISED_LISTENERS"] == f"PLAINTEXT://{name}:9092"
        assert "healthcheck" in svc and "volumes" in svc, name
        # Three copies, two in sync, for the broker's own topics too (consumer offsets, transactions).
        assert (int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]), int(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]),
                int(env["KAFKA_MIN_INSYNC_REPLICAS"])) == (3, 2, 2)
    for volume in (v.split(":")[0] for svc in nodes.values() for v in svc["volumes"]):
        assert volume in CLUSTER["volumes"]
    # Topics are made once every broker is up, so they get three replicas.
    assert {k for k, v in CLUSTER["services"]["topics"]["depends_on"].items()
            if v["condition"] == "service_healthy"} == set(nodes)


def test_the_one_broker_layout_stays_the_default():
    assert "kafka-2" not in COMPOSE["services"]
    assert COMPOSE["services"]["kafka"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
