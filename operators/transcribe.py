"""Speech segments of one shard of the source: its own subtitles when the catalog has them, else ASR.

ASR hears `shards.context_s` past each edge of the shard, so a word at a
join is heard whole by both neighbours; each keeps the words whose midpoint
it holds, so none is lost or doubled. The merge joins lines cut at a join.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

import numpy as np

from operators import subtitles
from operators import uri as uris
from operators.backends import load_asr
from operators.base import Operator, Resources, add_model
from operators.schema import SHARD_ROW, empty_segment, segment_id


class Transcribe(Operator):
    name = "transcribe"
    reads = ("asr_audio_uri", "source_lang", "source_subtitles_uri", "shards", "shard_index")
    writes = ("segments", "source_lang", "detected_lang", "lang_probability")
    resources = Resources(num_cpus=1, pool=(1, 2), memory_gb=1.0)
    output_schema = SHARD_ROW

    def setup(self) -> None:
        self.backend = self.backend or load_asr(self.config.asr)

    def process_row(self, row: dict) -> dict:
        """One shard's lines: each word (or cue) belongs to the shard that holds its midpoint."""
        vid = row["video_id"]
        if row.get("shards"):
            shard = row["shards"][row["shard_index"]]
            last = row["shard_index"] == len(row["shards"]) - 1
        else:                                            # a row not split into shards: the whole video
            shard, last = {"start_s": 0.0, "end_s": float("inf")}, True
        start_s, end_s = shard["start_s"], float("inf") if last else shard["end_s"]

        def mine(a: float, b: float) -> bool:
            return start_s <= (a + b) / 2 < end_s

        if row.get("source_subtitles_uri"):
            cues = [c for c in subtitles.read_cues(row["source_subtitles_uri"]) if mine(c.start_s, c.end_s)]
            cues = subtitles.tidy_cues(cues, "source cue")
            segments = [empty_segment(segment_id=segment_id(vid, c.start_s, c.end_s), start_s=c.start_s,
                                      end_s=c.end_s, source_text=c.text, words=[], notes=list(c.notes))
                        for c in cues]
            lang, prob = row["source_lang"], None
        else:
            context = self.config.shards.context_s
            with uris.local_copy(row["asr_audio_uri"]) as path, _audio_slice(
                    path, shard["start_s"] - context, shard["end_s"] + context) as (piece, offset_s):
                t = self.backend.transcribe(piece, row.get("source_lang"))
            add_model(row, self.name, self.backend.model_info(row.get("source_lang") or t.language))
            spans = [(a + offset_s, b + offset_s) for a, b in t.speech_spans]
            segments = []
            for s in t.segments:
                words = [{"start_s": w.start_s + offset_s, "end_s": w.end_s + offset_s, "text": w.text,
                          "probability": w.probability} for w in s.words]
                words = [w for w in words if mine(w["start_s"], w["end_s"])]
                if not s.words:
                    if mine(s.start_s + offset_s, s.end_s + offset_s):
                        segments.append(empty_segment(start_s=s.start_s + offset_s, end_s=s.end_s + offset_s,
                                                      source_text=s.text, words=[], notes=[]))
                    continue
                for start, end, piece_words in split_at_pauses(words, spans, self.config.asr.split_pause_s):
                    segments.append(empty_segment(start_s=start, end_s=end, words=piece_words, notes=[],
                                                  source_text=" ".join(w["text"] for w in piece_words)))
            segments = [seg for seg in snap_to_spans(segments, spans)
                        if seg["end_s"] > seg["start_s"] and seg["source_text"].strip()]
            # Whisper's segments and the edges snapped to speech can overlap; the fit stage needs them apart.
            segments = [{**seg, "segment_id": segment_id(vid, seg["start_s"], seg["end_s"])}
                        for seg in tidy_segments(segments, "transcribed line")]
            lang, prob = t.language, t.language_probability
        segments = [s for s in segments if s["end_s"] > s["start_s"] and s["source_text"].strip()]
        # A shard without speech is normal (titles, action); the merge decides whether the video has any.
        return {**row, "segments": segments, "detected_lang": lang, "lang_probability": prob,
                "source_lang": row.get("source_lang") or lang}


@contextmanager
def _audio_slice(path: str, start_s: float, end_s: float):
    """(a wav of [start_s, end_s) of the audio at `path`, the slice's start in s); read by seeking."""
    import soundfile as sf

    with sf.SoundFile(path) as f:
        first = max(0, int(start_s * f.samplerate))
        last = min(f.frames, int(np.ceil(end_s * f.samplerate))) if np.isfinite(end_s) else f.frames
        if first == 0 and last == f.frames:
            yield path, 0.0
            return
        f.seek(first)
        samples = f.read(last - first, dtype="int16", always_2d=True)
        rate = f.samplerate
    with tempfile.TemporaryDirectory(prefix="raydub-asr-") as tmp:
        piece = os.path.join(tmp, "slice.wav")
        sf.write(piece, samples, rate, subtype="PCM_16")
        yield piece, first / rate


def tidy_segments(segments: list[dict], what: str) -> list[dict]:
    """`segments` in time order without overlaps (the rule of subtitles.tidy_spans), each change in its notes.

    A merged line keeps the first member's fields, spans the union, and joins
    the members' text and words in time order.
    """
    out = []
    for line in subtitles.tidy_spans([(s["start_s"], s["end_s"]) for s in segments], what):
        parts = [segments[i] for i in line.members]
        words = sorted((w for p in parts for w in p["words"] or []), key=lambda w: w["start_s"])
        out.append({**parts[0], "start_s": line.start_s, "end_s": line.end_s, "words": words,
                    "source_text": subtitles.join_texts(p["source_text"] for p in parts),
                    "notes": [n for p in parts for n in p.get("notes") or []] + list(line.notes)})
    return out


def split_at_pauses(words: list[dict], speech_spans: list[tuple[float, float]],
                    pause_s: float) -> list[tuple[float, float, list[dict]]]:
    """A segment's words as lines (start_s, end_s, words), split where the speaker pauses.

    Whisper often keeps two sentences with a pause between them in one
    segment, and its word timestamps stretch over the pause; dubbed as one
    line, the new speech would run through it. With voice-activity spans,
    each word goes to the span it overlaps most and a line's times are
    clipped to its span; without them, a gap of `pause_s` between words splits.
    """
    if not speech_spans:
        pieces: list[list[dict]] = []
        for w in words:
            if pieces and w["start_s"] - pieces[-1][-1]["end_s"] < pause_s:
                pieces[-1].append(w)
            else:
                pieces.append([w])
        return [(p[0]["start_s"], p[-1]["end_s"], p) for p in pieces]

    def span_of(w: dict) -> int:
        overlaps = [min(e, w["end_s"]) - max(s, w["start_s"]) for s, e in speech_spans]
        best = max(range(len(speech_spans)), key=lambda i: overlaps[i])
        if overlaps[best] > 0:
            return best
        mid = (w["start_s"] + w["end_s"]) / 2
        return min(range(len(speech_spans)),
                   key=lambda i: min(abs(mid - speech_spans[i][0]), abs(mid - speech_spans[i][1])))

    groups: list[tuple[int, list[dict]]] = []
    for w in words:
        i = span_of(w)
        if groups and groups[-1][0] == i:
            groups[-1][1].append(w)
        else:
            groups.append((i, [w]))
    lines = []
    for i, piece in groups:
        span_start, span_end = speech_spans[i]
        start, end = max(piece[0]["start_s"], span_start), min(piece[-1]["end_s"], span_end)
        if end <= start:
            start, end = piece[0]["start_s"], piece[-1]["end_s"]
        lines.append((start, end, piece))
    return lines


def snap_to_spans(segments: list[dict], speech_spans: list[tuple[float, float]]) -> list[dict]:
    """Lines start and end where the voice-activity detector heard speech.

    Whisper's first and last word times can be late or early by a few hundred
    ms; a line that starts after its speech does leaves the original's first
    syllable in the background under the dub. Each line's outer edges move to
    those of the span it overlaps most; where several lines share one span, the
    edges between them stay. A line that overlaps no span is left as it is.
    """
    def span_of(seg: dict) -> int | None:
        overlaps = [min(e, seg["end_s"]) - max(s, seg["start_s"]) for s, e in speech_spans]
        best = max(range(len(overlaps)), key=overlaps.__getitem__, default=None)
        return best if best is not None and overlaps[best] > 0 else None

    owners = [span_of(seg) for seg in segments]
    out = []
    for k, (seg, i) in enumerate(zip(segments, owners)):
        start, end = seg["start_s"], seg["end_s"]
        if i is not None and (k == 0 or owners[k - 1] != i):
            start = speech_spans[i][0]
        if i is not None and (k == len(segments) - 1 or owners[k + 1] != i):
            end = speech_spans[i][1]
        out.append({**seg, "start_s": start, "end_s": end})
    return out
