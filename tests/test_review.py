"""needs_review and its reasons, on constructed rows where the right answer is known."""
import pytest

from operators import review
from operators.config import Config

CFG = Config()


def good(**changes):
    row = {"status": "ok", "wer": 0.2, "cer": 0.1, "true_peak_dbfs": -1.2, "cut_s_total": 0.0,
           "loudness_diff_lu": 0.0, "lip_status": "rendered", "sync_offset_frames": 0,
           "sync_confidence": 0.85, "source_sync_confidence": 0.9, "face_coverage": 1.0,
           "share_at_speed_cap": 0.04, "lines_over_cap": 0, "lines_cut": 0, "voice_cloned": True, "speaker_similarity": 0.9, "mouth_change_ratio": 1.1}
    row.update(changes)
    return row


def test_a_good_dub_needs_no_review():
    out = review.apply(good(), CFG)
    assert out["needs_review"] is False and out["review_reasons"] == []


@pytest.mark.parametrize("changes, expected", [
    ({"wer": 1.0}, "intelligibility: WER 1.00 > 0.5"),
    ({"cer": 0.5}, "intelligibility: CER 0.50 > 0.35"),
    ({"true_peak_dbfs": 0.2}, "loudness: true peak 0.20 dBFS > -0.5 dBFS"),
    ({"cut_s_total": 1.25, "lines_cut": 2}, "timing: 1.25 s of speech cut off in 2 line(s) that did not fit even "
                                             "at 1.5x (> 0.0 s)"),
    ({"lines_over_cap": 3, "speech_rate_max": 1.42}, "timing: 3 line(s) spoken faster than the 1.3x cap (up to "
                                                      "1.42x) to keep every word"),
    ({"loudness_diff_lu": -3.0}, "loudness: dialogue -3.0 LU from the source (> 2.0 LU)"),
    ({"share_at_speed_cap": 1.0}, "timing: 100% of lines sped up to the cap (1.3x)"),
    ({"speaker_similarity": 0.5}, "voice: similarity to the source speaker 0.50 < 0.75"),
    ({"mouth_change_ratio": 2.5}, "lip sync: unsteady mouth, it moves 2.5x as much frame to frame as the "
                                  "source's (> 2.0x)"),
    ({"sync_offset_frames": 3}, "lip sync: offset +3 frames (> 2)"),
    ({"sync_confidence": 0.45}, "lip sync: confidence 0.45 is 50% of the source's 0.90 (< 80%)"),
    ({"lip_status": "unchanged", "lip_reason": "1 line: face too small to re-render"},
     "lip sync: a face is on screen for 100% of the speech but no lips were re-rendered "
     "(1 line: face too small to re-render)"),
])
def test_each_threshold_gives_its_reason(changes, expected):
    out = review.apply(good(**changes), CFG)
    assert out["needs_review"] is True
    assert out["review_reasons"] == [expected]


def test_failed_and_skipped_rows_need_review_with_their_error():
    failed = review.apply({"status": "failed", "error_stage": "probe", "error": "MediaError: no audio"}, CFG)
    assert failed["review_reasons"] == ["failed at probe: MediaError: no audio"]
    skipped = review.apply({"status": "skipped", "error_stage": "transcribe", "error": "no speech"}, CFG)
    assert skipped["needs_review"] and skipped["review_reasons"][0].startswith("skipped at transcribe")


def test_voice_similarity_is_checked_where_the_tts_clones_voices_unless_configured_otherwise():
    own_voice = good(voice_cloned=False, speaker_similarity=0.45)      # Piper / espeak-ng: their own voice
    assert review.apply(own_voice, CFG)["needs_review"] is False
    always = Config.from_dict({"review": {"voice_check": "always"}})
    assert review.apply(own_voice, always)["review_reasons"] == ["voice: similarity to the source speaker 0.45 < 0.75"]
    never = Config.from_dict({"review": {"voice_check": "never"}})
    assert review.apply(good(speaker_similarity=0.45), never)["needs_review"] is False


def test_thresholds_come_from_config():
    loose = Config.from_dict({"review": {"max_wer": 2.0}})
    assert review.apply(good(wer=1.0), loose)["needs_review"] is False
    no_face = good(lip_status="unchanged", lip_reason="3 lines: no face on screen", face_coverage=0.0)
    assert review.apply(no_face, CFG)["needs_review"] is False


def test_pivoted_translations_are_flagged_unless_turned_off():
    pivoted = good(translation_route=["en-es", "es-pt"])
    assert review.apply(pivoted, CFG)["review_reasons"] == [
        "translation: through a pivot language (en-es, then es-pt): two rule-based pairs chained, "
        "their errors add up"]
    # a direct pair or the catalog's subtitles are not a pivot
    assert review.apply(good(translation_route=["en-es"]), CFG)["needs_review"] is False
    assert review.apply(good(translation_route=["subtitles"]), CFG)["needs_review"] is False
    off = Config.from_dict({"review": {"flag_pivoted": False}})
    assert review.apply(pivoted, off)["needs_review"] is False


def test_a_talking_photo_is_not_flagged_for_a_mouth_that_moves_more_than_the_stills():
    photo = good(mouth_change_ratio=9.0, photo_video_uri="/work/p/photo.mp4")
    assert review.apply(photo, CFG)["needs_review"] is False
