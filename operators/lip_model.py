"""Once per video: who speaks each line on screen, and how their mouth moves with their voice.

For every source line, the face whose mouth opening follows the line's
speech envelope best is its speaker, if it follows it well enough
(`lips.speaker_min_corr`); a listener's mouth does not, so a line spoken
off screen gets no speaker and its picture is left alone. Lines whose
lips cannot be re-rendered get the reason in `segments.lip_reason`.

Each speaker, a person as the merge recognised them across shots
(`face_tracks.speaker_id`), then gets one lip model fit on the footage of all
their tracks: audio features of the source speech -> their lip shape (see
`lipsync.LipModel`). A line's speaker stays a track (the face on screen, its
landmarks and pixels); its model is its person's. The held-out fit per
speaker and the source's own sync score (mouth vs audio, the reference the
dub is compared with) go into the manifest.
"""
from __future__ import annotations

import io

import numpy as np

from operators import audio
from operators import face_geometry as geometry
from operators import lipsync
from operators import paths
from operators import uri as uris
from operators.base import Operator, Resources
from operators.schema import VIDEO
from operators.faces_file import load as load_faces_file

# A track must cover this share of a line's frames to be its speaker; less means it left or came in.
MIN_LINE_COVERAGE = 0.9
# Offsets (frames) allowed when matching a mouth to a line: landmarks lag a little.
# Real footage's picture can run a few frames off its sound (5 frames: 200 ms at 25 fps, past broadcast
# tolerances); a speaker's mouth is matched to a line's speech over that range.
SPEAKER_MAX_LAG_FRAMES = 5
# A mouth whose opening varies less than this (std, face units) over a line is not speaking it:
# landmark jitter on a still face can correlate with anything, but it does not move this much.
MIN_MOUTH_MOTION = 0.02
MIN_OFFSET_CONFIDENCE = 0.5


def track_series(faces: dict[str, np.ndarray], track_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(frames, landmarks) of one track, in frame order."""
    mask = faces["sample_track"] == track_id
    return faces["sample_frame"][mask], faces["landmarks"][mask].astype(np.float64)


def landmarks_by_frame(faces: dict[str, np.ndarray], track_id: int) -> dict[int, np.ndarray]:
    """Frame index -> landmarks (68, 2) of one track."""
    track_frames, landmarks = track_series(faces, track_id)
    return dict(zip(track_frames.tolist(), landmarks))


def opening_by_frame(faces: dict[str, np.ndarray], track_id: int) -> np.ndarray:
    """Mouth opening of a track at every frame of the video; NaN where it is not tracked."""
    out = np.full(len(faces["frame_times_s"]), np.nan)
    track_frames, landmarks = track_series(faces, track_id)
    out[track_frames] = geometry.mouth_opening(landmarks)
    return out


def speaker_of_tracks(tracks: list[dict]) -> dict[int, int]:
    """Track id -> speaker id (`face_tracks.speaker_id`, set by the merge); a track without one
    (a row from before speakers were recognised) is a speaker of its own."""
    out = {t["track_id"]: t["speaker_id"] for t in tracks if t.get("speaker_id") is not None}
    next_id = max(out.values(), default=-1) + 1
    for t in tracks:
        if t["track_id"] not in out:
            out[t["track_id"]], next_id = next_id, next_id + 1
    return out


def frames_in(times_s: np.ndarray, start_s: float, end_s: float) -> np.ndarray:
    return np.flatnonzero((times_s >= start_s) & (times_s < end_s))


def line_span_s(segment: dict) -> tuple[float, float]:
    """Where a dubbed line is spoken in the source or the dub (the dub may start later or run longer):
    the frames whose lips are re-rendered, measured and shown for it."""
    start, end = segment["start_s"], segment["end_s"]
    if segment.get("placed_start_s") is not None:
        start, end = min(start, segment["placed_start_s"]), max(end, segment["placed_end_s"])
    return start, end


def segment_sync(opening: np.ndarray, envelope: np.ndarray, frame_idx: np.ndarray,
                 max_offset: int) -> np.ndarray:
    """Sync curve of one line: the mouth around the line's frames against its envelope."""
    lo, hi = frame_idx[0], frame_idx[-1] + 1
    a, b = max(0, lo - max_offset), min(len(opening), hi + max_offset)
    mouth = opening[a:b]
    env = np.full(b - a, np.nan)
    env[lo - a:hi - a] = envelope[lo:hi]       # only the line's own speech counts
    return lipsync.sync_curve(mouth, env, max_offset)


class FitLipModel(Operator):
    name = "lip_model"
    reads = ("faces_uri", "face_tracks", "asr_audio_uri", "segments", "fps")
    writes = ("segments.speaker_track_id", "segments.speaker_id", "segments.lip_reason",
              "segments.source_sync_offset_frames", "segments.source_sync_confidence", "lip_models_uri",
              "lip_model_r2", "speakers", "source_sync_offset_frames", "source_sync_confidence")
    resources = Resources(num_cpus=1)
    output_schema = VIDEO

    def process_row(self, row: dict) -> dict:
        cfg = self.config.lips
        faces = load_faces_file(row["faces_uri"], with_crops=False)
        times = faces["frame_times_s"]
        # The 16 kHz track is read a minute at a time, never whole (a feature film's is 350 MB as float64).
        with uris.local_copy(row["asr_audio_uri"]) as path, audio.FileReader(path) as reader:
            if reader.sample_rate_hz != lipsync.SAMPLE_RATE_HZ:
                raise RuntimeError(f"the ASR audio is at {reader.sample_rate_hz} Hz, not {lipsync.SAMPLE_RATE_HZ}")
            envelope = lipsync.envelope_db_of(reader, reader.n_samples, times,
                                              lipsync.frame_window_s(times, row["fps"]))
            features = lipsync.AudioFeatures.of_reader(reader, reader.n_samples, cfg.context_s)
        tracks = {t["track_id"]: t for t in row["face_tracks"] or []}
        openings = {tid: opening_by_frame(faces, tid) for tid in tracks}

        segments = [dict(s) for s in row["segments"]]
        still = bool(row.get("photo_video_uri"))
        for seg in segments:
            if not seg.get("lip_reason"):          # set by the merge where a shard's face analysis failed
                seg.update(self._photo_speaker(seg, times, tracks, openings) if still
                           else self._speaker(seg, times, envelope, tracks, openings))

        speaker_of = speaker_of_tracks(row["face_tracks"] or [])
        for seg in segments:
            tid = seg.get("speaker_track_id")
            seg["speaker_id"] = speaker_of[tid] if tid is not None else None
        speaking = sorted({s["speaker_id"] for s in segments if s.get("speaker_id") is not None})
        models, arrays, lag_s = {}, {}, {}
        for sid in speaking:
            track_frames, landmarks = self._footage(faces, segments, sorted(
                (t for t in tracks.values() if speaker_of[t["track_id"]] == sid),
                key=lambda t: (t["start_frame"], t["track_id"])))
            lips = np.array([geometry.lips_in_face_frame(lm) for lm in landmarks]) if len(landmarks) else None
            # Speech is where the lines are: a level gate cannot tell a quiet voice from a loud background.
            gate = lipsync.within(times[track_frames], [(s["start_s"], s["end_s"]) for s in segments])
            if len(track_frames) < cfg.min_model_frames or still:
                # A photo's mouth never moves: there is nothing of theirs to learn, only where it rests.
                if (cfg.fallback_model or still) and lips is not None:
                    # A photo's landmarks move only with its head and blinks: nothing there to scale or score by.
                    models[sid] = (lipsync.fit_loudness_mouth(sid, lips, np.zeros(0), np.zeros(len(lips), bool))
                                   if still else lipsync.fit_loudness_mouth(sid, lips, envelope[track_frames], gate))
                    arrays.update(models[sid].to_arrays(f"s{sid}_"))
                continue
            # The model learns the mouth against the sound it moved with: where the source's picture runs
            # behind (or ahead of) its sound, by this speaker's own offset. The dub it draws is in sync.
            lag_s[sid] = (_speaker_offset(segments, sid) or 0) / (row.get("fps") or 25.0)
            x = lipsync.normalise_per_track(features.at(times[track_frames] - lag_s[sid]), gate)
            models[sid] = lipsync.fit_lip_model(sid, x, lips, gate, cfg.ridge_alpha)
            arrays.update(models[sid].to_arrays(f"s{sid}_"))
        for seg in segments:
            if seg.get("speaker_id") is not None and seg["speaker_id"] not in models:
                seg.update(speaker_track_id=None, speaker_id=None, lip_reason=(
                    f"too little footage of the speaker to learn their mouth (< {cfg.min_model_frames} frames "
                    "of their lines and silence)"))

        lip_models_uri = None
        if models:
            lip_models_uri = paths.video_work(self.work_dir, row["video_id"], "lip_models.npz")
            modelled = sorted(tid for tid, sid in speaker_of.items() if sid in models)
            buffer = io.BytesIO()
            np.savez(buffer, speaker_ids=np.array(sorted(models), dtype=np.int32),
                     track_ids=np.array(modelled, dtype=np.int32),
                     track_speaker_ids=np.array([speaker_of[t] for t in modelled], dtype=np.int32), **arrays)
            uris.write_bytes(lip_models_uri, buffer.getvalue())

        spoken = [s for s in segments if s.get("speaker_track_id") is not None]
        offset, confidence = lipsync.sync_score(
            [s.pop("_source_curve") for s in spoken],
            [s["end_s"] - s["start_s"] for s in spoken])
        for s in segments:
            s.pop("_source_curve", None)
        r2 = [m.heldout_r2 for m in models.values() if m.kind == "speaker"]
        people = [{"speaker_id": sid, "track_ids": sorted(t for t, s in speaker_of.items() if s == sid),
                   "lip_model_frames": models[sid].frames if sid in models else None,
                   "lip_model_r2": _finite(models[sid].heldout_r2) if sid in models else None,
                   "lip_model_kind": models[sid].kind if sid in models else None,
                   "source_offset_frames": round(lag_s[sid] * (row.get("fps") or 25.0)) if sid in lag_s else None}
                  for sid in sorted(set(speaker_of.values()))]
        return {**row, "segments": segments, "lip_models_uri": lip_models_uri,
                "lip_model_r2": float(np.mean(r2)) if r2 else None, "speakers": people,
                "source_sync_offset_frames": offset, "source_sync_confidence": confidence}

    @staticmethod
    def _footage(faces: dict[str, np.ndarray], segments: list[dict],
                 tracks: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """(frames, landmarks) one speaker's model learns from: every track of theirs, in time order."""
        times = faces["frame_times_s"]
        frames, landmarks = [], []
        for track in tracks:
            tid = track["track_id"]
            track_frames, track_landmarks = track_series(faces, tid)
            # Learn from this track's own lines and from silence, not from while someone else
            # speaks: the mouth on this track is shut then, whatever the audio says.
            others = [(s["start_s"], s["end_s"]) for s in segments if s.get("speaker_track_id") != tid]
            own = ~lipsync.within(times[track_frames], others)
            frames.append(track_frames[own])
            landmarks.append(track_landmarks[own])
        if not frames:
            return np.zeros(0, np.int64), np.zeros((0, 68, 2))
        return np.concatenate(frames), np.concatenate(landmarks)

    def _on_screen(self, seg: dict, times: np.ndarray,
                   openings: dict[int, np.ndarray]) -> tuple[np.ndarray, dict[int, float]] | dict:
        """The line's frames and each track's share of them on screen; or, for a line too short, the reason."""
        cfg = self.config.lips
        idx = frames_in(times, seg["start_s"], seg["end_s"])
        if len(idx) < cfg.min_segment_frames:
            return {"lip_reason": f"line too short to re-render ({len(idx)} frames < {cfg.min_segment_frames})"}
        return idx, {tid: float(np.isfinite(op[idx]).mean()) for tid, op in openings.items()}

    def _photo_speaker(self, seg: dict, times: np.ndarray, tracks: dict[int, dict],
                       openings: dict[int, np.ndarray]) -> dict:
        """A talking photo's speaker is its largest face (its mouth never moved, so none follows the speech)."""
        seen = self._on_screen(seg, times, openings)
        if isinstance(seen, dict):
            return seen
        _, on_screen = seen
        on_screen = {tid: c for tid, c in on_screen.items()
                     if c >= MIN_LINE_COVERAGE and tracks[tid]["face_height_px"] >= self.config.faces.min_face_px}
        if not on_screen:
            return {"lip_reason": "no face found in the photo large enough to re-render "
                                  f"(>= {self.config.faces.min_face_px} px)"}
        best = max(on_screen, key=lambda tid: tracks[tid]["face_height_px"])
        return {"speaker_track_id": best, "lip_reason": None,
                "_source_curve": np.full(2 * self.config.score.sync_max_offset_frames + 1, np.nan),
                "source_sync_offset_frames": None, "source_sync_confidence": None}

    def _speaker(self, seg: dict, times: np.ndarray, envelope: np.ndarray, tracks: dict[int, dict],
                 openings: dict[int, np.ndarray]) -> dict:
        cfg = self.config.lips
        seen = self._on_screen(seg, times, openings)
        if isinstance(seen, dict):
            return seen
        idx, on_screen = seen
        on_screen = {tid: c for tid, c in on_screen.items() if c > 0}
        if not on_screen:
            return {"lip_reason": "no face on screen during the line"}
        small = {tid: tracks[tid]["face_height_px"] for tid in on_screen
                 if tracks[tid]["face_height_px"] < self.config.faces.min_face_px}
        if len(small) == len(on_screen):
            return {"lip_reason": f"face too small to re-render ({max(small.values()):.0f} px "
                                  f"< {self.config.faces.min_face_px} px)"}
        on_screen = {tid: c for tid, c in on_screen.items() if tid not in small}
        scored = {}
        for tid in on_screen:
            if np.nanstd(openings[tid][idx]) < MIN_MOUTH_MOTION:
                scored[tid] = -1.0
                continue
            curve = segment_sync(openings[tid], envelope, idx, SPEAKER_MAX_LAG_FRAMES)
            scored[tid] = float(np.nanmax(curve)) if np.isfinite(curve).any() else -1.0
        best = max(scored, key=scored.get)
        if scored[best] < cfg.speaker_min_corr:
            moving = {tid: r for tid, r in scored.items() if r > -1.0}
            detail = (f"best r={max(moving.values()):.2f} < {cfg.speaker_min_corr}" if moving
                      else "no visible mouth moves")
            return {"lip_reason": f"speaker not visible: no face's mouth follows the line's speech ({detail})"}
        track = tracks[best]
        if on_screen[best] < MIN_LINE_COVERAGE:
            return {"lip_reason": f"the speaker's face is tracked for only {on_screen[best]:.0%} of the line "
                                  f"({track['end_reason']})"}
        curve = segment_sync(openings[best], envelope, idx, self.config.score.sync_max_offset_frames)
        offset, confidence = lipsync.sync_score([curve], [1.0])
        return {"speaker_track_id": best, "lip_reason": None, "_source_curve": curve,
                "source_sync_offset_frames": offset, "source_sync_confidence": confidence}


def _finite(x: float) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _speaker_offset(segments: list[dict], speaker_id: int) -> int | None:
    """The source's own mouth-to-sound offset over one speaker's lines (frames; positive: the mouth after)."""
    spoken = [s for s in segments if s.get("speaker_id") == speaker_id and s.get("_source_curve") is not None]
    offset, confidence = lipsync.sync_score([s["_source_curve"] for s in spoken],
                                            [s["end_s"] - s["start_s"] for s in spoken])
    # Only an offset the mouth clearly shows: a weak curve's peak is anywhere.
    return offset if confidence is not None and confidence >= MIN_OFFSET_CONFIDENCE else None
