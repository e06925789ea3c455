"""Embedded TTS: espeak-ng from the ``espeakng-loader`` wheel (library and voice data inside), through ctypes.

espeak-ng is GPL-3.0, so it is the optional extra ``tts-espeak``. It is robotic but about 1000x faster than
real time, with the first audio under a millisecond. It always speaks at 22.05 kHz; the responder resamples.
The library is one global synthesizer per process: synthesis is serialised by a lock and runs in a thread.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from inference.engines.base import EngineError, TtsEngine
from runtime.optional import optional_import

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000
POS_CHARACTER = 1
CHARS_UTF8 = 1
PARAM_RATE = 1
BUFFER_MS = 60  # audio per callback: the granularity of streaming and of cancellation

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_lib_lock = threading.Lock()
_lib: tuple[Any, int] | None = None  # (library, sample rate), initialised once per process


def _library() -> tuple[Any, int]:
    global _lib
    with _lib_lock:
        if _lib is None:
            loader = optional_import("espeakng_loader", "tts-espeak")
            lib = ctypes.CDLL(loader.get_library_path())
            data = Path(loader.get_data_path())
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                         ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
            rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, BUFFER_MS, str(data.parent).encode(),
                                         INITIALIZE_DONT_EXIT)
            if rate <= 0:
                raise EngineError(f"espeak-ng failed to initialise with data at {data}")
            _lib = (lib, rate)
        return _lib


class EspeakTts(TtsEngine):
    name = "espeak-ng"

    def __init__(self, voice: str = "en-us", rate_wpm: int = 175) -> None:
        self._lib, self.sample_rate = _library()
        self._voice, self._rate_wpm = voice, rate_wpm

    async def warm(self) -> None:
        async for _ in self.stream("ready"):  # the first synthesis loads the voice (~60 ms)
            pass

    def _synthesize(self, text: str, put: Any, cancelled: threading.Event) -> None:
        """Runs in a thread: calls ``put(pcm)`` for each piece, stops early once ``cancelled`` is set."""

        def on_audio(wav: Any, samples: int, _events: Any) -> int:
            if cancelled.is_set():
                return 1  # abort synthesis
            if samples > 0:
                put(ctypes.string_at(wav, samples * 2))
            return 0

        callback = _CALLBACK(on_audio)
        with _lib_lock:
            self._lib.espeak_SetSynthCallback(callback)
            if self._lib.espeak_SetVoiceByName(self._voice.encode()) != 0:
                raise EngineError(f"espeak-ng has no voice {self._voice!r}")
            self._lib.espeak_SetParameter(PARAM_RATE, self._rate_wpm, 0)
            data = text.encode()
            code = self._lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
            if code != 0 and not cancelled.is_set():
                raise EngineError(f"espeak_Synth failed with error {code}")

    async def stream(self, text: str) -> AsyncGenerator[bytes, None]:
        if not text.strip():
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue()
        cancelled = threading.Event()

        def put(item: bytes | BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def run() -> None:
            try:
                self._synthesize(text, put, cancelled)
                put(None)
            except BaseException as exc:  # noqa: BLE001 -- handed to the consumer, raised there
                put(exc)

        thread = threading.Thread(target=run, name="espeak", daemon=True)
        thread.start()
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            cancelled.set()  # the thread stops at its next callback (at most BUFFER_MS of audio later)
