"""The engine interfaces the workers see: streaming ASR, end of turn, LLM, TTS.

Each vendor implements one of these ABCs in its own module; a worker picks one from its settings
(``inference.engine_choice``) and never knows which it got. Audio is PCM16 mono, little-endian, bytes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Literal


class EngineError(Exception):
    """An engine failed. ``retryable``: the same request may succeed later (a 503, a timeout, a reset)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class AsrCapabilities:
    streaming: bool  # partial text while audio is still arriving (else only a final result)
    # ``prepare`` starts the final early (worth it when a final takes long); ``partial`` then gives the text of
    # the last preparation once it is ready: the words up to a pause.
    speculative: bool = False


class AsrStream(ABC):
    """One utterance. ``push`` audio as it arrives, ``finish`` once speech ended, ``aclose`` always."""

    @abstractmethod
    async def push(self, pcm: bytes) -> None:
        """Add PCM16 mono audio at the stream's sample rate."""

    @abstractmethod
    async def partial(self) -> str:
        """The best text so far ("" when there is none yet, or the engine does not stream)."""

    @abstractmethod
    async def finish(self) -> str:
        """The final text of everything pushed. The stream takes no more audio afterwards."""

    async def prepare(self) -> None:
        """Start working out the text of the audio pushed so far, in the background (at a pause, before the
        utterance is known to be over). A later ``prepare`` replaces it. Engines without
        ``capabilities.speculative`` ignore it."""

    async def finish_prepared(self) -> str:
        """Like ``finish``, but the text is the last ``prepare``'s: the caller knows that what was pushed after
        it is no speech. Without a preparation, the same as ``finish``."""
        return await self.finish()

    @abstractmethod
    async def aclose(self) -> None:
        """Release the stream's resources. Idempotent; call it after ``finish`` too."""


class AsrEngine(ABC):
    name: str
    capabilities: AsrCapabilities

    @abstractmethod
    async def stream(self, sample_rate: int = 16000) -> AsrStream:
        """A new utterance stream for audio at ``sample_rate``."""

    async def warm(self) -> None:
        """Load what the first request would otherwise wait for."""

    async def aclose(self) -> None:
        """Release the engine's resources."""


class TurnEndEngine(ABC):
    """P(complete): how likely the person has finished their turn, from the sound of it up to a pause."""

    name: str

    @abstractmethod
    async def score(self, pcm: bytes) -> float:
        """P(complete) in [0, 1] for the turn's audio, PCM16 mono 16 kHz, ending at the pause (a little
        silence after the last word included). The engine uses as much of the end of it as its model takes.
        Calls from many sessions may run at once (an engine may batch them)."""

    async def warm(self) -> None:
        """Load what the first request would otherwise wait for."""

    async def aclose(self) -> None:
        """Release the engine's resources."""


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


class LlmEngine(ABC):
    name: str

    @abstractmethod
    def stream(self, messages: Sequence[Message]) -> AsyncGenerator[str, None]:
        """The reply to the conversation, as text pieces in order (closing the iterator stops the work)."""

    async def warm(self) -> None:
        """Load what the first request would otherwise wait for."""

    async def aclose(self) -> None:
        """Release the engine's resources."""


class TtsEngine(ABC):
    name: str
    sample_rate: int  # of the audio ``stream`` yields

    @abstractmethod
    def stream(self, text: str) -> AsyncGenerator[bytes, None]:
        """``text`` spoken, as PCM16 mono pieces at ``sample_rate`` (closing the iterator stops the work)."""

    async def warm(self) -> None:
        """Load what the first request would otherwise wait for."""

    async def aclose(self) -> None:
        """Release the engine's resources."""
