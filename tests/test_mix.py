"""The original speech must be gone from the background the dub is mixed over, over any bed."""
import numpy as np
import pytest

from catalogs import dummies
from operators import audio
from operators.backends.whisper import FasterWhisperASR
from operators.config import ASRConfig


@pytest.mark.parametrize("bed", ["noise", "hum"])
def test_the_original_line_cannot_be_heard_in_the_background(tmp_path, bed):
    track = str(tmp_path / "src.wav")
    cues = dummies.speech_track([(1.0, "Good morning, this is the weather report.")], 5.0, track, background=bed)
    source, sr = audio.read_wav(track)
    asr = FasterWhisperASR(ASRConfig())
    assert "weather" in asr.transcribe_text(track, "en").lower()      # the line is there to begin with
    spans = [(c.start_s - 0.05, c.end_s + 0.05) for c in cues]
    background = audio.background_estimate(source, sr, spans, "spectral", -18.0, 0.08)
    audio.write_wav(str(tmp_path / "bg.wav"), background, sr)
    heard = asr.transcribe_text(str(tmp_path / "bg.wav"), "en").lower()
    assert not {"morning", "weather", "report"} & set(heard.replace(".", " ").replace(",", " ").split()), heard

    def level_db(x):
        return 20 * np.log10(np.sqrt(np.mean(x ** 2)))
    inside = background[int(cues[0].start_s * sr):int(cues[0].end_s * sr)]
    outside = source[int(3.8 * sr):]
    assert level_db(inside) > level_db(outside) - 4.0                    # the bed stays (no ducking hole)


def test_each_line_gets_its_own_loudness_in_the_source_and_the_dub(tmp_path):
    """The source says line 2 10 dB quieter than line 1; the dub says both alike. One gain matches the
    dialogue as a whole (by energy: 10 log10((1 + 0.1) / 2) = -2.6 dB under line 1), so per line the dub is
    2.6 LU under the source in line 1 and 7.4 LU over it in line 2."""
    from operators.config import Config
    from operators.mix import Mix

    sr, rng = 48000, np.random.default_rng(3)
    source = np.zeros((6 * sr, 2), dtype=np.float32)
    source[int(0.5 * sr):int(2.0 * sr)] = 0.2 * rng.standard_normal((int(1.5 * sr), 1))
    source[int(3.5 * sr):int(5.0 * sr)] = 0.2 * 10 ** (-10 / 20) * rng.standard_normal((int(1.5 * sr), 1))
    audio.write_wav(tmp_path / "source.wav", source, sr)
    lines = []
    for i, start in enumerate((0.5, 3.5)):
        audio.write_wav(tmp_path / f"{i}.wav", 0.05 * rng.standard_normal((int(1.5 * 22050), 1)), 22050)
        lines.append({"segment_id": f"v@{i}", "start_s": start, "end_s": start + 1.5, "target_text": "hola",
                      "fit_uri": str(tmp_path / f"{i}.wav"), "placed_start_s": start, "placed_end_s": start + 1.5})
    row = {"video_id": "v", "lang": "es", "source_audio_uri": str(tmp_path / "source.wav"), "segments": lines}
    out = Mix(Config(), str(tmp_path / "work"), str(tmp_path / "out")).process_row(row)
    one, two = out["segments"]
    assert one["source_lufs"] - two["source_lufs"] == pytest.approx(10.0, abs=0.5)
    assert one["dub_lufs"] == pytest.approx(two["dub_lufs"], abs=0.5)
    assert one["loudness_diff_lu"] == pytest.approx(10 * np.log10(1.1 / 2), abs=0.5)
    assert two["loudness_diff_lu"] - one["loudness_diff_lu"] == pytest.approx(10.0, abs=0.5)
    assert abs(out["loudness_diff_lu"]) < 0.5                      # the dialogue as a whole is matched


def test_a_long_mix_is_made_block_by_block_in_the_memory_of_a_block(tmp_path):
    """An 8-minute 48 kHz stereo source (184 MB as float32; the mix held five such copies before it
    went block by block) with lines across the 30 s block edges and one over two edges. The dub
    track equals the mix of the whole track at once, to 16-bit rounding, and the stage's peak
    allocation (numpy's arrays, traced) stays under 120 MB whatever the length."""
    import tracemalloc

    from operators.config import Config
    from operators.mix import Mix

    sr, seconds, rng = 48000, 480.0, np.random.default_rng(5)
    n = int(seconds * sr)
    bed = (0.02 * rng.standard_normal((n, 2))).astype(np.float32)
    starts = [(29.0, 2.5), (59.2, 1.5), (88.0, 35.0), (300.0, 3.0), (478.5, 1.5)]     # (start, length)
    source = bed.copy()
    for start, length in starts:
        lo = int(start * sr)
        source[lo:lo + int(length * sr)] += 0.2 * rng.standard_normal((int(length * sr), 1)).astype(np.float32)
    audio.write_wav(tmp_path / "source.wav", source, sr)
    source = audio.read_wav(tmp_path / "source.wav")[0]          # as the stage reads it (16-bit)
    del bed
    lines, clips = [], []
    for i, (start, length) in enumerate(starts):
        clip = (0.08 * rng.standard_normal((int(length * 22050), 1))).astype(np.float32)
        audio.write_wav(tmp_path / f"{i}.wav", clip, 22050)
        clips.append((start, audio.resample(audio.read_wav(tmp_path / f"{i}.wav")[0], 22050, sr)))
        lines.append({"segment_id": f"v@{i}", "start_s": start, "end_s": start + length, "target_text": "hola",
                      "fit_uri": str(tmp_path / f"{i}.wav"), "placed_start_s": start,
                      "placed_end_s": start + length})
    row = {"video_id": "v", "lang": "es", "source_audio_uri": str(tmp_path / "source.wav"), "segments": lines}

    tracemalloc.start()
    try:
        out = Mix(Config(), str(tmp_path / "work"), str(tmp_path / "out")).process_row(row)
        peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()
    assert peak_mb < 120, f"the mix of an 8-minute track allocated {peak_mb:.0f} MB at its peak"

    spans = [(s["start_s"], s["end_s"]) for s in lines]
    expected = audio.background_estimate(source, sr, spans + spans, "spectral", -18.0, 0.08)
    expected += audio.apply_gain_db(audio.place(clips, n, sr, 2), out["dub_gain_db"])
    expected, _ = audio.limit_peak(expected, sr)
    mixed, mixed_sr = audio.read_wav(out["dub_audio_uri"])
    assert mixed_sr == sr and mixed.shape == expected.shape
    assert np.max(np.abs(mixed - np.clip(expected, -1, 1))) < 2.0 / 32768
    assert abs(out["loudness_diff_lu"]) < 0.1                   # one gain matched the dialogue as a whole
