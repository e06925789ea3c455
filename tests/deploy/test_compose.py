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
OURS = {name: svc for name, svc in COMPOSE["services"].items() if svc.get("image") == "voicebus:dev"}
KNOWN_VARS = {var for var, *_ in env_vars()}


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


def test_kafka_and_clickhouse_addresses_point_at_compose_services():
    for name, svc in OURS.items():
        env = svc["environment"]
        host, port = env["VOICEBUS_KAFKA_BOOTSTRAP"].split(":")
        advertised = COMPOSE["services"][host]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
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
