"""Every output and work path that a catalog value goes into, built in one place.

Catalog values (video ids, language codes) are written by people and scripts
outside raydub, and on a cluster the workers can write wherever the job's
role can. So no stage joins them into a path by hand: each path below is
built from ids by `under`, which accepts only plain file-name parts and
checks that the result stays under its root (OUT or the work dir). The
catalog's own validation keeps ids and codes clean; this is the second
line, where the files are actually written.

Paths are derived from ids and positions only, never by editing another
path: two different (video, language, line) can never name the same file.

    WORK/<video_id>/source.wav, asr16k.wav, frame_times.npy, plan.parquet,
                    faces.json, lip_models.npz                          per video
    WORK/<video_id>/shards/<shard:04d>/faces.npz, analysis.parquet      per shard
    WORK/<video_id>/<lang>/<line:04d>.tts.wav, .fit.wav                  per line and language
    WORK/<video_id>/render/<lang>.mp4 (.mov, .mkv)                     re-rendered picture
    WORK/<video_id>/render/<lang>/targets.npz, <shard:04d>.mp4         its plan and its shards
    WORK/_results/<video_id>/<lang>.parquet                             result markers
    OUT/videos/<video_id>/<video_id>.<lang>.mp4 (.mov, .mkv; .wav, .srt, .vtt, .dual.vtt) outputs
    OUT/manifest/lang=<lang>/part-<run>-<n>.parquet                     manifest parts (operators/manifest.py)
    OUT/segments/lang=<lang>/part-<run>-<n>.parquet                     their lines, one part per manifest part
"""
from __future__ import annotations

import os
import posixpath
import re

from operators import uri as uris

# A file or folder name: no separators, no "..", nothing a shell or URL treats specially.
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._=-]{0,199}")
# raydub's own folder names may also start with "_" (_results), which no id or code can.
_OWN_PART = re.compile(r"_?[A-Za-z0-9][A-Za-z0-9._=-]{0,199}")


class UnsafePath(ValueError):
    """A catalog value would make a path outside OUT or the work dir: a bug upstream, or an attack."""


def _normalized(uri: str) -> str:
    if uris.is_local(uri):
        return os.path.normpath(os.path.abspath(uris.strip_file(uri)))
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://{posixpath.normpath(rest)}"


def _safe(part: object, pattern: re.Pattern = _PART) -> str:
    if not isinstance(part, str) or not pattern.fullmatch(part) or ".." in part:
        raise UnsafePath(f"{part!r} is not a safe file name (1-200 of A-Z a-z 0-9 . _ = -, "
                         f"starting with a letter or digit, no '..')")
    return part


def under(root: str, *parts: str) -> str:
    """root/part/part/...; each part a plain name, and the result inside root, else UnsafePath."""
    for part in parts:
        _safe(part, _OWN_PART)
    path = uris.join(root, *parts)
    base, full = _normalized(root), _normalized(path)
    if not full.startswith(base.rstrip("/" + os.sep) + ("/" if not uris.is_local(root) else os.sep)):
        raise UnsafePath(f"{path!r} is outside {root!r}")
    return path


# --- the work dir ---------------------------------------------------------------

def video_work(work_dir: str, video_id: str, name: str) -> str:
    """A per-video artifact (source audio, faces, lip models, caches)."""
    return under(work_dir, _safe(video_id), name)


def shard_work(work_dir: str, video_id: str, shard_index: int, name: str) -> str:
    """A per-shard artifact (its faces part, its analysis checkpoint)."""
    return under(work_dir, _safe(video_id), "shards", f"{int(shard_index):04d}", name)


def line_audio(work_dir: str, video_id: str, lang: str, line: int, stage: str, wording: int | None = None) -> str:
    """One dubbed line's audio as a stage left it: stage 'tts' (synthesized) or 'fit' (as placed).

    `wording` k names the TTS of the line's k-th alternative translation (a shorter one tried for fit).
    """
    if stage not in ("tts", "fit"):
        raise ValueError(f"unknown line audio stage {stage!r}")
    alt = "" if wording is None else f".alt{int(wording)}"
    return under(work_dir, _safe(video_id), _safe(lang), f"{int(line):04d}{alt}.{stage}.wav")


def rendered_video(work_dir: str, video_id: str, lang: str, suffix: str = ".mp4") -> str:
    """The re-rendered picture, its shards stitched; suffix: the output container's ('.mp4', '.mov', '.mkv')."""
    return under(work_dir, _safe(video_id), "render", f"{_safe(lang)}{suffix}")


def rendered_shard(work_dir: str, video_id: str, lang: str, shard_index: int, suffix: str = ".mp4") -> str:
    """One shard of the re-rendered picture."""
    return under(work_dir, _safe(video_id), "render", _safe(lang), f"{int(shard_index):04d}{suffix}")


def picture(row: dict) -> str:
    """The source picture every stage decodes: the video, or the one made from a talking photo."""
    return row.get("photo_video_uri") or row["uri"]


def render_quality(work_dir: str, video_id: str, lang: str, shard_index: int) -> str:
    """The visual scores of one shard's re-rendered frames (operators/visual.py)."""
    return under(work_dir, _safe(video_id), "render", _safe(lang), f"{int(shard_index):04d}.quality.npz")


def lip_targets(work_dir: str, video_id: str, lang: str) -> str:
    """The planned mouth shapes of every frame to re-render."""
    return under(work_dir, _safe(video_id), "render", _safe(lang), "targets.npz")


def marker(work_dir: str, video_id: str, lang: str) -> str:
    return under(work_dir, "_results", _safe(video_id), f"{_safe(lang)}.parquet")


# --- OUT --------------------------------------------------------------------------

def output(out_dir: str, video_id: str, lang: str, suffix: str) -> str:
    """A finished output: suffix '.mp4', '.mov', '.mkv' (the video, per output.container), '.wav', '.srt', '.vtt'
    or '.dual.vtt' / '.dual.srt' (subtitles.dual). A language code is a BCP 47 tag (never 'dual', never
    with a dot), so no two collide."""
    return under(videos_dir(out_dir), _safe(video_id), f"{video_id}.{_safe(lang)}{suffix}")


def videos_dir(out_dir: str) -> str:
    """The folder that holds every video's outputs (`output`)."""
    return under(out_dir, "videos")


def table_dir(out_dir: str, table: str) -> str:
    """OUT/manifest or OUT/segments: a Parquet table partitioned by language (operators/manifest.py)."""
    if table not in ("manifest", "segments"):
        raise UnsafePath(f"no table {table!r}")
    return under(out_dir, table)


def out_lock(out_dir: str) -> str:
    """The running job's lock (operators/lock.py)."""
    return under(out_dir, "_lock.json")


def partition(root: str, lang: str, part: str = "part-0.parquet") -> str:
    """One file of one language of a Parquet table partitioned by language (manifest/, segments/)."""
    return under(root, f"lang={_safe(lang)}", part)
