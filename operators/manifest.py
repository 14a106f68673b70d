"""The manifest: one row per (video, language), as Parquet parts partitioned by language, written as the job runs.

    OUT/manifest/lang=<lang>/part-<run>-<n>.parquet   results (schema RESULT, less `lang`)
    OUT/segments/lang=<lang>/part-<run>-<n>.parquet   one row per dubbed line of those results (SEGMENT_ROW)
    WORK/_results/<video_id>/<lang>.parquet           a result not yet in a part (its marker)

How a result gets there (`ManifestWriter`):
- the moment it leaves the pipeline, it is written as a one-row marker, so a
  job killed a second later loses nothing;
- every `run.manifest_batch_rows` results (or `run.manifest_flush_s`), the
  waiting ones are committed: one segments part, then one manifest part, per
  language. A part is written whole or not at all (one PUT on S3, a rename
  locally), and the manifest part is the commit: a result is in the manifest
  once its row is in a part. Their markers are then removed.
- a job killed before a commit leaves markers; the next job commits them
  first (`ManifestWriter.recover`).

So the manifest is a set of committed files, never rewritten whole, and the
driver holds one batch of rows at a time.

A result made again lands in a newer part while its old row is still in an
older one. Part names sort in the order they were written, and every reader
here (`scan`) takes a key's row from its newest part. `compact`, at the end
of each job, drops the older rows from their parts (each part rewritten at
most once), so that after a job every (video, language) has one row in the
files, which `pipelines.localize.prove_exactly_once` checks. It also applies
changed review thresholds to parts reviewed with other ones (each part's
footer records the review settings it was assessed with).

Resume planning reads only the key, status, fingerprint and output columns
of all parts, side by side (`plan_index`), and checks outputs against one
listing of OUT/videos (`done_keys`).
"""
from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from operators import paths
from operators import uri as uris
from operators.schema import MANIFEST_VERSION, OK, RESULT, SEGMENT_ROW, conform

MARKER_BATCH = 500
OUTPUT_COLUMNS = ("video_out_uri", "dub_audio_uri", "subtitles_out_uri", "subtitles_vtt_uri")
# Outputs written only when a setting asks for them: where the row names one, it must still be there.
OPTIONAL_OUTPUT_COLUMNS = ("subtitles_dual_uri",)
PLAN_COLUMNS = ("video_id", "lang", "status", "manifest_version", "inputs_fingerprint",
                *OUTPUT_COLUMNS, *OPTIONAL_OUTPUT_COLUMNS)
REVIEW_KEY = b"raydub.review"          # a part's footer: the review settings its rows were assessed with
TABLES = {"manifest": RESULT, "segments": SEGMENT_ROW}
# Column statistics only where a filter uses them (a part's footer otherwise holds them for every nested field).
STATISTICS = ["video_id", "status"]
log = logging.getLogger("raydub")


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


# Markers: one result each, until it is committed.

def marker_uri(work_dir: str, video_id: str, lang: str) -> str:
    return paths.marker(work_dir, video_id, lang)


def write_marker(work_dir: str, row: dict) -> None:
    buf = io.BytesIO()
    pq.write_table(conform([public(row)], RESULT), buf)
    uris.write_bytes(marker_uri(work_dir, row["video_id"], row["lang"]), buf.getvalue())


def _marker_files(work_dir: str) -> tuple[object, list[str]]:
    fs, root = uris.filesystem(uris.join(work_dir, "_results"))
    return fs, (sorted(fs.glob(f"{root}/*/*.parquet")) if fs.exists(root) else [])


def read_markers(work_dir: str) -> list[dict]:
    fs, files = _marker_files(work_dir)
    return [row for _, rows in _marker_batches(fs, files) for row in rows]


def _marker_batches(fs, files: list[str]):
    # One request per marker, side by side (s3fs fetches a list of keys concurrently), a batch at a time.
    for i in range(0, len(files), MARKER_BATCH):
        batch = files[i:i + MARKER_BATCH]
        data = fs.cat(batch)
        rows = [r for path in batch for r in pq.read_table(io.BytesIO(data[path])).to_pylist()]
        # An older manifest version's columns are conformed (new ones null); is_done then redoes those rows.
        yield batch, conform(rows, RESULT).to_pylist()


def remove_markers(work_dir: str, keys: list[tuple[str, str]]) -> None:
    if not keys:
        return
    fs = uris.filesystem(work_dir)[0]
    found = [uris.filesystem(marker_uri(work_dir, v, lang))[1] for v, lang in keys]
    if uris.is_local(work_dir):
        found = [p for p in found if fs.exists(p)]
    if found:
        fs.rm(found)                   # on S3 one DeleteObjects per 1,000 keys; a missing key is no error


def clear_markers(work_dir: str) -> int:
    """Remove every result marker. Returns how many there were."""
    fs, files = _marker_files(work_dir)
    if files:
        fs.rm(files)
    return len(files)


# Parts.

def new_run_id() -> str:
    """Sorts after every earlier run's: part names order the rows of one key by when they were written."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"


def part_name(run_id: str, seq: int) -> str:
    return f"part-{run_id}-{seq:06d}.parquet"


def segment_rows(results: list[dict]) -> list[dict]:
    return [{**{k: v for k, v in seg.items() if k != "words"},
             "result_id": r["result_id"], "video_id": r["video_id"], "lang": r["lang"]}
            for r in results for seg in r.get("segments") or []]


def _write_part(uri: str, table: pa.Table, review_print: str | None) -> None:
    if review_print is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), REVIEW_KEY: review_print.encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf, write_statistics=STATISTICS)
    uris.write_bytes(uri, buf.getvalue())


def commit(out_dir: str, rows: list[dict], name: str, review_print: str | None = None) -> None:
    """The rows (made public) as part `name` of each of their languages: its lines first, then the results,
    whose part is the commit."""
    by_lang: dict[str, list[dict]] = {}
    for r in sorted((public(r) for r in rows), key=lambda r: r["video_id"]):
        by_lang.setdefault(r["lang"], []).append(r)
    for lang, results in by_lang.items():
        lines = segment_rows(results)
        if lines:
            _write_part(paths.partition(paths.table_dir(out_dir, "segments"), lang, name),
                        conform(lines, SEGMENT_ROW).drop_columns(["lang"]), None)
        _write_part(paths.partition(paths.table_dir(out_dir, "manifest"), lang, name),
                    conform(results, RESULT).drop_columns(["lang"]), review_print)


class ManifestWriter:
    """Commits results in bounded batches as they finish (see the module's docstring)."""

    def __init__(self, out_dir: str, work_dir: str, review_print: str | None = None, batch_rows: int = 200,
                 flush_s: float = 60.0):
        self.out_dir, self.work_dir, self.review_print = out_dir, work_dir, review_print
        self.batch_rows, self.flush_s = batch_rows, flush_s
        self.run_id, self.seq = new_run_id(), 0
        self.pending: list[dict] = []
        self.last_flush = time.monotonic()
        self.committed = 0

    def add(self, row: dict) -> None:
        write_marker(self.work_dir, row)
        if not self.pending:
            self.last_flush = time.monotonic()     # flush_s counts from the oldest waiting result
        self.pending.append(row)
        if len(self.pending) >= self.batch_rows or time.monotonic() - self.last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.commit(self.pending)
            remove_markers(self.work_dir, [(r["video_id"], r["lang"]) for r in self.pending])
        self.pending, self.last_flush = [], time.monotonic()

    def commit(self, rows: list[dict]) -> None:
        """Rows straight into a part, without markers (rows that need none: a killed job's markers, marks)."""
        for i in range(0, len(rows), self.batch_rows):
            commit(self.out_dir, rows[i:i + self.batch_rows], part_name(self.run_id, self.seq), self.review_print)
            self.seq += 1
        self.committed += len(rows)

    def recover(self) -> int:
        """Commit the markers a killed job left (results it finished but never committed); returns how many."""
        fs, files = _marker_files(self.work_dir)
        for batch, rows in _marker_batches(fs, files):
            self.commit(rows)
            fs.rm(batch)
        return len(files)


# Reading: a key's row from its newest part.

def _dataset(out_dir: str, table: str) -> ds.Dataset | None:
    fs, root = uris.filesystem(paths.table_dir(out_dir, table))
    files = sorted(fs.glob(f"{root}/lang=*/*.parquet")) if fs.exists(root) else []
    if not files:
        return None
    if not uris.is_local(out_dir):
        pa.set_io_thread_count(max(pa.io_thread_count(), 32))     # a GET per part, side by side
    return ds.dataset(files, schema=TABLES[table], filesystem=fs, format="parquet", partition_base_dir=root,
                      partitioning=ds.partitioning(pa.schema([pa.field("lang", pa.string())]), flavor="hive"))


def scan(out_dir: str, columns: list[str] | tuple[str, ...] | None = None, table: str = "manifest",
         filter: pc.Expression | None = None) -> pa.Table:
    """The manifest (or the segments) as one table: the given columns, `lang` among them, of each key's newest
    part. Reads only those columns; `filter` is pushed down to the parts."""
    schema = TABLES[table]
    columns = list(columns or schema.names)
    dataset = _dataset(out_dir, table)
    if dataset is None:
        return schema.empty_table().select(columns)
    found = dataset.to_table(columns=list(dict.fromkeys([*columns, "video_id", "lang", "__filename"])),
                             filter=filter)
    return _newest(found).select(columns)


def _newest(found: pa.Table) -> pa.Table:
    """Rows of each (video, language)'s newest part only (older ones are there until `compact`)."""
    parts = found.group_by(["video_id", "lang"]).aggregate([("__filename", "count_distinct"), ("__filename", "max")])
    if not parts.num_rows or pc.max(parts.column("__filename_count_distinct")).as_py() <= 1:
        return found

    def joined(t: pa.Table, name: str) -> pa.ChunkedArray:
        return pc.binary_join_element_wise(t.column("video_id"), t.column("lang"), t.column(name), "\x00")

    return found.filter(pc.is_in(joined(found, "__filename"), joined(parts, "__filename_max").combine_chunks()))


def read_manifest(out_dir: str) -> list[dict]:
    """Every result as a dict, sorted by (lang, video_id). For inspection and tests: `scan` reads columns."""
    rows = scan(out_dir).sort_by([("lang", "ascending"), ("video_id", "ascending")])
    return rows.to_pylist()


def read_segments(out_dir: str, filter: pc.Expression | None = None) -> list[dict]:
    return scan(out_dir, table="segments", filter=filter).to_pylist()


def write_manifest(out_dir: str, results: list[dict], review_print: str | None = None) -> None:
    """Commit these rows as one new run, then compact: they replace their keys' earlier rows."""
    ManifestWriter(out_dir, "", review_print, batch_rows=max(len(results), 1)).commit(results)
    compact(out_dir)


def previous_results(out_dir: str, work_dir: str) -> dict[tuple[str, str], dict]:
    """The latest known result per (video_id, lang), markers over the manifest. For inspection and tests;
    the driver plans from `plan_index`."""
    found = {(r["video_id"], r["lang"]): r for r in read_manifest(out_dir)}
    found.update({(r["video_id"], r["lang"]): r for r in read_markers(work_dir)})
    return found


# Compaction.

def compact(out_dir: str, review_print: str | None = None,
            review_fn: Callable[[dict], dict] | None = None, workers: int = 16,
            merge_bytes: int = 32 * 2**20, run_id: str | None = None) -> dict[str, int]:
    """Drop rows that a newer part replaced; with `review_fn`, assess again the rows of parts reviewed with
    other settings than `review_print`. Each part is rewritten at most once, the segments part of the same
    name with it. Then parts smaller than `merge_bytes` / 2 are merged, per language, into parts of up to
    about `merge_bytes` (a job in many languages commits small parts: 200 results over 30 languages are 30
    parts of about 7). Returns counts for the job log."""
    dataset = _dataset(out_dir, "manifest")
    if dataset is None:
        return {"parts": 0, "rewritten": 0, "dropped": 0}
    keys = dataset.to_table(columns=["video_id", "lang", "__filename"])
    newest: dict[tuple[str, str], str] = {}
    for v, lang, f in zip(*(keys.column(c).to_pylist() for c in ("video_id", "lang", "__filename"))):
        if f > newest.get((v, lang), ""):
            newest[v, lang] = f
    drop: dict[str, set[str]] = {}
    for v, lang, f in zip(*(keys.column(c).to_pylist() for c in ("video_id", "lang", "__filename"))):
        if newest[v, lang] != f:
            drop.setdefault(f, set()).add(v)
    files = sorted(set(keys.column("__filename").to_pylist()))
    fs = uris.filesystem(paths.table_dir(out_dir, "manifest"))[0]
    stale_review: set[str] = set()
    if review_fn is not None:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            printed = pool.map(lambda f: (pq.read_schema(fs.open(f, "rb")).metadata or {}).get(REVIEW_KEY), files)
            stale_review = {f for f, p in zip(files, printed) if p != (review_print or "").encode()}
    todo = sorted(set(drop) | stale_review)

    def rewrite(path: str) -> int:
        gone = drop.get(path, set())
        with fs.open(path, "rb") as f:
            table = pq.read_table(f)
        kept = table.filter(pc.invert(pc.is_in(table.column("video_id"), pa.array(sorted(gone), pa.string()))))
        if review_fn is not None and path in stale_review:
            lang = path.rsplit("/", 2)[-2].split("=", 1)[1]
            rows = [{k: v for k, v in review_fn({**r, "lang": lang}).items() if k != "lang"}
                    for r in kept.to_pylist()]
            kept = pa.Table.from_pylist(rows, schema=kept.schema)
        seg = path.replace("/manifest/lang=", "/segments/lang=", 1)
        if gone and fs.exists(seg):
            with fs.open(seg, "rb") as f:
                lines = pq.read_table(f)
            lines = lines.filter(pc.invert(pc.is_in(lines.column("video_id"), pa.array(sorted(gone), pa.string()))))
            _replace(fs, seg, lines, None)
        _replace(fs, path, kept, review_print if path in stale_review else None)
        return table.num_rows - kept.num_rows

    with ThreadPoolExecutor(max_workers=workers) as pool:
        dropped = sum(pool.map(rewrite, todo))
    root = uris.filesystem(paths.table_dir(out_dir, "manifest"))[1]
    sizes = {p: info["size"] for p, info in fs.find(root, detail=True).items() if p.endswith(".parquet")}
    merged = _merge_small(fs, sizes, merge_bytes, run_id or new_run_id(), review_print)
    return {"parts": len(files), "rewritten": len(todo), "dropped": dropped, "merged": merged}


def _merge_small(fs, sizes: dict[str, int], merge_bytes: int, run_id: str, review_print: str | None,
                 workers: int = 2) -> int:
    """Small parts of one language into bigger ones: the merged part is written first, then the small ones
    are removed (a reader in between finds the same rows twice and takes the merged part's, the newest).
    Runs after the rewrite, when no key is in two parts. Groups are bounded by their files' bytes, and
    `workers` of them are in memory at once. Returns how many small parts were merged away."""
    by_lang: dict[str, list[str]] = {}
    for path, size in sorted(sizes.items()):
        if size < merge_bytes // 2:
            by_lang.setdefault(path.rsplit("/", 2)[-2], []).append(path)
    groups = []
    for small in by_lang.values():
        group, total = [], 0
        for path in small:
            if group and total + sizes[path] > merge_bytes:
                groups.append(group)
                group, total = [], 0
            group.append(path)
            total += sizes[path]
        groups.append(group)
    groups = [g for g in groups if len(g) > 1]

    def merge(args: tuple[int, list[str]]) -> int:
        seq, group = args
        name = part_name(f"{run_id}-merged", seq)
        try:
            tables = {}
            for table in ("segments", "manifest"):
                paths_ = [p.replace("/manifest/lang=", f"/{table}/lang=", 1) for p in group]
                found = [p for p in paths_ if table == "manifest" or fs.exists(p)]
                parts = []
                for p in found:
                    with fs.open(p, "rb") as f:
                        parts.append(pq.read_table(f).replace_schema_metadata(None))
                tables[table] = pa.concat_tables(parts, promote_options="permissive") if parts else None
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            log.warning("manifest parts %s not merged: %s", group[:2], e)    # parts of other schema versions
            return 0
        folder = group[0].rsplit("/", 1)[0]
        if tables["segments"] is not None and tables["segments"].num_rows:
            _replace(fs, f"{folder.replace('/manifest/lang=', '/segments/lang=', 1)}/{name}", tables["segments"], None)
        _replace(fs, f"{folder}/{name}", tables["manifest"], review_print)
        for p in group:
            seg = p.replace("/manifest/lang=", "/segments/lang=", 1)
            fs.rm([x for x in (seg,) if fs.exists(x)] + [p])
        return len(group)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return sum(pool.map(merge, enumerate(groups)))


def _replace(fs, path: str, table: pa.Table, review_print: str | None) -> None:
    """A part rewritten in place (a reader sees the old or the new), or removed once empty."""
    if not table.num_rows:
        fs.rm(path)
        return
    metadata = dict(table.schema.metadata or {})
    if review_print is not None:
        metadata[REVIEW_KEY] = review_print.encode()
    buf = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), buf, write_statistics=STATISTICS)
    uris.put_bytes(fs, path, buf.getvalue())


# Resume planning.

def plan_index(out_dir: str) -> pa.Table:
    """Each key's newest row, only the columns that planning needs."""
    return scan(out_dir, PLAN_COLUMNS)


def done_keys(rows: list[dict] | pa.Table, out_dir: str | None = None,
              workers: int = 32) -> set[tuple[str, str]]:
    """(video_id, lang) of the rows that are done (`is_done`).

    Outputs under OUT/videos (all of them, unless OUT moved) are looked up in
    one listing of that folder: on S3 a LIST per 1,000 keys, not a HEAD per
    output. Any other output is checked on its own, side by side.
    """
    if not isinstance(rows, pa.Table):
        rows = conform(rows, RESULT).select(PLAN_COLUMNS)
    exists = uris.exists
    if out_dir is not None:
        fs, root = uris.filesystem(paths.videos_dir(out_dir))
        prefix = root.rstrip("/") + "/"
        listed = {p[len(prefix):] for p in fs.find(root)} if fs.exists(root) else set()

        def exists(uri: str) -> bool:
            path = uris.filesystem(uri)[1]
            return path[len(prefix):] in listed if path.startswith(prefix) else uris.exists(uri)

    done = set()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for batch in rows.to_batches(max_chunksize=10_000):         # dicts for 10,000 rows at a time
            chunk = batch.to_pylist()
            done.update((r["video_id"], r["lang"]) for r, ok in zip(chunk, pool.map(lambda r: is_done(r, exists), chunk))
                        if ok)
    return done


def is_done(row: dict, exists=uris.exists) -> bool:
    """Ok, made by this manifest version (an older one lacks its stages), and every output it names is still there."""
    return (row.get("status") == OK and row.get("manifest_version") == MANIFEST_VERSION
            and all(row.get(c) and exists(row[c]) for c in OUTPUT_COLUMNS)
            and all(exists(row[c]) for c in OPTIONAL_OUTPUT_COLUMNS if row.get(c)))
