"""The Smart Turn model the install step extracted is the pinned file (scripts/fetch_smart_turn.sh)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from inference.engines.smart_turn import MODEL_SHA256, model_path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fetch_smart_turn.sh"


def test_the_installed_model_has_the_pinned_hash() -> None:
    path = model_path()
    # Not skipped when missing: .ci/run runs scripts/install.sh first, and the ASR worker needs the file.
    assert path.is_file(), f"{path} is missing: run scripts/install.sh (or scripts/fetch_smart_turn.sh PYTHON)"
    assert path.stat().st_size == 8_679_182
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MODEL_SHA256


def test_the_install_step_pins_the_same_hash() -> None:
    assert re.search(r'^sha256="([0-9a-f]{64})"', SCRIPT.read_text(), re.M).group(1) == MODEL_SHA256
