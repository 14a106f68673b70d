"""Per (video, language): the mouth shape of every frame to re-render, planned on small data.

What is re-rendered scales with speech, not with video length: only frames
of a speaker's track inside a dubbed line (widened to where the dub runs
over) plus short ramps get new mouth shapes. Each rendered span's shapes
come from the speaker's lip model applied to the dub speech around it (read
for that span alone, never the whole video's audio).

Mouth shapes are predicted in chunks of `lips.chunk_frames` that never cross
a track (so never a shot). Neighbouring chunks share `lips.overlap_frames`
frames, where their mouth shapes are cross-faded, so a chunk join does not
jump. Where the dub is silent the mouth goes to the speaker's rest shape; at
the ends of each rendered span it blends from the measured source shape over
`lips.ramp_frames`, so entering and leaving a line does not jump either.

The plan is computed once for the whole video, before the pixels are drawn
shard by shard (operators/render.py): a shard join inside a span takes the
same shapes on both sides, so the mouth moves across it as if there were no
join. Written to WORK/<video>/render/<lang>/targets.npz:
  frame (N,), track (N,)      the frames to re-render and whose mouth
  lips (N, 20, 2)             the lip points to draw there, image pixels
"""
from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass

import numpy as np

from operators import audio
from operators import face_geometry as geometry
from operators import lipsync, paths, phonemes
from operators import uri as uris
from operators.base import Operator, Resources
from operators.faces_file import load as load_faces_file
from operators.lip_model import frames_in, landmarks_by_frame, line_span_s, track_series
from operators.schema import RESULT
from operators.track_faces import smooth

# Audio read past each end of a span: the features' context and the mel frames at its edges.
SPAN_AUDIO_MARGIN_S = 1.0
# Outer lip points above and below the mouth's corners (48 and 54), in the 20 lip points.
OUTER_UPPER = [i - 48 for i in (49, 50, 51, 52, 53)]
OUTER_LOWER = [i - 48 for i in (55, 56, 57, 58, 59)]




@dataclass
class Span:
    track_id: int
    frames: np.ndarray             # frame indices, consecutive frames of one track
    segment_ids: list[str]


def load_lip_models(lip_models_uri: str) -> dict[int, lipsync.LipModel | lipsync.LoudnessMouth]:
    """Track id -> its speaker's lip model (one model, learnt from all that person's tracks, serves each)."""
    with np.load(io.BytesIO(uris.read_bytes(lip_models_uri))) as data:
        models = {int(s): lipsync.LipModel.from_arrays(data, f"s{int(s)}_") for s in data["speaker_ids"]}
        return {int(t): models[int(s)] for t, s in zip(data["track_ids"], data["track_speaker_ids"])}


def dub_speech_16k(segments: list[dict], start_s: float, end_s: float) -> tuple[np.ndarray, float]:
    """(the dub's speech alone (no background), mono 16 kHz, from start_s to end_s; its first sample's time).

    Only the lines that reach into the window are read: a window around a
    span or a shard, never the whole video. The window starts on the 16 kHz
    sample grid, so every window places a line on the same samples.
    """
    rate = lipsync.SAMPLE_RATE_HZ
    first = int(np.floor(max(0.0, start_s) * rate))
    n_samples = max(1, int(np.ceil(end_s * rate)) - first)
    origin_s = first / rate
    placed = []
    for s in segments:
        if s.get("fit_uri") and s["placed_start_s"] < end_s and s["placed_end_s"] > start_s:
            with uris.local_copy(s["fit_uri"]) as p:
                placed.append((s["placed_start_s"] - origin_s, audio.read_mono(p, rate)[:, None]))
    return audio.place(placed, n_samples, rate, 1)[:, 0], origin_s


def plan_spans(segments: list[dict], times: np.ndarray, faces: dict[str, np.ndarray],
               merge_gap_frames: int) -> list[Span]:
    """Frames to re-render per speaker: each dubbed line's source and dub time, on its speaker's track."""
    spans: list[Span] = []
    for s in segments:
        tid = s.get("speaker_track_id")
        if tid is None or not s.get("fit_uri"):
            continue
        start, end = line_span_s(s)
        track_frames = track_series(faces, tid)[0]
        inside = track_frames[(times[track_frames] >= start) & (times[track_frames] < end)]
        if len(inside):
            spans.append(Span(tid, inside, [s["segment_id"]]))
    spans.sort(key=lambda sp: (sp.track_id, sp.frames[0]))
    merged: list[Span] = []
    for sp in spans:
        last = merged[-1] if merged else None
        if last and last.track_id == sp.track_id and sp.frames[0] - last.frames[-1] <= merge_gap_frames + 1:
            track_frames = track_series(faces, sp.track_id)[0]
            between = track_frames[(track_frames >= last.frames[0]) & (track_frames <= max(sp.frames[-1],
                                                                                            last.frames[-1]))]
            merged[-1] = Span(sp.track_id, between, last.segment_ids + sp.segment_ids)
        else:
            merged.append(sp)
    return merged


def chunk_bounds(n: int, chunk: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) chunks covering range(n), neighbours sharing `overlap` items."""
    step = max(1, chunk - overlap)
    bounds, start = [], 0
    while True:
        end = min(n, start + chunk)
        bounds.append((start, end))
        if end >= n:
            return bounds
        start += step


def crossfade_chunks(n: int, bounds: list[tuple[int, int]], chunks: list[np.ndarray]) -> np.ndarray:
    """One sequence from overlapping chunks: in each overlap, a linear fade from one chunk into the next."""
    total = np.zeros((n, *chunks[0].shape[1:]))
    weight = np.zeros(n)
    for k, ((a, b), values) in enumerate(zip(bounds, chunks)):
        w = np.ones(b - a)
        if k > 0 and bounds[k - 1][1] > a:                      # shared with the previous chunk
            m = bounds[k - 1][1] - a
            w[:m] = (np.arange(m) + 1) / (m + 1)
        if k + 1 < len(bounds) and bounds[k + 1][0] < b:        # shared with the next chunk
            m = b - bounds[k + 1][0]
            w[-m:] = np.minimum(w[-m:], np.arange(m, 0, -1) / (m + 1))
        shape = (-1,) + (1,) * (values.ndim - 1)
        total[a:b] += w.reshape(shape) * values
        weight[a:b] += w
    return total / weight.reshape((-1,) + (1,) * (total.ndim - 1))


def edge_ramp(n: int, ramp: int) -> np.ndarray:
    """0 -> 1 over `ramp` frames at the start, 1 -> 0 at the end (never exactly 0 inside a span)."""
    w = np.ones(n)
    if ramp > 0:
        up = (np.arange(1, ramp + 1)) / (ramp + 1)
        k = min(ramp, n)
        w[:k] = np.minimum(w[:k], up[:k])
        w[n - k:] = np.minimum(w[n - k:], up[:k][::-1])
    return w


def closed_lips(lips: np.ndarray, amount: np.ndarray) -> np.ndarray:
    """Lip shapes (n, 20, 2) with their mouths shut by `amount` (n,) in [0, 1].

    The upper and lower lips meet halfway across the inner gap, each keeping
    its thickness; the corners stay where they are.
    """
    out = lips.astype(np.float64).copy()
    inner_upper = [a - 48 for a, _ in geometry.INNER_GAPS]
    inner_lower = [b - 48 for _, b in geometry.INNER_GAPS]
    gaps = lips[:, inner_lower] - lips[:, inner_upper]                    # (n, 3, 2), top to bottom
    gaps = np.where(gaps[..., 1:2] > 0, gaps, 0.0)                        # an already shut pair stays
    half = 0.5 * amount[:, None, None] * gaps
    out[:, inner_upper] += half
    out[:, inner_lower] -= half
    mean_half = half.mean(axis=1, keepdims=True)
    out[:, OUTER_UPPER] += mean_half
    out[:, OUTER_LOWER] -= mean_half
    return out


def closure_weights(times_s: np.ndarray, closures_s: list[tuple[float, float]], frame_s: float) -> np.ndarray:
    """How far to shut the lips in each frame, in [0, 1], for closures given as (start_s, end_s).

    A closure shorter than a frame is widened to one, about its middle, so
    that every closure shuts at least one frame: a frame (its time ± half a
    frame) covered by half the closure or more is shut, one covered less is
    shut in proportion.
    """
    w = np.zeros(len(times_s))
    for a, b in closures_s:
        mid, width = (a + b) / 2, max(b - a, frame_s)
        a, b = mid - width / 2, mid + width / 2
        overlap = np.minimum(times_s + frame_s / 2, b) - np.maximum(times_s - frame_s / 2, a)
        w = np.maximum(w, np.clip(overlap / (0.5 * frame_s), 0.0, 1.0))
    return w


def target_shapes(span: Span, model: lipsync.LipModel | lipsync.LoudnessMouth, features: np.ndarray,
                  envelope: np.ndarray, source_lips: np.ndarray, chunk: int, overlap: int, ramp: int,
                  gain: float = 1.0, closure: np.ndarray | None = None) -> np.ndarray:
    """Normalised lip shapes (n, 20, 2) for the span's frames.

    `features` and `envelope` are the dub's, at the span's frames;
    `source_lips` the measured source shapes there. `gain` > 1 widens every
    excursion from the resting mouth, and `closure` (n,) shuts the lips by
    that much on bilabials (lips.mode "tight").
    """
    n = len(span.frames)
    bounds = chunk_bounds(n, chunk, overlap)
    # Each chunk is predicted on its own (as a renderer with state would render it)
    # and smoothed over time within itself; the overlaps hide where they differ.
    chunks = [smooth(model.shapes(features[a:b], envelope[a:b]), 5) for a, b in bounds]
    predicted = crossfade_chunks(n, bounds, chunks)
    gate = lipsync.speech_gate(envelope).astype(np.float64) if envelope.size else np.zeros(0)
    gate = np.convolve(np.pad(gate, 1, mode="edge"), np.ones(3) / 3, mode="valid")
    rest = model.rest_lips.reshape(20, 2)
    predicted = rest + gain * (predicted - rest)
    shaped = gate[:, None, None] * predicted + (1 - gate[:, None, None]) * rest
    if closure is not None:
        shaped = closed_lips(shaped, closure)
    w = edge_ramp(n, ramp)[:, None, None]
    return w * shaped + (1 - w) * source_lips


class PlanLips(Operator):
    name = "lips"
    reads = ("faces_uri", "lip_models_uri", "segments", "fps")
    writes = ("lip_targets_uri", "lip_status", "lip_reason", "frames_rerendered", "share_rerendered",
              "segments.lip_frames_rendered", "segments.notes")
    resources = Resources(num_cpus=1, memory_gb=1.0)
    output_schema = RESULT

    def process_row(self, row: dict) -> dict:
        cfg = self.config.lips
        segments = [dict(s) for s in row["segments"]]
        unchanged = {**row, "segments": segments, "lip_targets_uri": None, "rendered_video_uri": None,
                     "lip_status": "unchanged", "frames_rerendered": 0, "share_rerendered": 0.0}
        if not cfg.enabled:
            return {**unchanged, "lip_reason": "lip sync disabled in config (lips.enabled = false)"}
        reason = _reasons(segments)
        if not row.get("lip_models_uri") or not any(s.get("speaker_track_id") is not None and s.get("fit_uri")
                                                    for s in segments):
            return {**unchanged, "lip_reason": reason or "no dubbed line has a visible speaker"}

        faces = load_faces_file(row["faces_uri"], with_crops=False)
        times = faces["frame_times_s"]
        models = load_lip_models(row["lip_models_uri"])
        window_s = lipsync.frame_window_s(times, row["fps"])
        dub_spans = [(s["placed_start_s"], s["placed_end_s"]) for s in segments if s.get("fit_uri")]

        spans = plan_spans(segments, times, faces, 2 * cfg.ramp_frames + cfg.overlap_frames)
        tight = cfg.mode == "tight"
        closures = bilabial_closures(segments, row["lang"]) if tight and cfg.close_bilabials else None
        frames_out, tracks_out, lips_out = [], [], []
        for tid in sorted({sp.track_id for sp in spans}):
            model = models[tid]
            track_spans = [sp for sp in spans if sp.track_id == tid]
            # Features and envelope of each span from the dub speech around that span only.
            features, envelopes = [], []
            for sp in track_spans:
                t0, t1 = times[sp.frames[0]] - SPAN_AUDIO_MARGIN_S, times[sp.frames[-1]] + SPAN_AUDIO_MARGIN_S
                speech, origin_s = dub_speech_16k(segments, t0, t1)
                features.append(lipsync.AudioFeatures(speech, cfg.context_s).at(times[sp.frames] - origin_s))
                envelopes.append(lipsync.speech_envelope_db(speech, times[sp.frames] - origin_s, window_s))
            span_frames = np.concatenate([sp.frames for sp in track_spans])
            x = lipsync.normalise_per_track(np.concatenate(features), lipsync.within(times[span_frames], dub_spans))
            lm_by_frame = landmarks_by_frame(faces, tid)
            offset = 0
            for sp, envelope in zip(track_spans, envelopes):
                n = len(sp.frames)
                source_lips = np.array([geometry.lips_in_face_frame(lm_by_frame[f]) for f in sp.frames])
                shapes = target_shapes(sp, model, x[offset:offset + n], envelope, source_lips,
                                       cfg.chunk_frames, cfg.overlap_frames, cfg.ramp_frames,
                                       cfg.tight_gain if tight else 1.0,
                                       None if closures is None else
                                       closure_weights(times[sp.frames], closures, 1.0 / row["fps"]))
                offset += n
                frames_out.append(sp.frames)
                tracks_out.append(np.full(n, tid, dtype=np.int32))
                lips_out.append(np.array([geometry.lips_in_image(lm_by_frame[f], shape)
                                          for f, shape in zip(sp.frames.tolist(), shapes)]))
        frames = np.concatenate(frames_out)
        order = np.argsort(frames, kind="stable")
        targets_uri = paths.lip_targets(self.work_dir, row["video_id"], row["lang"])
        buffer = io.BytesIO()
        np.savez(buffer, frame=frames[order], track=np.concatenate(tracks_out)[order],
                 lips=np.concatenate(lips_out)[order].astype(np.float32))
        uris.write_bytes(targets_uri, buffer.getvalue())

        rendered = set(frames.tolist())
        for s in segments:
            if s.get("speaker_track_id") is not None and s.get("fit_uri"):
                idx = frames_in(times, *line_span_s(s))
                s["lip_frames_rendered"] = int(sum(int(i) in rendered for i in idx))
        return {**row, "segments": segments, "lip_targets_uri": targets_uri, "lip_status": "rendered",
                "lip_reason": reason, "frames_rerendered": len(rendered), "share_rerendered": len(rendered) / len(times)}


def bilabial_closures(segments: list[dict], lang: str) -> list[tuple[float, float]]:
    """Video-time spans in which the dub of a line with a visible speaker says /p/, /b/ or /m/.

    Each line's notes say how many closures were found, or why none could be.
    """
    closures: list[tuple[float, float]] = []
    for s in segments:
        if s.get("speaker_track_id") is None or not s.get("fit_uri"):
            continue
        notes = s["notes"] = list(s.get("notes") or [])
        if not (s.get("target_text") or "").strip():
            notes.append("lips not closed on bilabials: the line has no text to align its phonemes with")
            continue
        with uris.local_copy(s["fit_uri"]) as p:
            speech = audio.read_mono(p, phonemes.ALIGN_RATE_HZ)
        found = phonemes.bilabial_spans(s["target_text"], lang, speech)
        if found is None:
            notes.append(f"lips not closed on bilabials: espeak-ng, the phoneme aligner, has no voice for {lang!r}")
            continue
        closures += [(s["placed_start_s"] + a, s["placed_start_s"] + b) for a, b in found]
        notes.append(f"lips closed on {len(found)} bilabial{'s' if len(found) != 1 else ''} (/p/ /b/ /m/)")
    return closures


def load_targets(targets_uri: str, start_frame: int = 0, end_frame: int | None = None) -> dict[int, tuple[int, np.ndarray]]:
    """Frame -> (track, lip points in the image) of the frames in [start_frame, end_frame) to re-render."""
    with np.load(io.BytesIO(uris.read_bytes(targets_uri))) as data:
        frame, track, lips = data["frame"], data["track"], data["lips"]
    keep = (frame >= start_frame) & (frame < (end_frame if end_frame is not None else np.iinfo(np.int64).max))
    return {int(f): (int(t), l.astype(np.float64)) for f, t, l in zip(frame[keep], track[keep], lips[keep])}


def _reasons(segments: list[dict]) -> str | None:
    """Why lines were left as they were, counted: '2 lines: speaker not visible: ...'."""
    counts = Counter(s["lip_reason"].split(" (")[0] for s in segments if s.get("lip_reason") and s.get("fit_uri"))
    if not counts:
        return None
    return "; ".join(f"{n} line{'s' if n > 1 else ''}: {why}" for why, n in counts.most_common())
