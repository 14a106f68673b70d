"""The faces file: one module owns its format, its writer and its reader.

Each shard's face tracking writes a part (npz) with the frames it owns:

  frame_times_s (F,)            time of each owned frame, from the video's first frame
  sample_track, sample_frame    (N,) which track and (video) frame each landmark row is
  landmarks (N, 68, 2)          smoothed, image pixels
  crops_<track> (M, h, w, 3)    mouth crops, a fixed size per track and part
  crop_frame_<track> (M,)       their frames; crop_origin_<track> (M, 2): top-left in the frame
  margin_track, margin_frame, margin_landmarks
                                the same for frames past the shard's edges (cuts inside a shot),
                                where the neighbouring shard owns the frames: used only to join tracks
  embedding_track (T,)          tracks with an identity embedding (a backend that cannot embed: none)
  embeddings (T, D)             each one's mean L2-normalised embedding over the frames sampled, normalised
  embedding_frames (T,)         how many frames that mean is of (to weigh pieces of a joined track)
  same_identity_distance ()     the embedding model's own threshold: two embeddings closer are one
                                person (NaN without embeddings)

The merge writes the video's faces file, a small JSON index of the parts (in
frame order), of the tracks it joined across cuts inside a shot, and of the
speaker (face identity across shots) of each track:

  {"frame_times_uri": uri, "parts": [uri, ...], "part_shards": [shard index of each part, ...],
   "same_track": {"<track id>": <the id it continues>, ...},
   "speaker_of_track": {"<track id>": <speaker id>, ...}}

`load` reads either (a part alone, as tests and old work dirs have it) and
returns the whole video's arrays, keyed as in a part, with joined tracks under
one id. Its size grows with the frames that hold faces, at 544 bytes a face
and frame plus the crops: tens of MB for a film, never frames.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np

from operators import uri as uris

SAMPLE_KEYS = ("sample_track", "sample_frame", "landmarks")
# Track ids of shard k start at k * this: unique in the video without any coordination, and a
# track's id names the shard (and so the part) it began in.
TRACK_IDS_PER_SHARD = 10000
# Mouth crops of one track read from all its parts together, at most.
MAX_CROPS_LOADED = 600
MARGIN_KEYS = ("margin_track", "margin_frame", "margin_landmarks")
EMBEDDING_KEYS = ("embedding_track", "embeddings", "embedding_frames", "same_identity_distance")


@dataclass(frozen=True)
class Embeddings:
    """One part's track identities: track id -> (mean embedding, frames it is the mean of)."""
    by_track: dict[int, tuple[np.ndarray, int]]
    same_identity_distance: float | None


def write_part(faces_uri: str, times_s: np.ndarray, samples: dict[str, np.ndarray],
               crops: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
               margins: dict[str, np.ndarray] | None = None, embeddings: Embeddings | None = None) -> None:
    """samples: SAMPLE_KEYS arrays; crops: track -> (crops, frames, origins); margins: MARGIN_KEYS arrays."""
    arrays: dict[str, np.ndarray] = {"frame_times_s": np.asarray(times_s, dtype=np.float64)}
    arrays["sample_track"] = np.asarray(samples["sample_track"], dtype=np.int32)
    arrays["sample_frame"] = np.asarray(samples["sample_frame"], dtype=np.int64)
    arrays["landmarks"] = np.asarray(samples["landmarks"], dtype=np.float32).reshape(-1, 68, 2)
    for tid, (images, frames, origins) in crops.items():
        arrays[f"crops_{tid}"] = images
        arrays[f"crop_frame_{tid}"] = np.asarray(frames, dtype=np.int64)
        arrays[f"crop_origin_{tid}"] = np.asarray(origins, dtype=np.int64)
    margins = margins or {"margin_track": [], "margin_frame": [], "margin_landmarks": np.zeros((0, 68, 2))}
    arrays["margin_track"] = np.asarray(margins["margin_track"], dtype=np.int32)
    arrays["margin_frame"] = np.asarray(margins["margin_frame"], dtype=np.int64)
    arrays["margin_landmarks"] = np.asarray(margins["margin_landmarks"], dtype=np.float32).reshape(-1, 68, 2)
    embeddings = embeddings or Embeddings({}, None)
    tracks = sorted(embeddings.by_track)
    arrays["embedding_track"] = np.array(tracks, dtype=np.int32)
    arrays["embeddings"] = (np.array([embeddings.by_track[t][0] for t in tracks], dtype=np.float32)
                            if tracks else np.zeros((0, 0), np.float32))
    arrays["embedding_frames"] = np.array([embeddings.by_track[t][1] for t in tracks], dtype=np.int32)
    arrays["same_identity_distance"] = np.float64(
        np.nan if embeddings.same_identity_distance is None else embeddings.same_identity_distance)
    uris.write_bytes(faces_uri, _npz(arrays))


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    """What np.savez_compressed writes, at zlib level 1 rather than 6: on a 2-minute 1080p shard's part
    (270 MB of arrays, mostly mouth crops), 6.8 s against 10.6 s, for a file 5% larger (136 MB)."""
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for key, value in arrays.items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
    return buffer.getvalue()


def read_part(faces_uri: str, keys: tuple[str, ...] | None = None, crops_of: set[int] | None = None
              ) -> dict[str, np.ndarray]:
    """The arrays of a part: all, or `keys` plus the crops of the tracks in `crops_of` (an npz
    decompresses only the arrays read)."""
    def wanted(k: str) -> bool:
        if keys is None:
            return True
        if crops_of and k.startswith(("crops_", "crop_frame_", "crop_origin_")):
            return int(k.rsplit("_", 1)[1]) in crops_of
        return k in keys

    with np.load(io.BytesIO(uris.read_bytes(faces_uri))) as data:
        return {k: data[k] for k in data.files if wanted(k)}


def read_embeddings(faces_uri: str) -> Embeddings:
    """A part's track identities (none in a part written before they were kept)."""
    part = read_part(faces_uri, EMBEDDING_KEYS)
    if "embedding_track" not in part or not len(part["embedding_track"]):
        return Embeddings({}, None)
    by_track = {int(t): (e.astype(np.float64), int(n))
                for t, e, n in zip(part["embedding_track"], part["embeddings"], part["embedding_frames"])}
    return Embeddings(by_track, float(part["same_identity_distance"]))


def write_index(faces_uri: str, frame_times_uri: str, parts: list[str], same_track: dict[int, int],
                speaker_of_track: dict[int, int] | None = None, part_shards: list[int] | None = None) -> None:
    """The video's faces file: its frame times (every frame, whether a part covers it or not), parts
    (and the shard of each), joined tracks and each (joined) track's speaker."""
    uris.write_bytes(faces_uri, json.dumps({
        "frame_times_uri": frame_times_uri, "parts": parts, "part_shards": part_shards,
        "same_track": {str(k): v for k, v in same_track.items()},
        "speaker_of_track": {str(k): v for k, v in (speaker_of_track or {}).items()}}).encode())


def speaker_of_track(faces_uri: str) -> dict[int, int]:
    """Track id -> speaker id, as the merge wrote it; empty for a part alone (no speakers known)."""
    if not faces_uri.endswith(".json"):
        return {}
    index = json.loads(uris.read_bytes(faces_uri))
    return {int(k): int(v) for k, v in index.get("speaker_of_track", {}).items()}


def load(faces_uri: str, with_crops: bool = True, crops_of: set[int] | None = None,
         for_shard: int | None = None) -> dict[str, np.ndarray]:
    """The whole video's face arrays (see the module doc), from a part or an index of parts.

    Mouth crops are the bulk of it: `with_crops=False` leaves them all out, `crops_of` keeps those of
    the tracks given (ids as returned, after joins). `for_shard` reads only what one shard's render
    needs: that shard's part, and the parts where the tracks of `crops_of` were seen (their crops and
    the landmarks of their frames); a film's every render does not read every part.
    """
    keys = ("frame_times_s",) + SAMPLE_KEYS
    if not faces_uri.endswith(".json"):
        return read_part(faces_uri, None if with_crops and crops_of is None else keys, crops_of)
    index = json.loads(uris.read_bytes(faces_uri))
    same = {int(k): int(v) for k, v in index["same_track"].items()}
    times_pts = np.load(io.BytesIO(uris.read_bytes(index["frame_times_uri"])))
    samples = {k: [] for k in SAMPLE_KEYS}
    crops: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    wanted_parts = None if crops_of is None else {t for t, root in same.items() if root in crops_of} | crops_of
    parts = index["parts"]
    if for_shard is not None and index.get("part_shards") is not None:
        shards = {for_shard} | {t // TRACK_IDS_PER_SHARD for t in wanted_parts or ()}
        parts = [uri for uri, k in zip(parts, index["part_shards"]) if k in shards]
    for part_uri in parts:
        part = read_part(part_uri, None if with_crops and crops_of is None else keys,
                         wanted_parts if with_crops else None)
        for k in SAMPLE_KEYS:
            samples[k].append(part[k])
        for key in part:
            if key.startswith("crops_"):
                tid = int(key.removeprefix("crops_"))
                # A face on screen for a whole film would bring every shard's crops: each part gives
                # an even share of MAX_CROPS_LOADED, so the bank stays bounded (the renderer keeps
                # fewer still, spread over the mouth's openings).
                keep = _evenly(len(part[key]), -(-MAX_CROPS_LOADED // len(index["parts"])))
                crops.setdefault(same.get(tid, tid), []).append(
                    (part[key][keep], part[f"crop_frame_{tid}"][keep], part[f"crop_origin_{tid}"][keep]))
    out: dict = {"frame_times_s": times_pts - times_pts[0]}
    for k in SAMPLE_KEYS:
        out[k] = np.concatenate(samples[k]) if samples[k] else np.zeros((0, 68, 2) if k == "landmarks" else 0)
    out["sample_track"] = np.array([same.get(int(t), int(t)) for t in out["sample_track"]], dtype=np.int32)
    for tid, pieces in crops.items():
        # A track joined across a cut has a crop size per part; the renderer takes crops as a list.
        sizes = {p[0].shape[1:] for p in pieces}
        images = [c for p in pieces for c in p[0]]
        out[f"crops_{tid}"] = np.stack(images) if len(sizes) == 1 else images
        out[f"crop_frame_{tid}"] = np.concatenate([p[1] for p in pieces])
        out[f"crop_origin_{tid}"] = np.concatenate([p[2] for p in pieces])
    return out


def _evenly(n: int, most: int) -> np.ndarray:
    """Indices of at most `most` of n items, evenly spread (all of them when n <= most)."""
    if n <= most:
        return np.arange(n)
    return np.linspace(0, n - 1, most).round().astype(np.int64)
