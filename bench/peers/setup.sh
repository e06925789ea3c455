#!/usr/bin/env bash
# The Pipecat peer of `python -m bench.peers`, in a virtualenv of its own so the project's pins never move.
#   bash bench/peers/setup.sh            # prints the venv's python on its last line
# VOICEBUS_PIPECAT_VENV overrides where it goes (default: ~/.cache/voicebus/pipecat-1.14-venv).
set -euo pipefail
VENV="${VOICEBUS_PIPECAT_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/voicebus/pipecat-1.14-venv}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  "$PYTHON" -m venv "$VENV"
fi
if ! "$VENV/bin/python" -c "import pipecat, aiortc, onnxruntime" 2>/dev/null; then
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet "pipecat-ai[webrtc,silero]==1.14.0" aiohttp
fi
echo "$VENV/bin/python"
