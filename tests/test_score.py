import os

import numpy as np
import pytest

from operators import audio
from operators.score import back_transcribe, error_rates


def test_identical_text_scores_zero_ignoring_case_and_punctuation():
    assert error_rates(["La casa es roja."], ["la casa es roja"]) == (0.0, 0.0)


def test_a_silent_dub_scores_one():
    assert error_rates(["La casa es roja."], [""]) == (1.0, 1.0)


def test_rates_pool_words_over_segments():
    wer, cer = error_rates(["uno dos tres", "cuatro"], ["uno dos", "cinco"])
    assert wer == pytest.approx(2 / 4)
    assert error_rates(["", "uno"], ["ruido", "uno"]) == (0.0, 0.0)   # nothing to say, nothing wrong


def test_a_language_whisper_does_not_know_is_dubbed_unscored(tmp_path):
    """Esperanto: Apertium en-eo and espeak-ng make the dub; Whisper has no Esperanto, so no WER, no failure."""
    import subprocess

    from operators.backends.whisper import FasterWhisperASR
    from operators.config import Config
    from operators.score import Score

    wav = str(tmp_path / "line.wav")
    subprocess.run(["espeak-ng", "-v", "eo", "-w", wav, "La domo estas ruĝa."], check=True)
    config = Config.from_dict({"score": {"speaker_similarity": False}})
    op = Score(config, str(tmp_path), str(tmp_path), backend=FasterWhisperASR(config.asr))
    op.setup()
    seg = {"segment_id": "v@0-2000", "start_s": 0.0, "end_s": 2.0, "target_text": "La domo estas ruĝa.",
           "fit_uri": wav, "speech_rate": 1.0, "overflow_s": 0.0, "cut_s": 0.0}
    out = op.process_row({"video_id": "v", "lang": "eo", "segments": [seg], "models": []})
    assert (out["wer"], out["cer"], out["segments_dubbed"]) == (None, None, 1)
    assert out["segments"][0]["back_text"] is None
    assert [m["stage"] for m in out["models"]] == []


class NamedClipASR:
    """An ASR without `transcribe_texts`: it "hears" each clip's file name (the text is in the input)."""

    def __init__(self):
        self.calls = []

    def transcribe_text(self, audio_path, language):
        self.calls.append(audio_path)
        return f"{language} {os.path.splitext(os.path.basename(audio_path))[0]}"


class ShortASR(NamedClipASR):
    def transcribe_texts(self, audio_paths, language):
        return [self.transcribe_text(p, language) for p in audio_paths[:-1]]


def test_back_transcription_falls_back_to_one_call_per_clip():
    asr = NamedClipASR()
    assert back_transcribe(asr, ["/a/one.wav", "/a/two.wav"], "es") == ["es one", "es two"]
    assert asr.calls == ["/a/one.wav", "/a/two.wav"]
    with pytest.raises(RuntimeError, match="returned 1 texts for 2 clips"):
        back_transcribe(ShortASR(), ["/a/one.wav", "/a/two.wav"], "es")


def test_span_reader_reads_what_the_whole_track_holds(tmp_path):
    rng = np.random.default_rng(0)
    track = rng.uniform(-0.5, 0.5, (16000 * 3, 2)).astype(np.float32)
    audio.write_wav(tmp_path / "t.wav", track, 16000)
    whole = audio.read_mono(tmp_path / "t.wav", 16000)
    with audio.SpanReader(tmp_path / "t.wav", 16000) as spans:
        for start_s, end_s in [(0.0, 0.5), (1.23456, 2.0), (2.5, 3.5), (3.2, 3.4)]:
            got = spans.mono(start_s, end_s)
            assert np.array_equal(got, whole[round(start_s * 16000):round(end_s * 16000)])
        assert len(spans.mono(2.5, 3.5)) == 8000    # cut at the end of the track
