"""When the ASR worker starts a final early, and when that early final stands (inference.speculation)."""

from __future__ import annotations

import pytest

from inference.speculation import Speculation, on_frame, stands

MS = 1_000_000
FRAME = 20 * MS


def run(pattern: str, after_ms: int = 100) -> tuple[Speculation, list[int]]:
    """Feed frames ("v" voiced, "." not), one per 20 ms from media time 0; the frame ends where it prepared."""
    spec, prepared = Speculation(), []
    for i, mark in enumerate(pattern):
        end = (i + 1) * FRAME
        spec, due = on_frame(spec, end, FRAME, mark == "v", after_ms * MS)
        if due:
            prepared.append(end // MS)
    return spec, prepared


@pytest.mark.parametrize("pattern, after_ms, prepared_at_ms", [
    ("vvvvv" + "." * 12, 100, [200]),  # 100 ms after the last voiced frame (ending at 100 ms)
    ("vvvvv" + "." * 4, 100, []),  # not silent long enough
    ("." * 20, 100, []),  # no speech yet: nothing to prepare
    ("vvvvv" + "." * 5 + "vv" + "." * 5, 100, [200, 340]),  # the person went on: prepared again
    ("vvvvv" + "." * 3 + "vv" + "." * 3, 100, []),  # short gaps inside speech prepare nothing
    ("vvvvv" + "." * 30, 100, [200]),  # once per pause, however long it lasts
    ("vvvvv" + "." * 12, 0, []),  # off
    ("vvvvv" + "." * 12, 60, [160]),
])
def test_a_final_is_prepared_at_each_pause_after_speech(pattern, after_ms, prepared_at_ms):
    assert run(pattern, after_ms)[1] == prepared_at_ms


@pytest.mark.parametrize("pattern, speech_end_ms, expected", [
    ("vvvvv" + "." * 12, 80, True),  # the VAD's speech end is the last voiced frame (80-100 ms): heard
    ("vvvvv" + "." * 12, 140, True),  # the VAD's hysteresis ran its speech end on into frames prepared with it
    ("vvvvv" + "." * 12, 200, False),  # speech up to the preparation's end: it may have been cut
    ("vvvvv" + "." * 5 + "vv" + "." * 3, 120, False),  # went on after the preparation, not prepared again yet
    ("vvvvv" + "." * 5 + "vv" + "." * 5, 130, True),  # prepared again after the second burst
    ("vvvvv" + "." * 3, 80, False),  # never prepared
    ("", 0, False),
])
def test_a_prepared_final_stands_only_if_it_heard_all_the_speech(pattern, speech_end_ms, expected):
    assert stands(run(pattern)[0], speech_end_ms * MS) is expected
