"""The demo catalog end to end: three clips into es, de and pt (through Spanish), one broken upload.

The run itself is the session fixture `demo_out` (conftest), shared with the quality-report tests.
"""
import os

from operators import manifest


def test_demo_catalog(demo_out):
    rows = {(r["video_id"], r["lang"]): r for r in manifest.read_manifest(demo_out)}
    assert len(rows) == 12
    assert {k for k, r in rows.items() if r["status"] == "failed"} == {
        ("broken-upload", "es"), ("broken-upload", "de"), ("broken-upload", "pt")}
    assert "not a readable video file" in rows["broken-upload", "es"]["error"]
    for r in rows.values():
        if r["status"] == "ok":
            assert all(os.path.exists(r[c]) for c in manifest.OUTPUT_COLUMNS)
            # espeak-ng speech judged by Whisper base: word errors are common and vary run to run
            # (one demo result measured CER 0.50-0.70 over runs); characters are mostly right
            assert r["segments_dubbed"] == 3 and r["cer"] < 0.8
    # Whisper base hears espeak-ng's Portuguese worse: pt measured 0.49, 0.58, 0.38 (mean 0.48; es 0.38 that run).
    for lang, bound in (("es", 0.5), ("de", 0.5), ("pt", 0.65)):
        cers = [r["cer"] for (v, l), r in rows.items() if l == lang and r["status"] == "ok"]
        assert sum(cers) / len(cers) < bound, (lang, cers)
    for (video, lang), r in rows.items():
        if r["status"] == "ok":
            assert r["translation_route"] == {"es": ["en-es"], "de": ["subtitles"], "pt": ["en-es", "es-pt"]}[lang]
    # Lip sync: the talking heads are re-rendered in sync (the bar: offset within
    # +-2 frames, confidence at least 80% of the source's own); the profile is left alone.
    for lang in ("es", "de", "pt"):
        for video in ("astronaut-greeting", "astronaut-recipe"):
            r = rows[video, lang]
            assert r["lip_status"] == "rendered" and r["frames_rerendered"] > 0
            assert abs(r["sync_offset_frames"]) <= 2
            assert r["sync_confidence"] >= 0.8 * r["source_sync_confidence"]
        weather = rows["cameraman-weather", lang]
        assert weather["lip_status"] == "unchanged" and weather["rendered_video_uri"] is None
        assert "no face on screen" in weather["lip_reason"]
