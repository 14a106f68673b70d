"""The shard plan, once per video: consecutive shots packed into shards of about `shards.target_s`.

A shard is the unit of analysis work: each is decoded, transcribed and
face-tracked on its own, by whichever worker is free, so a feature film
spreads over the cluster and no process holds more than a shard's frames.

Where a shard ends is chosen, in this order of preference, among the frames
between `min_s` and `max_s` after its start:
  1. a shot cut that falls in a speech gap (nothing to join: a new picture, no word split);
  2. any shot cut (the picture still joins as it is; ASR's word ownership handles the speech);
  3. inside a shot, in a speech gap, else anywhere: the shot is longer than `max_s`. Such a cut
     gets an overlap margin of `overlap_s` on both sides, analysed by both shards, so a face
     track runs on across it and is joined by the merge.
Among equals, the cut nearest `target_s` wins. The plan depends only on the
video and the settings, so a re-run makes the same shards (and finds their
finished work under the same names).

Speech gaps come from the ASR audio's loudness in 20 ms frames, read in
blocks (a 2-hour film is 7 M samples a minute at 16 kHz; never all at once).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from operators import checkpoint, paths
from operators import uri as uris
from operators.base import Operator, Resources, Stopwatch
from operators.config import ShardsConfig
from operators.media import frame_times
from operators.schema import OK, VIDEO

FRAME_S = 0.02
# Quiet means at most this far above the recording's own floor (its 5th-percentile frame), and below
# half way (in dB) from the floor to its speech (its 95th): a gap between words over music or hum
# counts, room tone does not speak.
QUIET_ABOVE_FLOOR_DB = 10.0

VIDEO_START = "video start"
CUT_IN_GAP = "shot cut in a speech gap"
CUT = "shot cut"
INSIDE_IN_GAP = "inside a shot, in a speech gap"
INSIDE = "inside a shot"


@dataclass(frozen=True)
class Cut:
    frame: int
    kind: str


def quiet_spans(asr_audio_path: str, min_gap_s: float, block_s: float = 60.0) -> list[tuple[float, float]]:
    """Stretches of at least `min_gap_s` where nobody speaks, in seconds from the first frame."""
    import soundfile as sf

    levels = []
    with sf.SoundFile(asr_audio_path) as f:
        hop = max(1, round(FRAME_S * f.samplerate))
        block = hop * max(1, round(block_s / FRAME_S))
        for chunk in f.blocks(blocksize=block, dtype="float32", always_2d=True):
            mono = chunk.mean(axis=1)
            n = len(mono) // hop
            if n:
                power = (mono[:n * hop].reshape(n, hop) ** 2).mean(axis=1)
                levels.append(10 * np.log10(power + 1e-12))
    if not levels:
        return []
    db = np.concatenate(levels)
    floor, speech = np.percentile(db, 5), np.percentile(db, 95)
    threshold = min(floor + QUIET_ABOVE_FLOOR_DB, (floor + speech) / 2)
    quiet = np.concatenate([[False], db < threshold, [False]])
    edges = np.flatnonzero(np.diff(quiet.astype(np.int8)))
    spans = [(a * FRAME_S, b * FRAME_S) for a, b in zip(edges[::2], edges[1::2])]
    return [(a, b) for a, b in spans if b - a >= min_gap_s]


def plan(times_s: np.ndarray, shot_starts: list[int], quiet: list[tuple[float, float]],
         cfg: ShardsConfig) -> list[dict]:
    """Shards covering every frame once: [{start_frame, end_frame, start_s, end_s, cut, margins}].

    `times_s`: every frame's time from the first frame; `shot_starts`: the first
    frame of every shot after the first; `quiet`: speech gaps (s).
    """
    n = len(times_s)
    if n == 0:
        return []
    frame_s = float(np.median(np.diff(times_s))) if n > 1 else 0.04
    end_s = float(times_s[-1]) + frame_s
    gap_starts = np.array([a for a, _ in quiet])
    gap_ends = np.array([b for _, b in quiet])

    def in_gap(t: float) -> bool:
        k = np.searchsorted(gap_starts, t, side="right") - 1
        return bool(k >= 0 and t <= gap_ends[k])

    cuts_at_shots = [Cut(f, CUT_IN_GAP if in_gap(float(times_s[f])) else CUT) for f in sorted(set(shot_starts))
                     if 0 < f < n]
    cuts = [Cut(0, VIDEO_START)]
    start = 0
    while end_s - float(times_s[start]) > cfg.max_s:
        t0 = float(times_s[start])
        lo, hi = t0 + cfg.min_s, min(t0 + cfg.max_s, end_s - cfg.min_s)
        target = t0 + cfg.target_s

        def nearest(candidates: list[Cut]) -> Cut | None:
            inside = [c for c in candidates if lo <= times_s[c.frame] <= hi]
            return min(inside, key=lambda c: abs(times_s[c.frame] - target), default=None)

        cut = (nearest([c for c in cuts_at_shots if c.kind == CUT_IN_GAP])
               or nearest([c for c in cuts_at_shots if c.kind == CUT]))
        if cut is None:
            # A shot longer than max_s: the middle of the speech gap nearest the target, else the target.
            mids = [(a + b) / 2 for a, b in quiet if lo <= (a + b) / 2 <= hi]
            t = min(mids, key=lambda m: abs(m - target), default=None)
            kind = INSIDE_IN_GAP if t is not None else INSIDE
            t = t if t is not None else min(max(target, lo), hi)
            cut = Cut(int(np.clip(np.searchsorted(times_s, t), start + 1, n - 1)), kind)
        cuts.append(cut)
        start = cut.frame
    margin = round(cfg.overlap_s / frame_s)
    shards = []
    for k, cut in enumerate(cuts):
        end = cuts[k + 1].frame if k + 1 < len(cuts) else n
        inside_before = cut.kind in (INSIDE, INSIDE_IN_GAP)
        inside_after = k + 1 < len(cuts) and cuts[k + 1].kind in (INSIDE, INSIDE_IN_GAP)
        shards.append({"shard_index": k, "start_frame": cut.frame, "end_frame": end,
                       "start_s": float(times_s[cut.frame]),
                       "end_s": float(times_s[end]) if end < n else end_s, "cut": cut.kind,
                       "margin_before_frames": min(margin, cut.frame) if inside_before else 0,
                       "margin_after_frames": min(margin, n - end) if inside_after else 0,
                       "status": None, "error": None})
    return shards


class PlanShards(Operator):
    name = "plan"
    reads = ("uri", "shots", "asr_audio_uri", "frame_count")
    writes = ("shards", "frame_times_uri")
    resources = Resources(num_cpus=1)
    output_schema = VIDEO

    def process_row(self, row: dict) -> dict:
        watch = Stopwatch()
        with uris.local_copy(paths.picture(row)) as path:
            times_pts = frame_times(path)
        if len(times_pts) != row["frame_count"]:
            raise RuntimeError(f"the video's packets hold {len(times_pts)} frames, its probe said "
                               f"{row['frame_count']}")
        frame_times_uri = paths.video_work(self.work_dir, row["video_id"], "frame_times.npy")
        uris.write_bytes(frame_times_uri, _npy(times_pts))
        with uris.local_copy(row["asr_audio_uri"]) as path:
            quiet = quiet_spans(path, self.config.shards.min_gap_s)
        shot_starts = [s["start_frame"] for s in row["shots"] or []]
        shards = plan(times_pts - times_pts[0], shot_starts, quiet, self.config.shards)
        row = {**row, "shards": shards, "frame_times_uri": frame_times_uri}
        # The plan phase's checkpoint: the next phases (and a re-run) start from it.
        # (Its own time is in it too: the base class adds that to the row returned, after this.)
        own = watch.timing(self.name)
        checkpoint.save_plan(self.work_dir, {**row, "status": OK,
                                             "timings": list(row.get("timings") or []) + [own]}, self.config)
        return row


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def load_frame_times(frame_times_uri: str) -> np.ndarray:
    """Every frame's presentation time (s, on the stream's clock), as `PlanShards` wrote them."""
    import io

    return np.load(io.BytesIO(uris.read_bytes(frame_times_uri)))
