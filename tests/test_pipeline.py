"""End to end on an embedded Ray: real media, real models that PyPI packages ship, bad inputs beside good."""
import glob
import hashlib
import json
import os
import subprocess

import av
import numpy as np
import pytest

from catalogs import dummies
from operators import audio as audio_io
from operators import manifest
from operators.backends.whisper import FasterWhisperASR
from operators.schema import FAILED, OK, SKIPPED
from operators.score import error_rates
from pipelines.localize import run
from tests.conftest import small_config

LINES = [(0.6, "The house is red."), (3.2, "I drink coffee every morning.")]
GERMAN = ["Das Haus ist rot.", "Ich trinke jeden Morgen Kaffee."]


class CountingASR:
    """The real ASR backend, appending one line to a log per call (actors are other processes)."""

    def __init__(self, config, log_path):
        self.inner = FasterWhisperASR(config)
        self.log_path = log_path

    def transcribe(self, audio_path, language):
        with open(self.log_path, "a") as f:
            f.write(audio_path + "\n")
        return self.inner.transcribe(audio_path, language)

    def transcribe_text(self, audio_path, language):
        return self.inner.transcribe_text(audio_path, language)

    def model_info(self, language):
        return self.inner.model_info(language)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    face = dummies.portrait("astronaut")
    speech = str(d / "speech.wav")
    cues = dummies.speech_track(LINES, 6.0, speech, background="hum")
    dummies.still_video(face, str(d / "good.mp4"), 6.0, audio_wav=speech)
    dummies.write_subtitles([dummies.Cue(c.start_s, c.end_s, t) for c, t in zip(cues, GERMAN)], str(d / "good.de.srt"))
    dummies.still_video(face, str(d / "mute.mp4"), 3.0, audio_wav=None)
    dummies.silent_wav(str(d / "silence.wav"), 3.0)
    dummies.still_video(face, str(d / "silent.mp4"), 3.0, audio_wav=str(d / "silence.wav"))
    dummies.truncated_copy(str(d / "good.mp4"), str(d / "truncated.mp4"))
    # an interrupted upload of a "faststart" file: the header (and its duration) is intact, the data is not
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(d / "good.mp4"), "-c", "copy", "-movflags", "+faststart",
                    str(d / "faststart.mp4")], check=True)
    data = (d / "faststart.mp4").read_bytes()
    (d / "cut.mp4").write_bytes(data[: len(data) // 2])
    rows = [
        {"video_id": "good", "uri": "good.mp4", "target_langs": ["es", "de", "pt", "ro"], "subtitles_uri_de": "good.de.srt"},
        {"video_id": "missing", "uri": "nowhere.mp4"},
        {"video_id": "truncated", "uri": "truncated.mp4"},
        {"video_id": "cut", "uri": "cut.mp4"},
        {"video_id": "mute", "uri": "mute.mp4"},
        {"video_id": "silent", "uri": "silent.mp4", "source_lang": "en"},
    ]
    catalog = d / "catalog.jsonl"
    catalog.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return d, str(catalog)


@pytest.fixture(scope="module")
def first_run(media, ray_local, tmp_path_factory):
    d, catalog = media
    out = str(tmp_path_factory.mktemp("out"))
    log_path = str(d / "asr-calls.log")
    config = small_config()
    summary = run(catalog, out, langs=["es"], config=config,
                  backends={"transcribe": CountingASR(config.asr, log_path)})
    return out, summary, log_path


def _by_pair(rows):
    return {(r["video_id"], r["lang"]): r for r in rows}


def test_every_catalog_row_reaches_the_manifest_once_per_language(first_run):
    out, summary, _ = first_run
    rows = manifest.read_manifest(out)
    pairs = _by_pair(rows)
    assert len(rows) == len(pairs) == 9
    expected = {
        ("good", "es"): (OK, None), ("good", "de"): (OK, None), ("good", "pt"): (OK, None),
        ("good", "ro"): (FAILED, "translate"),
        ("missing", "es"): (FAILED, "probe"), ("truncated", "es"): (FAILED, "probe"), ("cut", "es"): (FAILED, "probe"),
        ("mute", "es"): (FAILED, "probe"), ("silent", "es"): (SKIPPED, "merge"),
    }
    assert {k: (r["status"], r["error_stage"]) for k, r in pairs.items()} == expected
    assert "not found" in pairs["missing", "es"]["error"]
    assert "no audio stream" in pairs["mute", "es"]["error"]
    assert "not a readable video file" in pairs["truncated", "es"]["error"]
    assert "damaged or truncated file" in pairs["cut", "es"]["error"]
    assert "no speech" in pairs["silent", "es"]["error"]
    assert "no translation route en->ro" in pairs["good", "ro"]["error"]
    assert "subtitles_uri_ro" in pairs["good", "ro"]["error"]
    assert pairs["good", "es"]["translation_route"] == ["en-es"]
    assert pairs["good", "de"]["translation_route"] == ["subtitles"]
    assert pairs["good", "ro"]["translation_route"] is None
    assert summary.counts["es"] == {OK: 1, FAILED: 4, SKIPPED: 1}


def test_english_to_portuguese_through_spanish(first_run):
    """A pivot end to end: Apertium en-es piped into es-pt, spoken by espeak-ng, transcribed back by Whisper."""
    out, _, _ = first_run
    pt = _by_pair(manifest.read_manifest(out))["good", "pt"]
    assert pt["translation_route"] == ["en-es", "es-pt"]
    assert [(m["name"], m["license"]) for m in pt["models"] if m["stage"] == "translate"] == [
        ("apertium:eng-spa", "GPL-3.0"), ("apertium:es-pt", "GPL-3.0")]
    assert [s["target_text"] for s in pt["segments"]] == ["A casa é vermelha.", "Bebo café a cada amanhã."]
    assert "vermelha" in open(pt["subtitles_out_uri"]).read()
    # Whisper base forced to Portuguese, on espeak-ng's Portuguese: a harsh judge (measured: "acoma em meio
    # do meio. vim, café, café, amanhã.", CER about 0.5), so the bound is the demo's.
    assert all(s["back_text"] for s in pt["segments"])
    assert pt["cer"] < 0.8
    assert pt["review_reasons"][0] == ("translation: through a pivot language (en-es, then es-pt): two rule-based "
                                       "pairs chained, their errors add up")


def test_language_independent_work_runs_once_per_video(first_run):
    out, _, log_path = first_run
    calls = open(log_path).read().splitlines()
    # "good" has four languages and "silent" one: each is transcribed exactly once
    assert sorted(os.path.basename(os.path.dirname(c)) for c in calls) == ["good", "silent"]
    good = [r for r in manifest.read_manifest(out) if r["video_id"] == "good"]
    probe_walls = {next(t["wall_s"] for t in r["timings"] if t["stage"] == "probe") for r in good}
    assert len(probe_walls) == 1        # the same single probe, carried into every language's row


def test_dubbed_outputs(first_run, media):
    out, _, _ = first_run
    d, _ = media
    pairs = _by_pair(manifest.read_manifest(out))
    es = pairs["good", "es"]
    assert es["video_out_uri"].endswith("videos/good/good.es.mp4")
    with av.open(str(d / "good.mp4")) as src, av.open(es["video_out_uri"]) as dub:
        src_v, dub_v = src.streams.video[0], dub.streams.video[0]
        # the picture is stream-copied: same codec, size and packets
        assert (dub_v.codec_context.name, dub_v.width, dub_v.height) == (src_v.codec_context.name, 640, 360)
        src_packets = [bytes(p) for p in src.demux(src_v) if p.size]
        dub_packets = [bytes(p) for p in dub.demux(dub_v) if p.size]
        assert dub_packets == src_packets
    with av.open(es["video_out_uri"]) as dub:
        audio = [(s.metadata.get("language"), s.metadata.get("handler_name")) for s in dub.streams.audio]
        assert audio == [("spa", "Dub (es)"), ("eng", "Original (en)")]
        assert [s.metadata.get("language") for s in dub.streams.subtitles] == ["spa"]
    assert os.path.exists(es["dub_audio_uri"]) and os.path.exists(es["subtitles_out_uri"])
    # Every output says it was AI-dubbed; no key is configured, so nothing is signed, and the run says so.
    disclosure = "AI-dubbed by raydub: the voice is AI-generated."       # no lips re-rendered on this still
    assert (es["disclosure"], es["disclosure_label"]) == (disclosure, None)
    assert es["provenance_status"] == "not signed: no key configured"
    for path in (es["video_out_uri"], es["dub_audio_uri"]):
        probed = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags=comment", "-of",
                                 "default=nw=1:nk=1", path], capture_output=True, text=True, check=True)
        assert probed.stdout.strip() == disclosure
    assert es["source_sha256"] == hashlib.sha256((d / "good.mp4").read_bytes()).hexdigest()
    assert "casa" in open(es["subtitles_out_uri"]).read().lower()

    segs = es["segments"]
    assert len(segs) == 2 and all(s["fit_uri"] for s in segs)
    for s in segs:
        assert 1.0 <= s["speech_rate"] <= 1.3 + 1e-9 and s["cut_s"] == 0.0
        assert s["start_s"] - 0.3 <= s["placed_start_s"] <= s["start_s"]     # at most fit.max_lead_s early
    assert segs[0]["placed_end_s"] <= segs[1]["placed_start_s"] - 0.15     # never over the next line
    assert abs(es["loudness_diff_lu"]) < 1.0
    # the dub track keeps the original where nobody speaks and carries new speech where the line was
    source, sr = audio_io.read_wav(os.path.join(out, "_work", "good", "source.wav"))
    dub, dub_sr = audio_io.read_wav(es["dub_audio_uri"])
    assert dub_sr == sr and dub.shape == source.shape
    quiet = slice(0, int(0.4 * sr))                       # the hum bed before the first line
    assert np.array_equal(dub[quiet], source[quiet])
    line = slice(int(segs[0]["placed_start_s"] * sr), int(segs[0]["placed_end_s"] * sr))
    assert np.sqrt(np.mean((dub[line] - source[line]) ** 2)) > 0.01
    de = pairs["good", "de"]
    assert [s["target_text"] for s in de["segments"]] == GERMAN
    assert {m["stage"]: m["name"] for m in de["models"]}["translate"] == "catalog-subtitles"
    # The dub, transcribed back (Whisper base on espeak-ng speech: a harsh but honest judge),
    # is scored against the target text; a silent or wrong-language dub scores 1.0.
    for r in (es, de):
        said = [(s["target_text"], s["back_text"]) for s in r["segments"]]
        assert r["wer"] == error_rates(*zip(*said))[0]
        assert r["wer"] < 0.9, said
    # Intelligible, not word-perfect: this judge's scores move with the CPU's int8 kernels. Seen: es 0.38-0.62,
    # de 0.44-0.56 ("Mottengaffee" for "Morgen Kaffee" on an AMD EPYC); wrong or silent speech scores ~1.0.
    assert min(es["wer"], de["wer"]) <= 0.65
    seg_rows = [r for r in manifest.read_segments(out) if r["result_id"] == es["result_id"]]
    assert [r["segment_id"] for r in seg_rows] == [s["segment_id"] for s in segs]


def test_rerun_does_not_redo_pairs_already_ok(first_run, media, ray_local):
    out, first, _ = first_run
    _, catalog = media
    rows = _by_pair(manifest.read_manifest(out))
    ok_outputs = {u: os.path.getmtime(u) for v, l in [("good", "es"), ("good", "de"), ("good", "pt")]
                  for u in (rows[v, l]["video_out_uri"], rows[v, l]["dub_audio_uri"])}
    # The run's markers went into the manifest, and were then removed: a resume reads a file per language.
    assert not glob.glob(os.path.join(out, "_work", "_results", "*", "*.parquet"))
    again = run(catalog, out, langs=["es"], config=small_config())
    assert again.resumed == 3
    assert len(again.results) == 9
    assert {u: os.path.getmtime(u) for u in ok_outputs} == ok_outputs
    assert len(manifest.read_manifest(out)) == 9


def test_a_changed_subtitle_file_is_redone_and_the_rest_kept(first_run, media, ray_local, tmp_path):
    """The same video_id with a new translated subtitle file for de: de is dubbed again, es and pt are kept."""
    import shutil

    out, _, _ = first_run
    d, _ = media
    copy = str(tmp_path / "out")
    shutil.copytree(out, copy)
    shutil.copy(d / "good.de.srt", d / "good.de.v2.srt")
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(json.dumps({"video_id": "good", "uri": str(d / "good.mp4"), "target_langs": ["es", "de", "pt"],
                                   "subtitles_uri_de": str(d / "good.de.v2.srt")}) + "\n")
    before = _by_pair(manifest.read_manifest(copy))

    again = run(str(catalog), copy, config=small_config())

    assert again.resumed == 2
    assert [(r["video_id"], r["lang"], r["status"]) for r in again.results if r["lang"] == "de"] == [("good", "de", OK)]
    after = _by_pair(manifest.read_manifest(copy))
    assert after["good", "de"]["inputs_fingerprint"] != before["good", "de"]["inputs_fingerprint"]
    assert after["good", "es"]["inputs_fingerprint"] == before["good", "es"]["inputs_fingerprint"]
    assert len(after) == len(before)


def test_no_resume_redoes_its_rows_and_keeps_every_other_row(ray_local, tmp_path):
    """`--no-resume` on part of a catalog used to rewrite the manifest from that part alone."""
    face = dummies.portrait("astronaut")
    for name in ("a", "b"):
        dummies.still_video(face, str(tmp_path / f"{name}.mp4"), 2.0, audio_wav=None)   # fails at probe, fast
    both, one = tmp_path / "both.jsonl", tmp_path / "one.jsonl"
    both.write_text("".join(json.dumps({"video_id": v, "uri": f"{v}.mp4"}) + "\n" for v in ("a", "b")))
    one.write_text(json.dumps({"video_id": "a", "uri": "a.mp4"}) + "\n")
    out = str(tmp_path / "out")
    run(str(both), out, langs=["es", "de"], config=small_config())
    assert len(manifest.read_manifest(out)) == 4

    again = run(str(one), out, langs=["es"], config=small_config(run={"resume": False}))

    assert again.resumed == 0 and [(r["video_id"], r["lang"]) for r in again.results] == [("a", "es")]
    assert sorted((r["video_id"], r["lang"]) for r in manifest.read_manifest(out)) == [
        ("a", "de"), ("a", "es"), ("b", "de"), ("b", "es")]


def test_a_video_whose_subtitles_overlap_is_dubbed(ray_local, tmp_path):
    """Source cues 40 ms into each other and a translated cue given twice: tidied, noted, and dubbed."""
    import math

    face = dummies.portrait("astronaut")
    speech = str(tmp_path / "speech.wav")
    spoken = dummies.speech_track([(0.4, "The house is red."), (2.6, "I drink coffee.")], 4.5, speech,
                                  background="hum")
    dummies.still_video(face, str(tmp_path / "clip.mp4"), 4.5, audio_wav=speech)
    ends = [math.ceil(c.end_s * 100) / 100 for c in spoken]        # whole 10 ms: the SRT holds them exactly
    dummies.write_subtitles([dummies.Cue(0.4, 2.64, "The house is red."),           # 40 ms into the next cue
                             dummies.Cue(2.6, ends[1], "I drink coffee.")], str(tmp_path / "clip.en.srt"))
    dummies.write_subtitles([dummies.Cue(0.4, ends[0], "Das Haus ist rot."),
                             dummies.Cue(2.6, ends[1], "Ich trinke Kaffee."),
                             dummies.Cue(2.6, ends[1], "Ich trinke Kaffee.")], str(tmp_path / "clip.de.srt"))
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(json.dumps({"video_id": "clip", "uri": "clip.mp4", "source_lang": "en",
                                   "source_subtitles_uri": "clip.en.srt", "subtitles_uri_de": "clip.de.srt"}) + "\n")
    out = str(tmp_path / "out")
    summary = run(str(catalog), out, langs=["de"], config=small_config(lips={"enabled": False},
                                                                       subtitles={"dual": True}))

    assert summary.counts["de"][OK] == 1, summary.counts
    (result,) = manifest.read_manifest(out)
    assert (result["status"], result["error"]) == (OK, None)
    segs = result["segments"]
    assert [(s["segment_id"], s["start_s"], s["end_s"], s["target_text"], s["notes"]) for s in segs] == [
        ("clip@00000400-00002600", 0.4, 2.6, "Das Haus ist rot.",
         ["source cue trimmed by 0.040 s: it overlapped the next one, at 2.600 s"]),
        (f"clip@00002600-{round(ends[1] * 1000):08d}", 2.6, ends[1], "Ich trinke Kaffee.",
         [f"merged with the overlapping translated cue at 2.600-{ends[1]:.3f} s"])]
    assert all(s["fit_uri"] for s in segs) and segs[0]["placed_end_s"] <= segs[1]["start_s"]
    assert [r["notes"] for r in manifest.read_segments(out)] == [s["notes"] for s in segs]

    # Subtitles: SRT, WebVTT and the dual file, cued on the dub's lines, within every limit
    import webvtt

    assert [result[k] for k in ("subtitles_out_uri", "subtitles_vtt_uri", "subtitles_dual_uri")] == [
        os.path.join(out, "videos", "clip", f"clip.de{suffix}") for suffix in (".srt", ".vtt", ".dual.vtt")]
    vtt = list(webvtt.read(result["subtitles_vtt_uri"]))
    assert [c.text for c in vtt] == ["Das Haus ist rot.", "Ich trinke Kaffee."]
    assert [c.start for c in vtt] == [f"00:00:0{s['placed_start_s']:.3f}" for s in segs]
    assert [(c.start, c.end) for c in webvtt.read(result["subtitles_dual_uri"])] == [(c.start, c.end) for c in vtt]
    assert [c.lines for c in webvtt.read(result["subtitles_dual_uri"])] == [
        ["The house is red.", "Das Haus ist rot."], ["I drink coffee.", "Ich trinke Kaffee."]]
    assert (result["subtitle_cues"], result["subtitle_lines_split"], result["subtitle_issues"]) == (2, 0, [])
    assert set(result["subtitle_cues_over_limits"].values()) == {0}


def test_the_job_log_gets_the_counts_at_a_steady_interval(ray_local, tmp_path, caplog):
    import logging

    face = dummies.portrait("astronaut")
    for name in ("a", "b"):
        dummies.still_video(face, str(tmp_path / f"{name}.mp4"), 2.0, audio_wav=None)   # fails at probe, fast
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(json.dumps({"video_id": "a", "uri": "a.mp4", "target_langs": ["es"]}) + "\n"
                       + json.dumps({"video_id": "b", "uri": "b.mp4", "target_langs": ["es", "de"]}) + "\n")
    with caplog.at_level(logging.INFO, logger="raydub.progress"):
        run(str(catalog), str(tmp_path / "out"), config=small_config(run={"log_every_s": 0.2}))
    lines = [r.getMessage() for r in caplog.records if r.name == "raydub.progress"]
    assert len(lines) >= 3
    assert lines[0].startswith("resume plan: 0 of 3 results kept, 3 to make (")
    (done,) = [line for line in lines if line.startswith("done:")]
    assert done.startswith("done: 2/2 videos planned, 0 shards analysed, 3/3 results (0 ok, 3 failed, "
                           "0 skipped), 0 kept from earlier runs, ")
    assert {line.split(":")[0] for line in lines} >= {"plan", "done", "manifest"}
    assert lines[-1] == (
        "exactly once: the catalog has 3 (video, language) pairs, the manifest 3 rows: 3 of the catalog's, "
        "0 of earlier catalogs; 0 missing, 0 doubled")
