"""Whisper log-mel features for Smart Turn v3, in numpy: ``[80, 800]`` from the last 8 s of 16 kHz audio.

The steps and constants are those of Pipecat's ``pipecat/audio/turn/smart_turn/_whisper_features.py``
(pipecat-ai 1.14.0), itself derived from Hugging Face Transformers' ``WhisperFeatureExtractor``; the model was
trained on exactly these features, so they must not drift (``tests/inference/test_whisper_features.py`` compares
them with numbers computed once by Pipecat's own code).

Copyright (c) 2024-2026, Daily. BSD 2-Clause License:
  Redistribution and use in source and binary forms, with or without modification, are permitted provided that
  the following conditions are met: 1. Redistributions of source code must retain the above copyright notice,
  this list of conditions and the following disclaimer. 2. Redistributions in binary form must reproduce the
  above copyright notice, this list of conditions and the following disclaimer in the documentation and/or
  other materials provided with the distribution.
  THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS AND CONTRIBUTORS "AS IS" AND ANY EXPRESS OR IMPLIED
  WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A
  PARTICULAR PURPOSE ARE DISCLAIMED. IN NO EVENT SHALL THE COPYRIGHT HOLDER OR CONTRIBUTORS BE LIABLE FOR ANY
  DIRECT, INDIRECT, INCIDENTAL, SPECIAL, EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO,
  PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR PROFITS; OR BUSINESS INTERRUPTION) HOWEVER
  CAUSED AND ON ANY THEORY OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT (INCLUDING NEGLIGENCE OR
  OTHERWISE) ARISING IN ANY WAY OUT OF THE USE OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH
  DAMAGE.
Portions derived from Hugging Face Transformers (feature_extraction_whisper.py, audio_utils.py), Copyright 2022
The HuggingFace Inc. team, Copyright 2023 The HuggingFace Inc. team and the librosa & torchaudio authors,
licensed under the Apache License, Version 2.0 (https://www.apache.org/licenses/LICENSE-2.0); modified.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

RATE = 16000
WINDOW_SAMPLES = 8 * RATE  # the model sees the last 8 s of the turn
N_FFT = 400
HOP = 160
N_MELS = 80
FRAMES = WINDOW_SAMPLES // HOP  # 800


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney scale: linear below 1 kHz, logarithmic above."""
    mel = 3.0 * hz / 200.0
    log = hz >= 1000.0
    mel[log] = 15.0 + np.log(hz[log] / 1000.0) * (27.0 / np.log(6.4))
    return mel


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    hz = 200.0 * mel / 3.0
    log = mel >= 15.0
    hz[log] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mel[log] - 15.0))
    return hz


def _mel_filters() -> np.ndarray:
    """Triangular Slaney-normalised filters, ``[N_FFT // 2 + 1, N_MELS]``, 0 Hz to Nyquist."""
    edges = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([RATE / 2.0]))[0],
                                   N_MELS + 2))
    bins = np.linspace(0, RATE // 2, N_FFT // 2 + 1)
    slopes = edges[None, :] - bins[:, None]
    widths = np.diff(edges)
    down, up = -slopes[:, :-2] / widths[:-1], slopes[:, 2:] / widths[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    return filters * (2.0 / (edges[2:] - edges[:-2]))[None, :]  # equal area per filter


_WINDOW = np.hanning(N_FFT + 1)[:-1]  # periodic Hann, as torch.hann_window
_FILTERS_T = _mel_filters().T


def last_window(audio: np.ndarray) -> np.ndarray:
    """The last 8 s of 16 kHz audio (int16 PCM or float in [-1, 1]) as float32, left-padded with zeros: the
    model learnt the turn's end at the right edge."""
    x = audio.astype(np.float32) / 32768.0 if audio.dtype == np.int16 else audio.astype(np.float32)
    x = x[-WINDOW_SAMPLES:]
    return np.pad(x, (WINDOW_SAMPLES - x.size, 0)) if x.size < WINDOW_SAMPLES else x


def log_mel(audio: np.ndarray) -> np.ndarray:
    """Features ``[80, 800]`` float32 of the last 8 s of ``audio`` (see ``last_window``)."""
    x = last_window(audio)
    # Zero mean, unit variance over the whole window (padding included), in float32 as the reference does.
    x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
    padded = np.pad(x.astype(np.float64), N_FFT // 2, mode="reflect")  # centred frames
    frames = sliding_window_view(padded, N_FFT)[::HOP]  # [801, 400]
    power = np.abs(np.fft.rfft(frames * _WINDOW, axis=-1)) ** 2
    mel = np.log10(np.maximum(1e-10, _FILTERS_T @ power.T))[:, :-1]  # the reference drops the last frame
    mel = np.maximum(mel, mel.max() - 8.0)  # an 80 dB range below the loudest bin
    return ((mel + 4.0) / 4.0).astype(np.float32)


def whisper_log_mel(audio: np.ndarray, frames: int) -> np.ndarray:
    """Whisper's own input, ``[80, frames]`` float32: ``audio`` (16 kHz float in [-1, 1]) zero-padded at the end
    to ``frames`` hops and cut there, as OpenAI's ``log_mel_spectrogram`` of the audio with its padding: the
    silence counts towards the loudest-bin clamp, and no normalisation (that is Smart Turn's variant)."""
    x = np.zeros(frames * HOP, np.float64)
    n = min(audio.size, x.size)
    x[:n] = audio[:n]
    padded = np.pad(x, N_FFT // 2, mode="reflect")
    power = np.abs(np.fft.rfft(sliding_window_view(padded, N_FFT)[::HOP] * _WINDOW, axis=-1)) ** 2
    mel = np.log10(np.maximum(1e-10, _FILTERS_T @ power.T))[:, :frames]
    mel = np.maximum(mel, mel.max() - 8.0)
    return ((mel + 4.0) / 4.0).astype(np.float32)
