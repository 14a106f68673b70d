"""Subtitle sidecars: read SRT/VTT cues, attach translated cues to source segments, write SRT."""
from __future__ import annotations

import re
from dataclasses import dataclass

import pysubs2

from operators import uri as uris


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str


_TAGS = re.compile(r"<[^>]+>|\{[^}]*\}")


def read_cues(uri: str) -> list[Cue]:
    """Cues in time order, markup stripped; empty cues dropped."""
    text = uris.read_text(uri)
    fmt = "vtt" if uris.path_of(uri).lower().endswith(".vtt") else "srt"
    try:
        subs = pysubs2.SSAFile.from_string(text, format_=fmt)
    except Exception as e:  # pysubs2 raises several types for malformed files
        raise ValueError(f"{uris.redacted(uri)}: not a readable {fmt.upper()} file: {e}") from None
    cues = []
    for event in subs:
        if event.is_comment:
            continue
        body = _TAGS.sub("", event.plaintext).replace("\n", " ").strip()
        body = re.sub(r"\s+", " ", body)
        if body and event.end > event.start:
            cues.append(Cue(event.start / 1000.0, event.end / 1000.0, body))
    cues.sort(key=lambda c: c.start_s)
    return cues


def assign_cues(segments: list[tuple[float, float]], cues: list[Cue]) -> list[str]:
    """The translated text for each source segment.

    Each cue goes to the segment it overlaps most (or, overlapping none, the
    nearest one), so the dub stays on the source's own segments and segment
    ids stay the same in every language. Segments no cue reaches get "".
    """
    texts: list[list[str]] = [[] for _ in segments]
    if not segments:
        return []
    for cue in cues:
        overlaps = [max(0.0, min(end, cue.end_s) - max(start, cue.start_s)) for start, end in segments]
        best = max(range(len(segments)), key=lambda i: overlaps[i])
        if overlaps[best] <= 0.0:
            mid = (cue.start_s + cue.end_s) / 2
            best = min(range(len(segments)),
                       key=lambda i: min(abs(mid - segments[i][0]), abs(mid - segments[i][1])))
        texts[best].append(cue.text)
    return [" ".join(t) for t in texts]


def write_srt(cues: list[Cue], uri: str) -> None:
    subs = pysubs2.SSAFile()
    for cue in cues:
        subs.append(pysubs2.SSAEvent(start=round(cue.start_s * 1000), end=round(cue.end_s * 1000), text=cue.text))
    uris.write_text(uri, subs.to_string("srt"))
