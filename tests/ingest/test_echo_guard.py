from __future__ import annotations

import numpy as np

from ingest.echo_guard import EchoGuard
from tests.ingest.conftest import SPEECH, load_speech


def feed(guard: EchoGuard, far: np.ndarray, near: np.ndarray) -> None:
    for i in range(len(far) // 320):
        guard.far(far[i * 320:(i + 1) * 320])
        guard.near(near[i * 320:(i + 1) * 320], near[i * 320:(i + 1) * 320])


def test_delayed_attenuated_reply_is_echo_and_another_voice_is_not() -> None:
    jfk = load_speech(SPEECH / "misc" / "jfk.wav")[:16000 * 3]
    person = load_speech(next((SPEECH / "librivox").glob("*0880.wav")))[16000:16000 * 4]
    echo_guard, person_guard = EchoGuard(), EchoGuard()
    feed(echo_guard, jfk, np.concatenate([np.zeros(3200, np.int16), (jfk * 0.3).astype(np.int16)])[:len(jfk)])
    feed(person_guard, jfk, person[:len(jfk)])
    assert min(echo_guard.similarity()) > 0.9
    assert max(person_guard.similarity()) < 0.5


def test_silence_in_what_was_played_is_not_taken_for_an_echo_of_the_person() -> None:
    """The track plays exact digital silence between replies: a person speaking at the start of a reply must
    not match it (rounding noise over zero energy once gave similarities in the thousands)."""
    reply = load_speech(SPEECH / "misc" / "jfk.wav")[:16000 * 2]
    person = load_speech(next((SPEECH / "librivox").glob("*0880.wav")))[16000:16000 * 3]
    far = np.concatenate([np.zeros(16000, np.int16), reply[:16000]])  # 1 s of silence, then the reply starts
    guard = EchoGuard()
    feed(guard, far, np.concatenate([np.zeros(16000, np.int16), person[:16000]]))
    assert max(guard.similarity()) < 0.5


def test_residual_and_raw_microphone_are_matched_each_on_its_own() -> None:
    """AEC3 removed the echo (the residual is the person) while the raw microphone is mostly the reply."""
    jfk = load_speech(SPEECH / "misc" / "jfk.wav")[:16000 * 3]
    person = load_speech(next((SPEECH / "librivox").glob("*0880.wav")))[16000:16000 * 4]
    echo = np.concatenate([np.zeros(1600, np.int16), jfk])[:len(jfk)]
    guard = EchoGuard()
    for i in range(len(jfk) // 320):
        frame = slice(i * 320, (i + 1) * 320)
        guard.far(jfk[frame])
        guard.near(person[frame], echo[frame])
    residual, raw = guard.similarity()
    assert residual < 0.5 < 0.9 < raw
