"""The README stays true: its configuration table is the settings objects' own, its test command is CI's."""

from __future__ import annotations

from pathlib import Path

from voicebus.config_doc import markdown

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_configuration_table_matches_the_settings_objects():
    table = README.split("<!-- config:start -->\n")[1].split("<!-- config:end -->")[0].strip()
    assert table == markdown().strip(), "regenerate it: python -m voicebus.config_doc"


def test_ci_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert "bash scripts/install.sh --test && .venv/bin/python -m pytest" in README
    assert "scripts/install.sh --test" in ci and ".venv/bin/python -m pytest" in ci
    assert "bash scripts/install.sh && .venv/bin/voicebus up" in README
