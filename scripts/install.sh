#!/usr/bin/env bash
# Installs voicebus on a fresh Debian machine: system packages that are missing, a virtual environment in .venv
# with the project and its embedded engines, and the Kafka broker jars. With --test, also what the tests need
# (a headless browser, kcat, the test extras). Safe to run again: it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

need=()
command -v java >/dev/null || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || need+=(maven)
if [ "$want_test" = 1 ]; then
  command -v kcat >/dev/null || need+=(kcat)
  [ -x /usr/lib/chromium/chromium ] || command -v chromium >/dev/null || need+=(chromium)
  command -v turnserver >/dev/null || need+=(coturn)  # a real TURN server checks the credentials the edge hands out
fi
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing system packages: ${need[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
extras="vad,aec,tts-espeak,ops,asr-whisper"
[ "$want_test" = 1 ] && extras="$extras,test"
.venv/bin/pip install -q -e ".[$extras]"
# pocketsphinx's one dependency (sounddevice) is for microphones only and needs PortAudio: leave it out.
.venv/bin/pip install -q --no-deps "pocketsphinx==5.1.1"
# silero-vad ships the ONNX model we run on onnxruntime; its torch dependency is not needed.
.venv/bin/pip install -q --no-deps "silero-vad==6.2.3"
# The Smart Turn end-of-turn model, out of the pipecat-ai wheel (pipecat itself is not installed).
bash scripts/fetch_smart_turn.sh .venv/bin/python
.venv/bin/voicebus kafka fetch
