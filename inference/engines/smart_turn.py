"""Smart Turn v3.2 (Daily/Pipecat, BSD-2-Clause): P(the person finished their turn) from the turn's audio.

The ONNX file is not in the repository: ``scripts/fetch_smart_turn.sh`` (run by ``install.sh``) takes it out of
the ``pipecat-ai`` wheel into ``inference/engines/data/`` and checks its hash. Pipecat is never imported.
"""

from __future__ import annotations

from pathlib import Path

MODEL_FILE = "smart-turn-v3.2-cpu.onnx"
# Pinned in scripts/fetch_smart_turn.sh too: the file inside pipecat-ai==1.14.0.
MODEL_SHA256 = "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"


def model_path() -> Path:
    """Where the install step put the model (package data: found in a checkout and in an installed wheel)."""
    return Path(__file__).resolve().parent / "data" / MODEL_FILE
