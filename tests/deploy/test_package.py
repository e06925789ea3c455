"""The installed package, outside the checkout, has what it reads at run time (DDL, the page)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    leftover = not (ROOT / "build").exists()  # setuptools builds in the source tree: leave it as it was
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(ROOT)], check=True, timeout=300)
    if leftover:
        shutil.rmtree(ROOT / "build", ignore_errors=True)
    return next(out.glob("voicebus-*.whl"))


def test_the_wheel_carries_the_ddl_and_the_page(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    ddl = sorted(n for n in names if n.startswith("streams/telemetry/ddl/") and n.endswith(".sql"))
    assert ddl == sorted(f"streams/telemetry/ddl/{p.name}" for p in (ROOT / "streams/telemetry/ddl").glob("*.sql"))
    assert "ingest/static/index.html" in names
    assert {"runtime/broker_files/pom.xml", "runtime/broker_files/server.properties"} <= set(names)


def test_installed_outside_the_checkout_it_creates_the_tables(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, timeout=300)
    script = (
        "import streams.telemetry.schema as s, sys\n"
        f"assert s.__file__.startswith({str(target)!r}), s.__file__\n"
        "from runtime.clickhouse import connect\n"
        f"client = connect('chdb://{tmp_path / 'ch'}')\n"
        "print(s.apply_schema(client))\n"
        "print(sorted(r[0] for r in client.query('SHOW TABLES').result_rows))\n"
    )
    done = subprocess.run([sys.executable, "-P", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert done.returncode == 0, done.stderr
    count, tables = done.stdout.splitlines()[-2:]
    assert int(count) > 0
    assert {"stage_events", "turns", "sessions"} <= set(eval(tables))  # noqa: S307 -- our own printed list
