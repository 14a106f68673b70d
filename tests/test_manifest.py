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
    # a rewrite without German removes its partition
    manifest.write_manifest(out, rows[::2])
    assert {r["lang"] for r in manifest.read_manifest(out)} == {"es"}


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


def test_a_pair_the_pipeline_did_not_return_becomes_a_failed_row(tmp_path):
    from operators.config import Config
    from pipelines.localize import _exactly_once

    todo = [{"video_id": "a", "uri": "/m/a.mp4", "target_langs": ["es", "de"]}]
    back = _exactly_once(todo, [_row("a", "es"), _row("a", "es")], str(tmp_path), Config(),
                         {("a", "es"): "p-es", ("a", "de"): "p-de"})
    assert sorted((r["lang"], r["status"], r.get("error_stage")) for r in back) == [
        ("de", "failed", "pipeline"), ("es", "ok", None)]
    lost = next(r for r in back if r["lang"] == "de")
    assert lost["inputs_fingerprint"] == "p-de"
    assert lost["needs_review"] and lost["review_reasons"][0].startswith("failed at pipeline")
    assert manifest.previous_results(str(tmp_path / "out"), str(tmp_path))["a", "de"]["status"] == "failed"


def test_the_parquet_files_carry_the_manifest_schema(tmp_path):
    import pyarrow.parquet as pq

    from operators.schema import SEGMENT_ROW

    out = str(tmp_path / "out")
    manifest.write_manifest(out, [_row("a", "es", speaker_similarity=0.91, mouth_change_ratio=1.2)])
    written = pq.read_schema(tmp_path / "out" / "manifest" / "lang=es" / "part-0.parquet")
    assert written.equals(pa.schema([f for f in RESULT if f.name != "lang"]))
    segments = pq.read_schema(tmp_path / "out" / "segments" / "lang=es" / "part-0.parquet")
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
    from pipelines.localize import REDOING, mark_redoing

    work = str(tmp_path / "work")
    video = tmp_path / "a.es.mp4"
    video.write_bytes(b"x")
    old = {**_row("a", "es"), **{c: str(video) for c in manifest.OUTPUT_COLUMNS}}
    manifest.write_marker(work, old)
    found = manifest.previous_results(str(tmp_path / "out"), work)
    assert manifest.is_done(found["a", "es"])
    mark_redoing([{"video_id": "a", "target_langs": ["es", "de"]}], found, work)
    again = manifest.previous_results(str(tmp_path / "out"), work)
    assert (again["a", "es"]["status"], again["a", "es"]["error"]) == ("failed", REDOING)
    assert not manifest.is_done(again["a", "es"])
    assert ("a", "de") not in again


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
