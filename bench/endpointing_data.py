"""Speech timings for the endpointing benchmark: real recordings' labels and synthetic conversations.

A track is one speaker's turns; a turn is its utterances (start ms, end ms, text) as the edge's VAD would cut
them: pauses shorter than the VAD's hangover never reach the turn processor, so they are merged here.
"""

from __future__ import annotations

import json
import random
import re
from collections import defaultdict
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

VAD_MERGE_MS = 260  # the edge's 240 ms hangover, plus a frame
MIN_UTTERANCE_MS = 60  # the edge's own minimum speech


@dataclass(frozen=True)
class Utterance:
    start_ms: int
    end_ms: int
    text: str
    p_complete: float | None = None  # the end-of-turn model's score of the pause after it (endpointing_audio)


Turn = list[Utterance]
Track = list[Turn]


def merge(utterances: list[Utterance]) -> list[Utterance]:
    out: list[Utterance] = []
    for u in sorted(utterances, key=lambda u: u.start_ms):
        if out and u.start_ms - out[-1].end_ms < VAD_MERGE_MS:
            last = out[-1]
            out[-1] = Utterance(last.start_ms, max(last.end_ms, u.end_ms), f"{last.text} {u.text}".strip())
        else:
            out.append(u)
    return [u for u in out if u.end_ms - u.start_ms >= MIN_UTTERANCE_MS]


def librivox(folder: Path) -> list[Track]:
    """Each clip is one read sentence: one turn whose pauses come from the word alignment, bounded by the .lab."""
    tracks = []
    for words_file in sorted(folder.glob("*.words.json")):
        lab = (words_file.parent / words_file.name.replace(".words.json", ".lab")).read_text().split()
        onset, offset = float(lab[0]), float(lab[3])
        words = [w for w in json.loads(words_file.read_text())["w"] if w["t"] != "<sil>"]
        utterances = [Utterance(round(w["b"] * 1000), round((w["b"] + w["d"]) * 1000), re.sub(r"\(\d+\)", "", w["t"]))
                      for w in words if onset - 0.05 <= w["b"] <= offset]
        tracks.append([merge(utterances)])
    return tracks


def ami(folder: Path, placeholder: str = "speech", only: str = "*") -> list[Track]:
    """One track per speaker per meeting clip. A pause of one speaker is the end of their turn when someone
    else speaks in it, otherwise a pause inside the turn. AMI has no transcript here: every utterance gets
    the same neutral text, so only the silence thresholds act."""
    tracks = []
    for rttm in sorted(folder.glob(f"{only}.rttm")):
        segments: dict[str, list[Utterance]] = defaultdict(list)
        for line in rttm.read_text().splitlines():
            fields = line.split()
            start, duration = float(fields[3]), float(fields[4])
            segments[fields[7]].append(Utterance(round(start * 1000), round((start + duration) * 1000), placeholder))
        for speaker, own in segments.items():
            others = [u for s, segs in segments.items() if s != speaker for u in segs]
            utterances = merge(own)
            track: Track = [[utterances[0]]] if utterances else []
            for prev, nxt in pairwise(utterances):
                someone_else = any(o.start_ms < nxt.start_ms and o.end_ms > prev.end_ms for o in others)
                if someone_else:
                    track.append([nxt])
                else:
                    track[-1].append(nxt)
            tracks.append(track)
    return tracks


CONTENT = ("weather", "tomorrow", "morning", "train", "ticket", "london", "meeting", "friday", "dinner", "table",
           "window", "seat", "price", "flight", "booking", "invoice", "account", "password", "delivery", "parcel",
           "doctor", "appointment", "music", "playlist", "coffee", "order", "address", "number", "kitchen",
           "light", "temperature")
HESITATIONS = ("and", "but", "so", "because", "the", "um", "uh", "to", "of", "with", "my", "a")


def synthetic(turns: int = 400, seed: int = 7, punctuated: bool = False) -> list[Track]:
    """Turns of 1-3 phrases with mid-sentence pauses (260-2000 ms, median about 450 ms); 60 % of those pauses
    follow a hesitation word. Turn ends: 25 % questions ("?"), 15 % with a full stop, the rest bare words.
    ``punctuated``: an ASR that punctuates each final (Whisper-like): 90 % of turn ends end in "." or "?", and
    so do 20 % of the phrases before a mid-sentence pause that is not after a hesitation word.
    Speech about 250 ms per word."""
    rng = random.Random(seed)
    track: Track = []
    for _ in range(turns):
        phrases = rng.choice((1, 2, 2, 3))
        t, turn = 0, []
        for i in range(phrases):
            words = rng.sample(CONTENT, rng.randint(2, 6))
            last = i == phrases - 1
            hesitant = not last and rng.random() < 0.6
            if hesitant:
                words.append(rng.choice(HESITATIONS))
            text = " ".join(words)
            r = rng.random()
            if last:
                text += "?" if r < 0.25 else "." if r < (0.90 if punctuated else 0.40) else ""
            elif punctuated and not hesitant and r < 0.2:
                text += "."
            length = sum(rng.randint(180, 320) for _ in words)
            turn.append(Utterance(t, t + length, text))
            pause = min(2000, max(VAD_MERGE_MS, round(rng.lognormvariate(6.1, 0.5))))
            t += length + pause
        track.append(turn)
    return [track]
