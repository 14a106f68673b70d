"""Subtitle files: read SRT/VTT cues, tidy overlapping ones, attach translated cues to source segments;
lay the dub's lines out as cues within timed-text limits and write them as SRT, WebVTT and dual-language files."""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pysubs2

from operators import paths
from operators import uri as uris
from operators.schema import SUBTITLE_LIMITS

if TYPE_CHECKING:
    from operators.config import SubtitlesConfig


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
    """SubRip; a "\\n" in a cue's text is a line break."""
    uris.write_text(uri, _srt(cues))


def write_vtt(cues: list[Cue], uri: str) -> None:
    """WebVTT; a "\\n" in a cue's text is a line break."""
    uris.write_text(uri, _vtt(cues))


# Both are written here rather than by pysubs2: it reads text as ASS, so it drops anything in braces
# ("{x}") and does not escape "&" and "<", which a WebVTT parser would take for markup.

def _srt(cues: list[Cue]) -> str:
    blocks = [f"{n}\n{_stamp(c.start_s, ',')} --> {_stamp(c.end_s, ',')}\n{_payload(c.text)}\n"
              for n, c in enumerate(cues, 1)]
    return "\n".join(blocks)


def _vtt(cues: list[Cue]) -> str:
    blocks = [f"{n}\n{_stamp(c.start_s, '.')} --> {_stamp(c.end_s, '.')}\n{_vtt_escaped(_payload(c.text))}\n"
              for n, c in enumerate(cues, 1)]
    return "\n".join(["WEBVTT\n", *blocks])


def _payload(text: str) -> str:
    # In both formats a blank line ends the cue: the rest of its text would be read as a new cue.
    return "\n".join(line for line in text.split("\n") if line.strip())


def _vtt_escaped(text: str) -> str:
    # "&" and "<" would start markup; ">" escaped as well keeps "-->", which the spec forbids in a cue's text.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _stamp(t_s: float, decimal: str) -> str:
    ms = max(0, round(t_s * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal}{ms:03d}"


# --- timed-text limits ----------------------------------------------------------------
#
# Characters are counted as delivery specs count them: every character, spaces and punctuation
# included, line breaks not (`chars`). Times are whole milliseconds, as the files hold them, so
# that a cue is checked exactly as a player or a platform's validator will see it.

@dataclass(frozen=True)
class TimedCue:
    """A cue as written: its lines on screen, and the dubbed line (segment) it shows."""
    start_s: float
    end_s: float
    lines: tuple[str, ...]
    segment_id: str

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class Issue:
    """A written cue that still breaks a limit; `limit` is the setting's name in SUBTITLE_LIMITS."""
    cue_number: int                 # 1-based, as numbered in the files
    segment_id: str
    limit: str
    value: float
    allowed: float


@dataclass(frozen=True)
class Layout:
    cues: list[TimedCue]
    lines_split: int                # dubbed lines that became more than one cue
    cues_extended: int              # cues lengthened into the silence after them
    issues: list[Issue]


def chars(text: str) -> int:
    """Characters as reading speed and line length count them: spaces included, line breaks not."""
    return len(text.replace("\n", ""))


def reflow(text: str, max_chars: int) -> tuple[str, ...]:
    """`text` on the fewest lines of at most `max_chars`, broken at spaces, the lines as even as they can be.

    The fewest lines is what greedy filling gives; among the ways to break the
    words onto that many lines, the one of least cost: the sum of squared line
    lengths (least when the lines are even), plus `_cut_cost` for a break
    that does not follow a clause's end (subtitlers break after punctuation
    where they can); of equal ones, the one with the shorter top line (the
    bottom-heavy shape subtitlers prefer). A word longer than `max_chars`
    stands alone on its line, still too long (reported by `check`, never cut
    inside a word).
    """
    words = text.split()
    if not words:
        return ()
    n_lines = len(_greedy(words, max_chars))
    if n_lines == 1:
        return (" ".join(words),)
    # best[k][j]: the best way to set words[:j] on k lines, as (cost, line lengths, breaks); cost is
    # additive and the lengths compare from the top line down, so keeping the best per prefix is exact.
    best: list[dict[int, tuple]] = [{0: (0, (), ())}]
    for k in range(1, n_lines + 1):
        row: dict[int, tuple] = {}
        for j in range(k, len(words) + 1):
            for i, (cost, lengths, breaks) in best[k - 1].items():
                if i >= j:
                    continue
                width = _width(words, i, j)
                if width > max_chars and j - i > 1:
                    continue
                cut = _cut_cost(words, j, max_chars) if j < len(words) else 0
                cand = (cost + width * width + cut, lengths + (width,), breaks + (j,))
                if j not in row or cand[:2] < row[j][:2]:
                    row[j] = cand
        best.append(row)
    *_, breaks = best[n_lines][len(words)]
    starts = (0,) + breaks[:-1]
    return tuple(" ".join(words[i:j]) for i, j in zip(starts, breaks))


_CLAUSE_END = (".", ",", ";", ":", "!", "?", "…")


def _cut_cost(words: list[str], j: int, max_width: int) -> int:
    """Cost of a cut before words[j]: none after a clause's end, else that of a line half `max_width` long.

    Large enough that a cut at a comma beats a slightly more even cut
    mid-clause, small enough that it never leaves a stub ("Oh," alone).
    """
    if words[j - 1].rstrip("\"'»”’)]").endswith(_CLAUSE_END):
        return 0
    return (max_width // 2) ** 2


def _width(words: list[str], i: int, j: int) -> int:
    return sum(len(w) for w in words[i:j]) + (j - i - 1)


def _greedy(words: list[str], max_chars: int) -> list[list[str]]:
    lines: list[list[str]] = []
    for w in words:
        if lines and _width(lines[-1] + [w], 0, len(lines[-1]) + 1) <= max_chars:
            lines[-1].append(w)
        else:
            lines.append([w])
    return lines


def split_line(start_s: float, end_s: float, text: str, segment_id: str, limits: "SubtitlesConfig") -> list[TimedCue]:
    """One dubbed line as the fewest cues that each fit the line and duration limits, inside the line's time.

    The line is cut only between words. Each cue gets the line's time in
    proportion to its characters (the space at a cut goes with the cue before
    it), so cue times follow the words as spoken at an even pace. Of the ways
    to cut into that fewest number of cues, the one of least cost: the sum of
    squared cue lengths in characters (least when the cues are even), plus
    `_cut_cost` for a cut that does not follow a clause's end. A piece of one word is
    always allowed, so the cut always exists; what it still breaks, `check`
    reports.
    """
    words = text.split()
    if not words:
        return []
    joined = " ".join(words)
    offsets = [0]                             # character offset in `joined` where each word starts
    for w in words[:-1]:
        offsets.append(offsets[-1] + len(w) + 1)
    offsets.append(len(joined) + 1)           # as if a space followed the last word
    total = len(joined) + 1
    duration_s = end_s - start_s

    def fits(i: int, j: int) -> bool:
        if j - i == 1:
            return True
        piece = words[i:j]
        if _width(piece, 0, len(piece)) > limits.max_chars_per_line * limits.max_lines_per_cue:
            return False
        if duration_s * (offsets[j] - offsets[i]) / total > limits.max_duration_s + 5e-4:
            return False
        return len(_greedy(piece, limits.max_chars_per_line)) <= limits.max_lines_per_cue

    # best[j]: the best cut of words[:j], as (cues, cost, cut positions); (cues, cost) compared in
    # that order and both additive, so keeping the best per prefix is exact.
    best: dict[int, tuple[int, int, tuple[int, ...]]] = {0: (0, 0, ())}
    for j in range(1, len(words) + 1):
        for i in range(j - 1, -1, -1):
            if i not in best:
                continue
            if not fits(i, j):
                if j - i > 1 and _width(words, i, j) > limits.max_chars_per_line * limits.max_lines_per_cue:
                    break                     # longer pieces only get longer
                continue
            count, squares, cuts = best[i]
            width = _width(words, i, j)
            cut = _cut_cost(words, i, limits.max_chars_per_line * limits.max_lines_per_cue) if i else 0
            cand = (count + 1, squares + width * width + cut, cuts + (j,))
            if j not in best or cand[:2] < best[j][:2]:
                best[j] = cand
    cuts = best[len(words)][2]
    cues = []
    for i, j in zip((0,) + cuts[:-1], cuts):
        # ms, as written; the last cue ends exactly where the line does
        cue_start = _ms(start_s + duration_s * offsets[i] / total)
        cue_end = _ms(end_s) if j == len(words) else _ms(start_s + duration_s * offsets[j] / total)
        cues.append(TimedCue(cue_start, cue_end, reflow(" ".join(words[i:j]), limits.max_chars_per_line),
                             segment_id))
    return cues


def _ms(t_s: float) -> float:
    return round(t_s * 1000) / 1000


def lengthen(cues: list[TimedCue], limits: "SubtitlesConfig", end_limit_s: float | None = None
             ) -> tuple[list[TimedCue], int]:
    """Cues shorter than the minimum duration, or too fast to read, lengthened into the silence after them.

    A cue may grow up to the start of the next cue (never over it), the end
    of the video (`end_limit_s`) and the maximum duration, only as far as its
    limits need. Returns the cues and how many were lengthened.
    """
    out, extended = [], 0
    for n, cue in enumerate(cues):
        needed_s = min(max(limits.min_duration_s, chars(cue.text) / limits.max_chars_per_s), limits.max_duration_s)
        room = [x for x in (cues[n + 1].start_s if n + 1 < len(cues) else None,
                            math.floor(end_limit_s * 1000) / 1000 if end_limit_s is not None else None)
                if x is not None]
        # up to the ms: a cue rounded down would fall just short of the limit it was lengthened for
        wanted_end = math.ceil(round((cue.start_s + needed_s) * 1000, 6)) / 1000
        new_end = min([wanted_end, *room])
        if new_end > cue.end_s:
            cue = TimedCue(cue.start_s, new_end, cue.lines, cue.segment_id)
            extended += 1
        out.append(cue)
    return out, extended


def check(cues: list[TimedCue], limits: "SubtitlesConfig") -> list[Issue]:
    """Every limit each cue breaks, cue by cue, in the order of SUBTITLE_LIMITS."""
    issues = []
    for n, cue in enumerate(cues, 1):
        duration_s = round(cue.end_s - cue.start_s, 3)
        cps = chars(cue.text) / duration_s if duration_s > 0 else float("inf")
        longest = max((len(line) for line in cue.lines), default=0)
        measured = {
            "max_chars_per_line": (longest, longest > limits.max_chars_per_line),
            "max_lines_per_cue": (len(cue.lines), len(cue.lines) > limits.max_lines_per_cue),
            "max_chars_per_s": (round(cps, 3), cps > limits.max_chars_per_s + 1e-9),
            "min_duration_s": (duration_s, duration_s < limits.min_duration_s - 1e-9),
            "max_duration_s": (duration_s, duration_s > limits.max_duration_s + 1e-9),
        }
        for limit in SUBTITLE_LIMITS:
            value, broken = measured[limit]
            if broken:
                issues.append(Issue(n, cue.segment_id, limit, float(value), float(getattr(limits, limit))))
    return issues


def layout(lines: list[tuple[str, float, float, str]], limits: "SubtitlesConfig",
           end_limit_s: float | None = None) -> Layout:
    """The dub's lines (segment_id, start_s, end_s, text), in time order, as cues within the limits where they can be.

    Each line is re-flowed and, where it does not fit in one cue, split
    (`split_line`); then cues that are too short or too fast are lengthened
    (`lengthen`); what still breaks a limit is listed (`check`).
    """
    cues, split = [], 0
    for segment_id, start_s, end_s, text in lines:
        pieces = split_line(start_s, end_s, text, segment_id, limits)
        split += len(pieces) > 1
        cues += pieces
    cues, extended = lengthen(cues, limits, end_limit_s)
    return Layout(cues, split, extended, check(cues, limits))


def write_outputs(segments: list[dict], limits: "SubtitlesConfig", out_dir: str, video_id: str, lang: str,
                  end_limit_s: float | None = None) -> dict:
    """The subtitle files of one (video, language), from its dubbed lines, and their manifest columns.

    Cues follow the dub: each line's placed_start_s/placed_end_s and its
    target_text. The dual-language file (limits.dual) has one cue per dubbed
    line, over the time its target cues take, with the source text re-flowed
    above the target text; it is a reading and QC aid that by design holds
    twice the lines, so the limits are checked on the target-language cues only.
    """
    lines = sorted(((s["segment_id"], s["placed_start_s"], s["placed_end_s"], s.get("target_text") or "")
                    for s in segments), key=lambda line: line[1])
    laid = layout(lines, limits, end_limit_s)
    cues = [Cue(c.start_s, c.end_s, c.text) for c in laid.cues]
    srt_uri = paths.output(out_dir, video_id, lang, ".srt")
    vtt_uri = paths.output(out_dir, video_id, lang, ".vtt")
    write_srt(cues, srt_uri)
    write_vtt(cues, vtt_uri)
    dual_uri = None
    if limits.dual:
        # A line's dual cue spans its target cues as laid out (lengthened ones included), so both files
        # show a line over the same time.
        spans: dict[str, tuple[float, float]] = {}
        for c in laid.cues:
            start_s, end_s = spans.get(c.segment_id, (c.start_s, c.end_s))
            spans[c.segment_id] = (min(start_s, c.start_s), max(end_s, c.end_s))
        dual = []
        for s in sorted(segments, key=lambda s: s["placed_start_s"]):
            shown = reflow(s.get("source_text") or "", limits.max_chars_per_line) + \
                reflow(s.get("target_text") or "", limits.max_chars_per_line)
            if shown:
                start_s, end_s = spans.get(s["segment_id"], (_ms(s["placed_start_s"]), _ms(s["placed_end_s"])))
                dual.append(Cue(start_s, end_s, "\n".join(shown)))
        dual_uri = paths.output(out_dir, video_id, lang, f".dual.{limits.dual_format}")
        (write_vtt if limits.dual_format == "vtt" else write_srt)(dual, dual_uri)
    over = {limit: sum(i.limit == limit for i in laid.issues) for limit in SUBTITLE_LIMITS}
    return {"subtitles_out_uri": srt_uri, "subtitles_vtt_uri": vtt_uri, "subtitles_dual_uri": dual_uri,
            "subtitle_cues": len(laid.cues), "subtitle_lines_split": laid.lines_split,
            "subtitle_cues_extended": laid.cues_extended, "subtitle_cues_over_limits": over,
            "subtitle_issues": [dataclasses.asdict(i) for i in laid.issues]}
