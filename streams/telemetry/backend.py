"""Where `voicebus ops` runs its queries: the running sink's endpoint (it holds the chDB directory), or
ClickHouse
opened directly (nothing runs, or a ClickHouse server that takes any number of clients)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Protocol

from runtime.clickhouse import connect
from streams.telemetry import queries
from streams.telemetry.schema import apply_schema
from streams.telemetry.settings import TelemetrySettings


class Backend(Protocol):
    def run(self, name: str, params: Mapping[str, Any]) -> queries.Result: ...


class OpsError(RuntimeError):
    """A query could not be answered; the message says why."""


class Direct:
    def __init__(self, dsn: str) -> None:
        try:
            self.client = connect(dsn)
            if dsn.startswith("chdb://"):
                apply_schema(self.client)  # a fresh directory answers with empty results, not errors
        except Exception as exc:
            raise OpsError(f"cannot open ClickHouse at {dsn}: {exc}") from exc

    def run(self, name: str, params: Mapping[str, Any]) -> queries.Result:
        try:
            return queries.execute(self.client, name, params)
        except queries.QueryError:
            raise
        except Exception as exc:
            raise OpsError(f"query {name} failed: {exc}") from exc


class ThroughSink:
    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self.url = url
        self.timeout = timeout

    def run(self, name: str, params: Mapping[str, Any]) -> queries.Result:
        body = json.dumps({"name": name, "params": dict(params)}).encode()
        request = urllib.request.Request(f"{self.url}/query", body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                data = json.load(response)
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise OpsError(f"the sink at {self.url} answered {exc.code}: {detail}") from None
        except OSError as exc:
            raise OpsError(f"the sink at {self.url} did not answer: {exc}") from exc
        return queries.Result(data["columns"], data["rows"])


def sink_url(settings: TelemetrySettings) -> str | None:
    """The query endpoint of a sink running on this DSN, if one answers."""
    if not settings.telemetry_query_port:
        return None
    url = f"http://{settings.telemetry_query_host}:{settings.telemetry_query_port}"
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1.0) as response:
            health = json.load(response)
    except (OSError, ValueError):
        return None
    return url if health.get("dsn") == settings.dsn() else None


def open_backend(settings: TelemetrySettings) -> Backend:
    dsn = settings.dsn()
    if dsn.startswith("chdb://"):
        url = sink_url(settings)
        if url is not None:
            return ThroughSink(url)
    return Direct(dsn)
