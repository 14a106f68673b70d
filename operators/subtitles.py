"""Subtitle sidecars: read SRT/VTT cues, tidy overlapping ones, attach translated cues to source segments, write SRT."""
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
    notes: tuple[str, ...] = ()      # what tidy_cues changed in this cue, and why


@dataclass(frozen=True)
class Line:
    """Spans tidied into one line: `members` index the input spans, in time order."""
    members: tuple[int, ...]
    start_s: float
    end_s: float
    notes: tuple[str, ...]


# Overlaps below this share of the shorter of two spans are trimmed; larger ones merge the two.
TRIM_BELOW_SHARE = 0.5


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


def tidy_spans(spans: list[tuple[float, float]], what: str) -> list[Line]:
    """`spans` (start_s, end_s) as lines in time order that do not overlap, each change noted.

    Real subtitle files overlap: a cue often ends some tens of ms after the
    next one starts, the same cue can appear twice, and two speakers may share
    one window. The dub places one line per slot, and slots must not overlap.
    Taken in start order, each span meets the line before it:

    - An overlap of less than TRIM_BELOW_SHARE (half) of the shorter of the two
      is a timing slip: the earlier line is trimmed to end where the later one
      starts. Both stay separate lines at their own starts, as the subtitler
      meant, and the earlier keeps more than half of its time. Merging them
      would make one long line of two sentences.
    - A larger overlap (one span mostly inside the other, a duplicate, two
      speakers at once) cannot be cut apart without leaving one of them
      little or no time: the two become one line over the union of their
      spans, their texts joined in start order.

    A note on the line says which (`what` names the spans, e.g. "source cue").
    A trim too small to show in milliseconds is float noise and gets no note.
    """
    order = sorted(range(len(spans)), key=lambda i: spans[i])
    lines: list[Line] = []
    for i in order:
        start_s, end_s = spans[i]
        if lines and start_s < lines[-1].end_s:
            last = lines[-1]
            overlap_s = min(last.end_s, end_s) - start_s
            shorter_s = min(last.end_s - last.start_s, end_s - start_s)
            if overlap_s < TRIM_BELOW_SHARE * shorter_s:
                trim_s = last.end_s - start_s
                note = (f"{what} trimmed by {trim_s:.3f} s: it overlapped the next one, at {start_s:.3f} s",)
                lines[-1] = Line(last.members, last.start_s, start_s,
                                 last.notes + (note if round(trim_s, 3) > 0 else ()))
            else:
                lines[-1] = Line(last.members + (i,), last.start_s, max(last.end_s, end_s),
                                 last.notes + (f"merged with the overlapping {what} at {start_s:.3f}-{end_s:.3f} s",))
                continue
        lines.append(Line((i,), start_s, end_s, ()))
    return lines


def join_texts(texts) -> str:
    """Texts of merged spans in order; a text already there (a duplicated cue) is kept once."""
    kept: list[str] = []
    for text in texts:
        if text not in kept:
            kept.append(text)
    return " ".join(kept)


def tidy_cues(cues: list[Cue], what: str) -> list[Cue]:
    """`cues` sorted and without overlaps, by the rule of tidy_spans; a merged cue's text is its cues' in order."""
    return [Cue(line.start_s, line.end_s, join_texts(cues[i].text for i in line.members),
                tuple(n for i in line.members for n in cues[i].notes) + line.notes)
            for line in tidy_spans([(c.start_s, c.end_s) for c in cues], what)]


def assign_cues(segments: list[tuple[float, float]], cues: list[Cue]) -> list[Cue]:
    """The translated cue for each source segment: the segment's times, its cues' text and notes.

    Each cue goes to the segment it overlaps most (or, overlapping none, the
    nearest one), so the dub stays on the source's own segments and segment
    ids stay the same in every language. Segments no cue reaches get "".
    """
    mine: list[list[Cue]] = [[] for _ in segments]
    if not segments:
        return []
    for cue in cues:
        overlaps = [max(0.0, min(end, cue.end_s) - max(start, cue.start_s)) for start, end in segments]
        best = max(range(len(segments)), key=lambda i: overlaps[i])
        if overlaps[best] <= 0.0:
            mid = (cue.start_s + cue.end_s) / 2
            best = min(range(len(segments)),
                       key=lambda i: min(abs(mid - segments[i][0]), abs(mid - segments[i][1])))
        mine[best].append(cue)
    return [Cue(start, end, " ".join(c.text for c in got), tuple(n for c in got for n in c.notes))
            for (start, end), got in zip(segments, mine)]


def write_srt(cues: list[Cue], uri: str) -> None:
    subs = pysubs2.SSAFile()
    for cue in cues:
        subs.append(pysubs2.SSAEvent(start=round(cue.start_s * 1000), end=round(cue.end_s * 1000), text=cue.text))
    uris.write_text(uri, subs.to_string("srt"))
