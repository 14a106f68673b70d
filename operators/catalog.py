"""Read and validate a catalog before any Ray work (format: catalogs/README.md).

Everything that is wrong with the catalog itself (a missing column, a bad or
duplicate video_id, an unknown language code) is reported at once, all
problems together, each naming the row and the field. Problems with a
video's media (missing, corrupt, silent) are per-video and end up as failed
or skipped manifest rows instead.
"""
from __future__ import annotations

import csv
import io
import json
import re

import pyarrow as pa

from operators import languages, uri as uris
from operators.schema import CATALOG, conform

VIDEO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
SUBTITLE_EXTENSIONS = (".srt", ".vtt")
REQUIRED = ("video_id", "uri")
OPTIONAL = ("target_langs", "source_lang", "source_subtitles_uri", "audio_track", "audio_uri", "replace_lines")
# A `uri` with one of these is a still photo: with the speech in `audio_uri`, it becomes a talking video.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
TRANSLATED_PREFIX = "subtitles_uri_"
MAX_REPORTED = 25


class CatalogError(ValueError):
    pass


def read_rows(catalog_uri: str) -> list[dict]:
    """Raw rows of a Parquet, CSV or JSONL catalog, in file order."""
    lower = uris.path_of(catalog_uri).lower()
    try:
        data = uris.read_bytes(catalog_uri)
    except FileNotFoundError:
        raise CatalogError(f"{uris.redacted(catalog_uri)}: catalog file not found") from None
    if lower.endswith(".parquet"):
        import pyarrow.parquet as pq

        try:
            return pq.read_table(pa.BufferReader(data)).to_pylist()
        except pa.ArrowException as e:
            raise CatalogError(f"{uris.redacted(catalog_uri)}: not a readable Parquet file: {e}") from None
    text = data.decode("utf-8-sig")
    if lower.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        rows = []
        for row in reader:
            if None in row:
                raise CatalogError(f"{uris.redacted(catalog_uri)}: row {len(rows) + 1}: more fields than the header has")
            rows.append({k.strip(): (v.strip() if v is not None and v.strip() != "" else None)
                         for k, v in row.items()})
        return rows
    if lower.endswith((".jsonl", ".ndjson", ".json")):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise CatalogError(f"{uris.redacted(catalog_uri)}: line {n}: not valid JSON: {e.msg}") from None
            if not isinstance(row, dict):
                raise CatalogError(f"{uris.redacted(catalog_uri)}: line {n}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
        return rows
    raise CatalogError(f"{uris.redacted(catalog_uri)}: unknown catalog format; use .parquet, .csv or .jsonl")


def _lang_list(value) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        items = [v for v in re.split(r"[,\s]+", value) if v]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise TypeError(f"expected a list of language codes or a comma-separated string, got {value!r}")
    return items


def parse_langs(value: str | list[str] | None, where: str = "--langs") -> list[str]:
    """Validated, normalised, de-duplicated language codes (order kept)."""
    out: list[str] = []
    for code in _lang_list(value) or []:
        try:
            code = languages.checked(code)
        except ValueError as e:
            raise CatalogError(f"{where}: {e}") from None
        if code not in out:
            out.append(code)
    return out


def _audio_track(value) -> str:
    """A track number ("2", 0-based among the file's audio tracks) or the language its tag names ("de", "ger")."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or str(value).strip() == "":
        raise ValueError(f"{value!r}: expected a track number (0 = the first audio track) or a language code")
    value = str(value).strip()
    if value.isdigit():
        return str(int(value))
    if value.startswith("-"):
        raise ValueError(f"{value!r}: track numbers start at 0")
    return languages.base(languages.checked(languages.from_track_tag(value) or value))


def is_image(value) -> bool:
    """A still photo, by the path's extension."""
    return isinstance(value, str) and uris.path_of(value).lower().endswith(IMAGE_EXTENSIONS)


def _is_subtitles(value) -> bool:
    """An .srt or .vtt file, by the path's extension (a presigned URL's query comes after it)."""
    return isinstance(value, str) and uris.path_of(value).lower().endswith(SUBTITLE_EXTENSIONS)


def _replaced_lines(value, catalog_uri: str) -> list[dict]:
    """ADR lines: a list (or, in a CSV, a JSON string of one) of {start_s, end_s, text | audio_uri}."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ValueError(f"not a JSON list of lines: {e.msg}") from None
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of lines, each {start_s, end_s, text or audio_uri}")
    lines = []
    for k, line in enumerate(value, 1):
        if not isinstance(line, dict):
            raise ValueError(f"line {k}: expected an object with start_s, end_s and text or audio_uri")
        start, end = line.get("start_s"), line.get("end_s")
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (start, end)) \
                or not 0 <= start < end:
            raise ValueError(f"line {k}: start_s and end_s must be seconds with 0 <= start_s < end_s, got "
                             f"{start!r} and {end!r}")
        text, audio = line.get("text"), line.get("audio_uri")
        if not (isinstance(text, str) and text.strip()) and not (isinstance(audio, str) and audio.strip()):
            raise ValueError(f"line {k} ({start}-{end} s): give its new text or audio_uri")
        unknown = sorted(set(line) - {"start_s", "end_s", "text", "audio_uri"})
        if unknown:
            raise ValueError(f"line {k}: unknown field(s) {', '.join(unknown)}")
        lines.append({"start_s": float(start), "end_s": float(end),
                      "text": text.strip() if isinstance(text, str) and text.strip() else None,
                      "audio_uri": uris.resolve(audio, catalog_uri) if isinstance(audio, str) and audio.strip() else None})
    lines.sort(key=lambda x: x["start_s"])
    for a, b in zip(lines, lines[1:]):
        if b["start_s"] < a["end_s"]:
            raise ValueError(f"lines {a['start_s']}-{a['end_s']} s and {b['start_s']}-{b['end_s']} s overlap")
    return lines


def load_catalog(catalog_uri: str, default_langs: list[str] | None = None) -> pa.Table:
    """The validated catalog as an Arrow table of schema CATALOG, or CatalogError."""
    rows = read_rows(catalog_uri)
    if not rows:
        raise CatalogError(f"{uris.redacted(catalog_uri)}: the catalog has no rows")
    columns = set().union(*(r.keys() for r in rows))
    errors: list[str] = []
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        raise CatalogError(f"{uris.redacted(catalog_uri)}: missing required column(s) {', '.join(missing)}; "
                           f"found {', '.join(sorted(columns))}")
    unknown = sorted(c for c in columns
                     if c not in REQUIRED + OPTIONAL and not c.startswith(TRANSLATED_PREFIX))
    if unknown:
        raise CatalogError(f"{uris.redacted(catalog_uri)}: unknown column(s) {', '.join(unknown)}; columns are "
                           f"{', '.join(REQUIRED + OPTIONAL)} and {TRANSLATED_PREFIX}<lang>")

    seen: dict[str, int] = {}
    out = []
    for n, raw in enumerate(rows, 1):
        vid = raw.get("video_id")
        where = f"row {n}" + (f" (video_id {vid!r})" if isinstance(vid, str) else "")

        def bad(field: str, msg: str) -> None:
            errors.append(f"{where}, field {field}: {msg}")

        if not isinstance(vid, str) or not VIDEO_ID.fullmatch(vid):
            bad("video_id", f"{vid!r} is not a valid id: use 1-128 of A-Z a-z 0-9 . _ -, starting with a "
                "letter or digit (ids name output files, so no slashes or '..')")
        elif vid.lower() in seen:
            # Ids name files: 'Ep1' and 'ep1' are the same file on a case-insensitive disk (macOS, Windows).
            same = "duplicate of" if rows[seen[vid.lower()] - 1].get("video_id") == vid else "differs only in case from"
            bad("video_id", f"{same} row {seen[vid.lower()]}")
        else:
            seen[vid.lower()] = n
        video_uri = raw.get("uri")
        if not isinstance(video_uri, str) or not video_uri.strip():
            bad("uri", "missing or empty")
            video_uri = None
        try:
            langs = parse_langs(raw.get("target_langs"), where=f"{where}, field target_langs")
        except (CatalogError, TypeError) as e:
            errors.append(str(e))
            langs = []
        langs = langs or list(default_langs or [])
        if not langs and raw.get("replace_lines") is None:
            bad("target_langs", "no target languages: give target_langs in the catalog or --langs")
        source_lang = raw.get("source_lang")
        if source_lang is not None:
            try:
                source_lang = languages.checked(source_lang)
            except ValueError as e:
                bad("source_lang", str(e))
        src_subs = raw.get("source_subtitles_uri")
        if src_subs is not None:
            if not _is_subtitles(src_subs):
                bad("source_subtitles_uri", f"{uris.redacted(src_subs)!r}: expected an .srt or .vtt file")
            elif source_lang is None:
                bad("source_lang", "required when source_subtitles_uri is given (subtitles do not say their language)")
        audio_track = raw.get("audio_track")
        if audio_track is not None:
            try:
                audio_track = _audio_track(audio_track)
            except ValueError as e:
                bad("audio_track", str(e))
        audio_uri = raw.get("audio_uri")
        if audio_uri is not None and (not isinstance(audio_uri, str) or not audio_uri.strip()):
            bad("audio_uri", "expected the URI of an audio file")
            audio_uri = None
        if video_uri is not None and is_image(video_uri) and audio_uri is None:
            bad("audio_uri", "a photo (uri is an image) needs the speech it is to say: give audio_uri")
        elif audio_uri is not None and not is_image(video_uri):
            bad("audio_uri", "only a photo (uri an image) takes its speech from audio_uri; a video's own audio "
                "is dubbed (audio_track picks among its tracks)")
        replace_lines = None
        if raw.get("replace_lines") is not None:
            try:
                replace_lines = _replaced_lines(raw["replace_lines"], catalog_uri)
            except ValueError as e:
                bad("replace_lines", str(e))
            if source_lang is None:
                bad("source_lang", "required when replace_lines is given (the lines are re-voiced in it)")
            elif source_lang not in langs:
                langs = (langs if raw.get("target_langs") else []) + [source_lang]
        translations = []
        for key in sorted(k for k in raw if k.startswith(TRANSLATED_PREFIX)):
            value = raw[key]
            if value is None:
                continue
            try:
                lang = languages.checked(key[len(TRANSLATED_PREFIX):])
            except ValueError as e:
                bad(key, f"in the column name: {e}")
                continue
            if not _is_subtitles(value):
                bad(key, f"{uris.redacted(value)!r}: expected an .srt or .vtt file")
            else:
                translations.append({"lang": lang,
                                     "subtitles_uri": uris.resolve(value, catalog_uri)})
        if video_uri is None:
            continue
        out.append({
            "video_id": vid,
            "uri": uris.resolve(video_uri, catalog_uri),
            "target_langs": langs,
            "source_lang": source_lang,
            "source_subtitles_uri": uris.resolve(src_subs, catalog_uri) if isinstance(src_subs, str) else None,
            "audio_track": audio_track,
            "audio_uri": uris.resolve(audio_uri, catalog_uri) if isinstance(audio_uri, str) else None,
            "translations": translations,
            "replace_lines": replace_lines,
            "catalog_row": n,
        })
    if errors:
        shown = errors[:MAX_REPORTED]
        more = f"\n... and {len(errors) - MAX_REPORTED} more" if len(errors) > MAX_REPORTED else ""
        raise CatalogError(f"{uris.redacted(catalog_uri)}: {len(errors)} problem(s):\n  " + "\n  ".join(shown) + more)
    return conform(out, CATALOG)
