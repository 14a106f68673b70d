import os

import pyarrow as pa

from operators import manifest
from operators.schema import MANIFEST_VERSION, RESULT, empty_segment, result_id


def _row(vid, lang, status="ok", **extra):
    seg = empty_segment(segment_id=f"{vid}@1", start_s=1.0, end_s=2.0, source_text="hi", words=[],
                        target_text="hola", speech_rate=1.2, wer=0.0)
    return {"video_id": vid, "uri": f"/m/{vid}.mp4", "lang": lang, "status": status,
            "result_id": result_id(vid, lang), "manifest_version": MANIFEST_VERSION, "segments": [seg],
            "timings": [{"stage": "probe", "wall_s": 0.5}], **extra}


def test_manifest_round_trips_partitioned_by_language():
    out = "memory://raydub-manifest/out"
    rows = [_row("a", "es"), _row("a", "de", status="failed", error_stage="probe", error="MediaError: x"),
            _row("b", "es", wer=0.25)]
    manifest.write_manifest(out, rows)
    back = {(r["video_id"], r["lang"]): r for r in manifest.read_manifest(out)}
    assert set(back) == {("a", "es"), ("a", "de"), ("b", "es")}
    assert back["a", "de"]["error"] == "MediaError: x"
    assert back["b", "es"]["wer"] == 0.25
    assert back["a", "es"]["segments"][0]["target_text"] == "hola"
    assert list(back["a", "es"].keys()) == RESULT.names
    segs = manifest.read_segments(out)
    assert sorted((s["video_id"], s["lang"], s["speech_rate"]) for s in segs) == [
        ("a", "de", 1.2), ("a", "es", 1.2), ("b", "es", 1.2)]
    # rows written again replace their keys' rows; the others stay
    manifest.write_manifest(out, [{**rows[0], "wer": 0.5}])
    again = manifest.read_manifest(out)
    assert sorted((r["video_id"], r["lang"], r["wer"]) for r in again) == [
        ("a", "de", None), ("a", "es", 0.5), ("b", "es", 0.25)]
    assert len(manifest.read_segments(out)) == 3


def test_markers_are_read_back_and_only_complete_results_count_as_done(tmp_path):
    work = str(tmp_path / "work")
    video = tmp_path / "a.es.mp4"
    video.write_bytes(b"x")
    dual = tmp_path / "a.es.dual.vtt"
    dual.write_text("WEBVTT\n")
    outputs = {"video_out_uri": str(video), "dub_audio_uri": str(video), "subtitles_out_uri": str(video),
               "subtitles_vtt_uri": str(video)}
    manifest.write_marker(work, _row("a", "es", **outputs))
    manifest.write_marker(work, _row("b", "es"))
    manifest.write_marker(work, _row("c", "es", **outputs, subtitles_dual_uri=str(dual)))
    found = manifest.previous_results(str(tmp_path / "out"), work)
    assert manifest.is_done(found["a", "es"])          # no dual file asked for: none needed
    assert not manifest.is_done(found["b", "es"])      # ok, but its outputs are not there
    assert manifest.is_done(found["c", "es"])
    dual.unlink()
    assert not manifest.is_done(found["c", "es"])      # it names a dual file that is gone
    video.unlink()
    assert not manifest.is_done(found["a", "es"])


def test_a_pair_the_pipeline_did_not_return_becomes_a_failed_row():
    from operators.config import Config
    from pipelines.localize import _not_returned

    todo = [{"video_id": "a", "uri": "/m/a.mp4", "target_langs": ["es", "de"]}]
    (lost,) = _not_returned(todo, {("a", "es")}, {("a", "es"): "p-es", ("a", "de"): "p-de"}, Config())
    assert (lost["lang"], lost["status"], lost["error_stage"]) == ("de", "failed", "pipeline")
    assert lost["inputs_fingerprint"] == "p-de" and "run.max_task_retries (2)" in lost["error"]


def test_the_parquet_files_carry_the_manifest_schema(tmp_path):
    import pyarrow.parquet as pq

    from operators.schema import SEGMENT_ROW

    out = str(tmp_path / "out")
    manifest.write_manifest(out, [_row("a", "es", speaker_similarity=0.91, mouth_change_ratio=1.2)])
    (part,) = (tmp_path / "out" / "manifest" / "lang=es").iterdir()
    written = pq.read_schema(part)
    assert written.equals(pa.schema([f for f in RESULT if f.name != "lang"]))
    segments = pq.read_schema(tmp_path / "out" / "segments" / "lang=es" / part.name)
    assert segments.equals(pa.schema([f for f in SEGMENT_ROW if f.name != "lang"]))
    back = manifest.read_manifest(out)[0]
    assert (back["speaker_similarity"], back["mouth_change_ratio"], back["manifest_version"]) == (0.91, 1.2,
                                                                                                MANIFEST_VERSION)


def test_results_of_an_older_manifest_version_are_read_and_redone(tmp_path):
    """A v2 marker lacks v3's columns (top level and per segment): it reads with them null and is not done."""
    import io

    import pyarrow.parquet as pq

    from operators import uri as uris

    work, video = str(tmp_path / "work"), tmp_path / "a.es.mp4"
    video.write_bytes(b"x")
    old = _row("a", "es", video_out_uri=str(video), dub_audio_uri=str(video), subtitles_out_uri=str(video))
    old["manifest_version"] = "2"
    old_segment = pa.struct([f for f in RESULT.field("segments").type.value_type if f.name != "speaker_similarity"])
    old_schema = pa.schema([pa.field("segments", pa.list_(old_segment)) if f.name == "segments" else f
                            for f in RESULT if f.name not in ("speaker_similarity", "mouth_change_ratio")])
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([old], schema=old_schema), buf)
    uris.write_bytes(manifest.marker_uri(work, "a", "es"), buf.getvalue())
    found = manifest.previous_results(str(tmp_path / "out"), work)["a", "es"]
    assert found["speaker_similarity"] is None and found["segments"][0]["speaker_similarity"] is None
    assert found["segments"][0]["target_text"] == "hola"
    assert not manifest.is_done(found)


def test_segment_notes_reach_both_tables_and_an_older_marker_reads_them_null(tmp_path):
    import io

    import pyarrow.parquet as pq

    from operators import uri as uris

    out, work = str(tmp_path / "out"), str(tmp_path / "work")
    row = _row("a", "es")
    row["segments"][0]["notes"] = ["source cue trimmed by 0.040 s: it overlapped the next one, at 2.000 s"]
    manifest.write_manifest(out, [row])
    assert manifest.read_manifest(out)[0]["segments"][0]["notes"] == row["segments"][0]["notes"]
    assert manifest.read_segments(out)[0]["notes"] == row["segments"][0]["notes"]

    old_segment = pa.struct([f for f in RESULT.field("segments").type.value_type if f.name != "notes"])
    old_schema = pa.schema([pa.field("segments", pa.list_(old_segment)) if f.name == "segments" else f
                            for f in RESULT])
    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([_row("b", "es")], schema=old_schema), buf)
    uris.write_bytes(manifest.marker_uri(work, "b", "es"), buf.getvalue())
    found = manifest.previous_results(out, work)["b", "es"]
    assert found["segments"][0]["notes"] is None and found["segments"][0]["target_text"] == "hola"


def test_a_result_fingerprint_follows_its_inputs_and_output_settings_only():
    from operators.checkpoint import result_print
    from operators.config import Config

    row = {"video_id": "a", "uri": "s3://b/a.mp4?X-Amz-Signature=abc", "source_lang": "en",
           "translations": [{"lang": "de", "subtitles_uri": "a.de.srt"}, {"lang": "es", "subtitles_uri": "a.es.srt"}]}
    config = Config()
    base = result_print(row, "de", config)
    assert result_print(row, "de", Config()) == base
    # A presigned URL signed again is the same object.
    assert result_print({**row, "uri": "s3://b/a.mp4?X-Amz-Signature=xyz"}, "de", config) == base
    assert result_print(row, "es", config) != base
    changed_inputs = [{**row, "uri": "s3://b/a-v2.mp4"}, {**row, "source_lang": "fr"},
                      {**row, "translations": [{"lang": "de", "subtitles_uri": "a.de.v2.srt"}]},
                      {**row, "replace_lines": [{"start_s": 1.0, "end_s": 2.0, "text": "Hi."}]}]
    assert all(result_print(r, "de", config) != base for r in changed_inputs)
    # Another language's subtitles are not this result's input.
    assert result_print({**row, "translations": row["translations"][:1]}, "de", config) == base
    for section, values in {"tts": {"backend": "espeak-ng"}, "fit": {"max_speedup": 1.2}, "lips": {"mode": "tight"},
                            "mix": {"sample_rate_hz": 44100}}.items():
        assert result_print(row, "de", config.with_overrides(**{section: values})) != base, section
    # Where and how it runs, and how it is reviewed, do not change what is made.
    for section, values in {"run": {"resume": False, "num_cpus": 4}, "review": {"max_wer": 0.1}}.items():
        assert result_print(row, "de", config.with_overrides(**{section: values})) == base, section


def test_an_ok_result_being_made_again_is_marked_so_until_it_is(tmp_path):
    """A job killed while it redoes a pair must not leave the old ok row to be kept by the next run."""
    from operators.config import Config
    from pipelines.localize import REDOING, mark_redoing

    out = str(tmp_path / "out")
    video = tmp_path / "a.es.mp4"
    video.write_bytes(b"x")
    manifest.write_manifest(out, [{**_row("a", "es"), **{c: str(video) for c in manifest.OUTPUT_COLUMNS}}])
    assert manifest.done_keys(manifest.plan_index(out), out) == {("a", "es")}
    writer = manifest.ManifestWriter(out, str(tmp_path / "work"))
    mark_redoing([{"video_id": "a", "uri": "/m/a.mp4", "target_langs": ["es", "de"]}], {("a", "es")},
                 {("a", "es"): "p-es", ("a", "de"): "p-de"}, writer, Config())
    (again,) = manifest.read_manifest(out)                      # the newest part wins, before any compaction
    assert (again["lang"], again["status"], again["error"]) == ("es", "failed", REDOING)
    assert manifest.done_keys(manifest.plan_index(out), out) == set()


def test_outputs_under_out_are_found_in_one_listing_and_others_one_by_one(tmp_path, monkeypatch):
    from operators import paths
    from operators import uri as uris

    out = str(tmp_path / "out")
    rows = []
    for vid in ("a", "b", "c"):
        row = {**_row(vid, "es"), **{c: paths.output(out, vid, "es", f".{c}") for c in manifest.OUTPUT_COLUMNS}}
        for c in manifest.OUTPUT_COLUMNS:
            uris.write_bytes(row[c], b"x")
        rows.append(row)
    os.remove(rows[1]["dub_audio_uri"])                          # b lost one output
    elsewhere = tmp_path / "moved.mp4"
    elsewhere.write_bytes(b"x")
    rows[2]["video_out_uri"] = str(elsewhere)                    # c's video lies outside OUT/videos
    asked = []
    real = uris.exists
    monkeypatch.setattr(uris, "exists", lambda u: asked.append(u) or real(u))
    assert manifest.done_keys(rows, out) == {("a", "es"), ("c", "es")}
    assert asked == [str(elsewhere)]                             # everything else came from the listing


def _parts(out, table="manifest"):
    return sorted(p.name for p in (out / table).glob("lang=*/*.parquet"))


def test_results_are_committed_in_parts_as_they_finish_and_a_killed_jobs_markers_are_recovered(tmp_path):
    out, work = tmp_path / "out", str(tmp_path / "work")
    writer = manifest.ManifestWriter(str(out), work, batch_rows=3)
    for vid in "abcde":
        writer.add(_row(vid, "es"))
    # three committed as one part (with its lines), two waiting in their markers
    assert len(_parts(out)) == 1 and _parts(out) == _parts(out, "segments")
    assert [r["video_id"] for r in manifest.read_manifest(str(out))] == ["a", "b", "c"]
    assert sorted(r["video_id"] for r in manifest.read_markers(work)) == ["d", "e"]
    # the job is killed here; the next one commits what it finished before anything else
    later = manifest.ManifestWriter(str(out), work, batch_rows=3)
    assert later.recover() == 2
    assert [r["video_id"] for r in manifest.read_manifest(str(out))] == list("abcde")
    assert manifest.read_markers(work) == []
    assert max(_parts(out)).startswith(f"part-{later.run_id}")


def test_a_result_made_again_is_read_from_its_newest_part_and_compaction_keeps_one_row(tmp_path):
    out = tmp_path / "out"
    first = manifest.ManifestWriter(str(out), str(tmp_path / "work"))
    first.commit([_row("a", "es"), _row("b", "es"), _row("a", "de")])
    second = manifest.ManifestWriter(str(out), str(tmp_path / "work"))
    second.commit([_row("a", "es", wer=0.3)])
    assert second.run_id > first.run_id
    table = manifest.scan(str(out), ["video_id", "lang", "wer"])
    assert sorted(table.to_pylist(), key=lambda r: (r["lang"], r["video_id"])) == [
        {"video_id": "a", "lang": "de", "wer": None}, {"video_id": "a", "lang": "es", "wer": 0.3},
        {"video_id": "b", "lang": "es", "wer": None}]
    assert [s["video_id"] for s in manifest.read_segments(str(out)) if s["lang"] == "es"].count("a") == 1
    assert manifest.compact(str(out), merge_bytes=1) == {"parts": 3, "rewritten": 1, "dropped": 1, "merged": 0}
    import pyarrow.dataset as ds

    raw = ds.dataset(str(out / "manifest"), format="parquet", partitioning="hive").to_table()
    assert sorted(zip(raw.column("video_id").to_pylist(), raw.column("lang").to_pylist())) == [
        ("a", "de"), ("a", "es"), ("b", "es")]
    assert manifest.compact(str(out), merge_bytes=1)["rewritten"] == 0
    first.commit([_row("b", "es", wer=0.9)])         # a part emptied by compaction is removed
    manifest.compact(str(out), merge_bytes=1)
    assert len(_parts(out)) == 3 and len(_parts(out, "segments")) == 3


def test_small_parts_are_merged_per_language_and_read_the_same(tmp_path):
    out = tmp_path / "out"
    writer = manifest.ManifestWriter(str(out), str(tmp_path / "work"), batch_rows=2)
    writer.commit([_row(f"v{i}", lang, wer=i / 100) for i in range(9) for lang in ("es", "de")])
    assert len(_parts(out)) == 18                                  # 9 commits, each one row per language
    before = manifest.read_manifest(str(out))
    # Every part is small: per language 8 of them fill a merged part, the 9th stays alone.
    one = max(p.stat().st_size for p in (out / "manifest").glob("lang=*/*.parquet"))
    assert manifest.compact(str(out), merge_bytes=8 * one)["merged"] == 16
    assert len(_parts(out)) == 4 and _parts(out) == _parts(out, "segments")
    assert manifest.read_manifest(str(out)) == before
    assert len(manifest.read_segments(str(out))) == 18
    # The merged part is still under half the target (it compresses better): the next compaction takes the
    # 9th into it, and then there is nothing left to merge.
    assert manifest.compact(str(out), merge_bytes=8 * one)["merged"] == 4
    assert manifest.compact(str(out), merge_bytes=8 * one)["merged"] == 0
    assert len(_parts(out)) == 2 and manifest.read_manifest(str(out)) == before


def test_parts_reviewed_with_other_thresholds_are_assessed_again_once(tmp_path):
    out = str(tmp_path / "out")
    writer = manifest.ManifestWriter(out, str(tmp_path / "work"), review_print="old")
    writer.commit([_row("a", "es", wer=0.3), _row("b", "es", wer=0.01)])
    seen = []

    def strict(row):
        seen.append(row["video_id"])
        return {**row, "needs_review": row["wer"] > 0.1}

    assert manifest.compact(out, "new", strict)["rewritten"] == 1
    assert {r["video_id"]: r["needs_review"] for r in manifest.read_manifest(out)} == {"a": True, "b": False}
    assert manifest.compact(out, "new", strict)["rewritten"] == 0 and sorted(seen) == ["a", "b"]


def test_planning_reads_only_the_key_columns_of_the_parts(tmp_path):
    out = str(tmp_path / "out")
    manifest.write_manifest(out, [_row(f"v{i}", lang) for i in range(50) for lang in ("es", "de")])
    index = manifest.plan_index(out)
    assert index.num_rows == 100 and index.column_names == list(manifest.PLAN_COLUMNS)
