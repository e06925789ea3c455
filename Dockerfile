# One image for every voicebus service; docker-compose picks the command.
FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends libopus0 libvpx7 libsrtp2-1 \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY voicebus voicebus
COPY runtime runtime
COPY schemas schemas
COPY ingest ingest
COPY streams streams
COPY inference inference
COPY bench bench
COPY infra infra
COPY scripts/fetch_smart_turn.sh scripts/
RUN bash scripts/fetch_smart_turn.sh python
RUN pip install --no-cache-dir -e ".[vad,aec,asr-whisper,tts-espeak,ops]" \
 && pip install --no-cache-dir --no-deps "pocketsphinx==5.1.1" "silero-vad==6.2.3"
ENV VOICEBUS_DATA_DIR=/data
ENTRYPOINT ["voicebus"]
