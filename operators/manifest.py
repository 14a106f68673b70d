"""The manifest: one row per (video, language), as Parquet partitioned by language.

While a run goes on, each finished result is written as a one-row marker
under WORK/_results/ the moment it leaves the pipeline, so nothing finished
is lost if the job dies; the manifest is rebuilt from the markers at the
end, and the markers are then removed (the manifest holds them). A re-run reads the markers (or, without them, the manifest) and skips
pairs that are ok and whose outputs still exist.

    OUT/manifest/lang=<lang>/part-0.parquet   results (schema RESULT)
    OUT/segments/lang=<lang>/part-0.parquet   one row per dubbed segment (schema SEGMENT_ROW)
"""
from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from operators import paths
from operators import uri as uris
from operators.schema import MANIFEST_VERSION, OK, RESULT, SEGMENT_ROW, conform

MARKER_BATCH = 500
OUTPUT_COLUMNS = ("video_out_uri", "dub_audio_uri", "subtitles_out_uri", "subtitles_vtt_uri")
# Outputs written only when a setting asks for them: where the row names one, it must still be there.
OPTIONAL_OUTPUT_COLUMNS = ("subtitles_dual_uri",)


def public(row: dict) -> dict:
    """The row as it may be stored and shown: catalog URIs and every message redacted (uri.redacted).

    Rows carry the catalog's URIs as given, credentials included, since the
    stages read the media through them; every row is made public here before
    it is written (marker, manifest, segments) or printed.
    """
    row = dict(row)
    for key in ("uri", "source_subtitles_uri", "audio_uri"):
        row[key] = uris.redacted(row.get(key))
    if row.get("replace_lines"):
        row["replace_lines"] = [{**x, "audio_uri": uris.redacted(x.get("audio_uri"))} for x in row["replace_lines"]]
    if any(s.get("replacement_audio_uri") for s in row.get("segments") or []):
        row["segments"] = [{**s, "replacement_audio_uri": uris.redacted(s.get("replacement_audio_uri"))}
                           for s in row["segments"]]
    row["translations"] = [{**t, "subtitles_uri": uris.redacted(t.get("subtitles_uri"))}
                           for t in row.get("translations") or []]
    row["models"] = [{**m, "source": uris.redacted(m.get("source"))} for m in row.get("models") or []]
    row["error"] = uris.redact_text(row.get("error"))
    row["review_reasons"] = [uris.redact_text(r) for r in row.get("review_reasons") or []]
    return row


def marker_uri(work_dir: str, video_id: str, lang: str) -> str:
    return paths.marker(work_dir, video_id, lang)


def write_marker(work_dir: str, row: dict) -> None:
    buf = io.BytesIO()
    pq.write_table(conform([public(row)], RESULT), buf)
    uris.write_bytes(marker_uri(work_dir, row["video_id"], row["lang"]), buf.getvalue())


def read_markers(work_dir: str) -> list[dict]:
    fs, root = uris.filesystem(uris.join(work_dir, "_results"))
    if not fs.exists(root):
        return []
    rows = []
    paths = sorted(fs.glob(f"{root}/*/*.parquet"))
    # One request per marker, side by side (s3fs fetches a list of keys concurrently), a batch at a time.
    for i in range(0, len(paths), MARKER_BATCH):
        batch = paths[i:i + MARKER_BATCH]
        data = fs.cat(batch)
        for path in batch:
            rows.extend(pq.read_table(io.BytesIO(data[path])).to_pylist())
    # An older manifest version's columns are conformed (new ones null); is_done then redoes those rows.
    return conform(rows, RESULT).to_pylist()


def clear_markers(work_dir: str) -> int:
    """Remove every result marker, once the manifest holds their rows: a resume then reads the manifest's
    few files, not one marker per result. Returns how many were removed."""
    fs, root = uris.filesystem(uris.join(work_dir, "_results"))
    if not fs.exists(root):
        return 0
    paths = fs.glob(f"{root}/*/*.parquet")
    if paths:
        fs.rm(paths)
    return len(paths)


def read_manifest(out_dir: str) -> list[dict]:
    return _read_partitioned(uris.join(out_dir, "manifest"), RESULT)


def read_segments(out_dir: str) -> list[dict]:
    return _read_partitioned(uris.join(out_dir, "segments"), SEGMENT_ROW)


def _read_partitioned(root_uri: str, schema: pa.Schema) -> list[dict]:
    fs, root = uris.filesystem(root_uri)
    if not fs.exists(root):
        return []
    rows = []
    for path in sorted(fs.glob(f"{root}/lang=*/*.parquet")):
        lang = path.rsplit("/", 2)[-2].split("=", 1)[1]
        with fs.open(path, "rb") as f:
            table = pq.read_table(f)
        rows.extend({**r, "lang": lang} for r in table.to_pylist())
    return conform(rows, schema).to_pylist()


def segment_rows(results: list[dict]) -> list[dict]:
    return [{**{k: v for k, v in seg.items() if k != "words"},
             "result_id": r["result_id"], "video_id": r["video_id"], "lang": r["lang"]}
            for r in results for seg in r.get("segments") or []]


def write_manifest(out_dir: str, results: list[dict]) -> None:
    """Rewrite OUT/manifest and OUT/segments, one file per language (the language is the folder)."""
    results = sorted(results, key=lambda r: (r["lang"], r["video_id"]))
    results = [public(r) for r in results]
    _write_partitioned(uris.join(out_dir, "manifest"), conform(results, RESULT))
    _write_partitioned(uris.join(out_dir, "segments"), conform(segment_rows(results), SEGMENT_ROW))


def _write_partitioned(root_uri: str, table: pa.Table) -> None:
    fs, root = uris.filesystem(root_uri)
    langs = sorted(set(table.column("lang").to_pylist())) if table.num_rows else []
    if fs.exists(root):
        for stale in fs.glob(f"{root}/lang=*"):
            if stale.rsplit("=", 1)[1] not in langs:
                fs.rm(stale, recursive=True)
    for lang in langs:
        part = table.filter(pc.equal(table.column("lang"), lang)).drop_columns(["lang"])
        buf = io.BytesIO()
        pq.write_table(part, buf)
        uris.write_bytes(paths.partition(root_uri, lang), buf.getvalue())


def previous_results(out_dir: str, work_dir: str) -> dict[tuple[str, str], dict]:
    """The latest known result per (video_id, lang): markers over the manifest."""
    found = {(r["video_id"], r["lang"]): r for r in read_manifest(out_dir)}
    found.update({(r["video_id"], r["lang"]): r for r in read_markers(work_dir)})
    return found


def done_keys(rows: list[dict], out_dir: str | None = None, workers: int = 32) -> set[tuple[str, str]]:
    """(video_id, lang) of the rows that are done (`is_done`).

    Outputs under OUT/videos (all of them, unless OUT moved) are looked up in
    one listing of that folder: on S3 a LIST per 1,000 keys, not a HEAD per
    output. Any other output is checked on its own, side by side.
    """
    from concurrent.futures import ThreadPoolExecutor

    exists = uris.exists
    if out_dir is not None:
        fs, root = uris.filesystem(paths.videos_dir(out_dir))
        listed = set(fs.find(root)) if fs.exists(root) else set()
        prefix = root.rstrip("/") + "/"

        def exists(uri: str) -> bool:
            path = uris.filesystem(uri)[1]
            return path in listed if path.startswith(prefix) else uris.exists(uri)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        flags = list(pool.map(lambda r: is_done(r, exists), rows))
    return {(r["video_id"], r["lang"]) for r, done in zip(rows, flags) if done}


def is_done(row: dict, exists=uris.exists) -> bool:
    """Ok, made by this manifest version (an older one lacks its stages), and every output it names is still there."""
    return (row.get("status") == OK and row.get("manifest_version") == MANIFEST_VERSION
            and all(row.get(c) and exists(row[c]) for c in OUTPUT_COLUMNS)
            and all(exists(row[c]) for c in OPTIONAL_OUTPUT_COLUMNS if row.get(c)))
