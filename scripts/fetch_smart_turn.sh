#!/usr/bin/env bash
# Puts the Smart Turn v3.2 end-of-turn model (BSD-2-Clause, Daily/Pipecat) where the ASR worker finds it:
# inference/engines/data/ (gitignored; package data, so a wheel built after this step carries it). The file is
# taken out of the pipecat-ai wheel, which is not installed: importing pipecat at run time pulls in loguru and
# more, and we need one file of it. Usage: fetch_smart_turn.sh PYTHON (a Python with pip). Does nothing when the
# file is there with the pinned hash.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3}

wheel_version="1.14.0"
member="pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx"
sha256="2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"  # 8,679,182 bytes
dest="inference/engines/data/smart-turn-v3.2-cpu.onnx"

if [ -f "$dest" ] && echo "$sha256  $dest" | sha256sum -c --quiet - >/dev/null 2>&1; then
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "fetching the Smart Turn model from pipecat-ai==$wheel_version"
"$python" -m pip download -q --no-deps --only-binary=:all: "pipecat-ai==$wheel_version" -d "$tmp"
"$python" - "$tmp" "$member" "$tmp/model.onnx" <<'PY'
import shutil, sys, zipfile
from pathlib import Path

wheel = next(Path(sys.argv[1]).glob("pipecat_ai-*.whl"))
with zipfile.ZipFile(wheel) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as out:
    shutil.copyfileobj(src, out)
PY
echo "$sha256  $tmp/model.onnx" | sha256sum -c --quiet - || { echo "Smart Turn model: unexpected sha256" >&2; exit 1; }
mkdir -p "$(dirname "$dest")"
mv "$tmp/model.onnx" "$dest"
