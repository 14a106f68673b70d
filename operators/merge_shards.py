"""Merge, once per video: its shards' analyses become its video row again, on small data only.

- Lines: in time order; a line cut at a join (the speaker went on across it)
  is joined again; overlaps are tidied as within a shard.
- Faces: the parts stay where the shards wrote them; the video's faces file is
  an index of them (operators/faces_file.py). A track cut at a join inside a
  shot is joined to its continuation by their landmarks in the overlap margin,
  which both shards tracked.
- Speakers: the video's tracks are grouped by their identity embeddings
  (average linkage, up to the embedding model's own same-person distance), so
  one person is one speaker in every shot: one lip model learns from all their
  footage, and they are recognised after a cut. Two tracks on screen at the
  same time are never one speaker (a mirror, a twin). A track without an
  embedding is a speaker of its own. Speakers are numbered by first appearance.
- Language: where the source language was not given, the one most shards heard.
- A shard whose ASR failed fails the video (its lines would be missing from the
  dub), naming its time range. A shard whose faces failed leaves its lines'
  lips as they are, with the reason, and the rest of the video is dubbed.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from operators import checkpoint, faces_file, paths
from operators.base import Operator, Resources, RowError, SkipRow, summed_timings
from operators.plan_shards import load_frame_times
from operators.schema import FAILED, OK, VIDEO, segment_id
from operators.subtitles import join_texts
from operators.track_faces import coverage
from operators.transcribe import tidy_segments

# Two tracks are one face when their landmark boxes overlap this much, on average, in the margin.
SAME_FACE_IOU = 0.5
FACES_FAILED = "face analysis failed for this part of the video"


class MergeShards(Operator):
    name = "merge"
    reads = ("video_id",)
    writes = ("segments", "faces_uri", "face_tracks", "face_coverage", "shards", "detected_lang",
              "lang_probability", "source_lang")
    resources = Resources(num_cpus=0.5, memory_gb=1.0)
    output_schema = VIDEO

    def process_row(self, row: dict) -> dict:
        planned = checkpoint.kept_plan(self.work_dir, row, self.config)
        if planned is None:
            raise RuntimeError("the video's plan is missing from the work dir (removed while the job ran?)")
        parts = []
        for k, shard in enumerate(planned["shards"]):
            part = checkpoint.read(checkpoint.shard_uri(self.work_dir, row["video_id"], k),
                                   checkpoint.shard_print(planned, self.config))
            if part is None:
                raise RuntimeError(f"shard {k} ({_range(shard)}) has no analysis: it did not come back "
                                   f"(lost worker?); re-run to retry")
            parts.append(part)
        shards = [{**shard, "status": part["status"] or OK, "error": _shard_error(shard, part)}
                  for shard, part in zip(planned["shards"], parts)]
        deaf = [s for s, p in zip(shards, parts) if p["status"] == FAILED and p["error_stage"] != "faces"]
        if deaf:
            raise RowError("; ".join(s["error"] for s in deaf))

        notes = list(planned.get("source_notes") or [])
        blind = [s for s, p in zip(shards, parts) if p["status"] == FAILED]
        notes += [f"lips left as they are in {s['error']}" for s in blind]

        segments = _join_lines(parts, shards, row["video_id"], self.config.asr.split_pause_s)
        for seg in segments:
            mid = (seg["start_s"] + seg["end_s"]) / 2
            if any(s["start_s"] <= mid < s["end_s"] for s in blind):
                seg["lip_reason"] = FACES_FAILED
        if not segments:
            raise SkipRow("no speech found in the source audio")

        ok_parts = [(s, p) for s, p in zip(shards, parts) if p["status"] != FAILED]
        same = _same_tracks(ok_parts)
        tracks = _joined_tracks([t for _, p in ok_parts for t in p["face_tracks"] or []], same)
        speakers = speaker_ids(tracks, *_track_embeddings([p["faces_uri"] for _, p in ok_parts], same))
        tracks = [{**t, "speaker_id": speakers[t["track_id"]]} for t in tracks]
        faces_uri = paths.video_work(self.work_dir, row["video_id"], "faces.json")
        faces_file.write_index(faces_uri, planned["frame_times_uri"], [p["faces_uri"] for _, p in ok_parts], same,
                               speakers, [s["shard_index"] for s, _ in ok_parts])
        times = load_frame_times(planned["frame_times_uri"])

        heard = Counter()
        for p in parts:
            heard[p["detected_lang"]] += len(p["segments"] or [])
        lang = heard.most_common(1)[0][0] if heard else planned.get("source_lang")
        probability = [p["lang_probability"] for p in parts if p["detected_lang"] == lang
                       and p["lang_probability"] is not None]
        models = []
        for m in [m for p in parts for m in p["models"] or []] + list(planned.get("models") or []):
            if m not in models:
                models.append(m)
        return {**planned, **{k: row.get(k) for k in checkpoint.LIVE_FIELDS},
                "status": None, "segments": segments, "source_notes": notes, "shards": shards,
                "detected_lang": lang, "lang_probability": float(np.mean(probability)) if probability else None,
                "source_lang": planned.get("source_lang") or lang,
                "faces_uri": faces_uri, "face_tracks": tracks,
                "face_coverage": coverage(segments, times - times[0], tracks),
                "models": models,
                "timings": list(planned.get("timings") or []) + summed_timings([t for p in parts for t in p["timings"] or []])}


def _range(shard: dict) -> str:
    def clock(t: float) -> str:
        return f"{int(t // 3600)}:{int(t % 3600 // 60):02d}:{t % 60:05.2f}"
    return f"{clock(shard['start_s'])}-{clock(shard['end_s'])}"


def _shard_error(shard: dict, part: dict) -> str | None:
    if part["status"] != FAILED:
        return None
    return f"shard {shard['shard_index']} ({_range(shard)}), at {part['error_stage']}: {part['error']}"


def _join_lines(parts: list[dict], shards: list[dict], video_id: str, pause_s: float) -> list[dict]:
    """Every shard's lines in order; a line cut at a join, with less than a pause between its halves, whole."""
    lines: list[dict] = []
    for k, part in enumerate(parts):
        mine = sorted(part["segments"] or [], key=lambda s: s["start_s"])
        join_s = shards[k]["start_s"]
        if lines and mine and k > 0:
            a, b = lines[-1], mine[0]
            if b["start_s"] - a["end_s"] < pause_s and a["end_s"] >= join_s - pause_s and b["start_s"] <= join_s + pause_s:
                words = list(a["words"] or []) + list(b["words"] or [])
                lines[-1] = {**a, "end_s": max(a["end_s"], b["end_s"]), "words": words,
                             "source_text": join_texts([a["source_text"], b["source_text"]]),
                             "notes": list(a.get("notes") or []) + list(b.get("notes") or []) + [
                                 f"joined across the shard cut at {join_s:.2f} s"]}
                mine = mine[1:]
        lines += mine
    lines = tidy_segments(lines, "line") if lines else []
    return [{**s, "segment_id": segment_id(video_id, s["start_s"], s["end_s"])} for s in lines]


def _boxes(landmarks: np.ndarray) -> np.ndarray:
    return np.concatenate([landmarks.min(axis=1), landmarks.max(axis=1)], axis=1)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
    inter = w * h
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def _same_tracks(parts: list[tuple[dict, dict]]) -> dict[int, int]:
    """Track id -> the id of the track it continues, across cuts inside a shot (by the margins' landmarks)."""
    same: dict[int, int] = {}
    for (sa, pa_), (sb, pb) in zip(parts, parts[1:]):
        if sb["shard_index"] != sa["shard_index"] + 1 or not sb["margin_before_frames"]:
            continue
        a = faces_file.read_part(pa_["faces_uri"], faces_file.SAMPLE_KEYS + faces_file.MARGIN_KEYS)
        b = faces_file.read_part(pb["faces_uri"], faces_file.SAMPLE_KEYS + faces_file.MARGIN_KEYS)
        # Each side's view of the overlap: a's margin past the cut against b's own frames, and b's
        # margin before the cut against a's own frames.
        views_a = _by_track(np.concatenate([a["sample_track"], a["margin_track"]]),
                            np.concatenate([a["sample_frame"], a["margin_frame"]]),
                            np.concatenate([a["landmarks"], a["margin_landmarks"]]))
        views_b = _by_track(np.concatenate([b["sample_track"], b["margin_track"]]),
                            np.concatenate([b["sample_frame"], b["margin_frame"]]),
                            np.concatenate([b["landmarks"], b["margin_landmarks"]]))
        scores = []
        for ta, (fa, la) in views_a.items():
            for tb, (fb, lb) in views_b.items():
                common, ia, ib = np.intersect1d(fa, fb, return_indices=True)
                if len(common):
                    scores.append((float(_iou(_boxes(la[ia]), _boxes(lb[ib])).mean()), ta, tb))
        used_a, used_b = set(), set()
        for score, ta, tb in sorted(scores, reverse=True):
            if score < SAME_FACE_IOU or ta in used_a or tb in used_b:
                continue
            used_a.add(ta)
            used_b.add(tb)
            same[tb] = same.get(ta, ta)
    return same


def _by_track(track: np.ndarray, frame: np.ndarray, landmarks: np.ndarray) -> dict[int, tuple]:
    out = {}
    for tid in np.unique(track):
        mask = track == tid
        order = np.argsort(frame[mask])
        out[int(tid)] = (frame[mask][order], landmarks[mask][order])
    return out


def _joined_tracks(tracks: list[dict], same: dict[int, int]) -> list[dict]:
    """Track summaries with a continued track as one: first start, last end, its end reason."""
    groups: dict[int, list[dict]] = defaultdict(list)
    for t in tracks:
        groups[same.get(t["track_id"], t["track_id"])].append(t)
    out = []
    for tid, pieces in groups.items():
        pieces.sort(key=lambda t: t["start_frame"])
        frames = [t["end_frame"] - t["start_frame"] for t in pieces]
        out.append({**pieces[0], "track_id": tid, "end_frame": pieces[-1]["end_frame"],
                    "end_s": pieces[-1]["end_s"], "end_reason": pieces[-1]["end_reason"],
                    "face_height_px": float(np.average([t["face_height_px"] for t in pieces], weights=frames))})
    return sorted(out, key=lambda t: (t["start_frame"], t["track_id"]))


def _track_embeddings(part_uris: list[str], same: dict[int, int]) -> tuple[dict[int, np.ndarray], float | None]:
    """Each (joined) track's identity: its pieces' embeddings weighed by their frames; and the distance
    within which two are one person (the strictest the parts name)."""
    sums: dict[int, np.ndarray] = {}
    limits = []
    for uri in part_uris:
        part = faces_file.read_embeddings(uri)
        if part.same_identity_distance is not None:
            limits.append(part.same_identity_distance)
        for tid, (vector, frames) in part.by_track.items():
            key = same.get(tid, tid)
            sums[key] = sums.get(key, 0.0) + frames * vector
    vectors = {tid: v / max(float(np.linalg.norm(v)), 1e-12) for tid, v in sums.items()}
    return vectors, (min(limits) if limits else None)


def speaker_ids(tracks: list[dict], embeddings: dict[int, np.ndarray], max_distance: float | None) -> dict[int, int]:
    """Track id -> speaker id, numbered 0, 1, ... in order of first appearance (`tracks` in time order)."""
    known = [t for t in tracks if t["track_id"] in embeddings and max_distance is not None]
    group_of: dict[int, int] = {}
    if known:
        vectors = np.array([embeddings[t["track_id"]] for t in known])
        starts = np.array([t["start_frame"] for t in known])
        ends = np.array([t["end_frame"] for t in known])
        together = (starts[:, None] < ends[None, :]) & (starts[None, :] < ends[:, None])
        group_of = dict(zip((t["track_id"] for t in known), cluster_identities(vectors, together, max_distance)))
    # A track without an embedding is a group of its own.
    keys = {t["track_id"]: ("group", group_of[t["track_id"]]) if t["track_id"] in group_of
            else ("track", t["track_id"]) for t in tracks}
    numbers: dict[tuple, int] = {}
    return {tid: numbers.setdefault(key, len(numbers)) for tid, key in keys.items()}


def cluster_identities(vectors: np.ndarray, apart: np.ndarray, max_distance: float) -> list[int]:
    """Average-linkage clusters of unit vectors (n, d): a group index per row, groups numbered by first row.

    Groups join, closest first, while their mean pairwise distance is at most `max_distance`;
    rows marked `apart` (n, n) never end up in one group. scipy's linkage has no such constraint,
    so this is the plain loop with the Lance-Williams update, O(n^2) a step: 1500 tracks take ~20 s.
    """
    n = len(vectors)
    squared = (vectors * vectors).sum(axis=1)
    dist = np.sqrt(np.clip(squared[:, None] + squared[None, :] - 2 * vectors @ vectors.T, 0.0, None))
    dist[apart] = np.inf
    np.fill_diagonal(dist, np.inf)
    size = np.ones(n)
    root = np.arange(n)
    for _ in range(n - 1):
        i, j = divmod(int(np.argmin(dist)), n)
        if not dist[i, j] <= max_distance:
            break
        i, j = min(i, j), max(i, j)
        # An infinite distance (apart, or a group already gone) stays infinite in the mean.
        merged = (size[i] * dist[i] + size[j] * dist[j]) / (size[i] + size[j])
        dist[i, :] = dist[:, i] = merged
        dist[j, :] = dist[:, j] = np.inf
        dist[i, i] = np.inf
        size[i] += size[j]
        root[root == j] = i
    numbers: dict[int, int] = {}
    return [numbers.setdefault(int(r), len(numbers)) for r in root]
