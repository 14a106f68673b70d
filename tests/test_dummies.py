"""The synthesized test media: cue timing, background level, clip geometry, the demo catalog."""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pysubs2
import pytest
import soundfile

from catalogs import dummies
from catalogs.dummies import Cue

LINES = [(0.5, "The water is very cold."), (3.2, "We eat bread and cheese.")]
DURATION_S = 5.0


def _frame_rms(mono: np.ndarray, sample_rate_hz: int, frame_s: float = 0.005) -> np.ndarray:
    frame = int(frame_s * sample_rate_hz)
    n = len(mono) // frame
    return np.sqrt(np.mean(mono[: n * frame].reshape(n, frame) ** 2, axis=1))


def _dbfs(x: np.ndarray) -> float:
    return 20 * np.log10(np.sqrt(np.mean(x ** 2)))


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("dummies")


@pytest.fixture(scope="module")
def silent_track(media: Path) -> tuple[list[Cue], np.ndarray, int]:
    cues = dummies.speech_track(LINES, DURATION_S, str(media / "clean.wav"), background=None)
    audio, sample_rate_hz = soundfile.read(media / "clean.wav")
    return cues, audio, sample_rate_hz


def test_speech_track_format_and_cues(silent_track):
    cues, audio, sample_rate_hz = silent_track
    assert sample_rate_hz == 48000
    assert audio.shape == (int(DURATION_S * 48000), 2)
    assert [c.text for c in cues] == [text for _, text in LINES]
    assert [c.start_s for c in cues] == [start for start, _ in LINES]
    for cue in cues:
        # Piper's silence is trimmed: no line of these lengths lasts 2.5 s.
        assert 0.8 < cue.end_s - cue.start_s < 2.5


def test_speech_starts_at_its_cue_and_ends_inside_it(silent_track):
    cues, audio, sample_rate_hz = silent_track
    mono = audio.mean(axis=1)
    rms = _frame_rms(mono, sample_rate_hz)
    for cue in cues:
        first, last = int((cue.start_s - 0.2) / 0.005), int((cue.end_s + 0.2) / 0.005)
        window = rms[first:last]
        loud = np.flatnonzero(window > window.max() * 10 ** (-30 / 20))
        onset_s, offset_s = (first + loud[0]) * 0.005, (first + loud[-1] + 1) * 0.005
        assert abs(onset_s - cue.start_s) <= 0.05
        # Piper's last phoneme fades below -30 dB a little before the trimmed end, and its
        # synthesis is not bit-stable between runs (it missed by 2 ms once): allow 150 ms of tail.
        assert cue.end_s - 0.15 <= offset_s <= cue.end_s + 0.005
    # Without a background, everything outside the cues is digital silence.
    inside = np.zeros(len(mono), bool)
    for cue in cues:
        inside[int(cue.start_s * sample_rate_hz): int(np.ceil(cue.end_s * sample_rate_hz)) + 1] = True
    assert not np.any(audio[~inside])
    assert np.abs(audio).max() == pytest.approx(10 ** (dummies.SPEECH_PEAK_DBFS / 20), abs=0.01)


@pytest.mark.parametrize("background", ["hum", "noise"])
def test_background_between_lines_at_requested_level(media: Path, background: str):
    out = media / f"{background}.wav"
    cues = dummies.speech_track(LINES, DURATION_S, str(out), background=background, background_dbfs=-32.0)
    audio, sample_rate_hz = soundfile.read(out)
    gap = audio[int((cues[0].end_s + 0.1) * sample_rate_hz): int((cues[1].start_s - 0.1) * sample_rate_hz)]
    assert len(gap) > 0.5 * sample_rate_hz
    assert _dbfs(gap) == pytest.approx(-32.0, abs=3.0)
    # Stereo, not two copies of one channel: a downmix check would notice a mono bed.
    assert not np.array_equal(gap[:, 0], gap[:, 1])


def test_background_level_follows_the_argument(media: Path):
    out = media / "quiet.wav"
    cues = dummies.speech_track(LINES[:1], 3.0, str(out), background="hum", background_dbfs=-50.0)
    audio, sample_rate_hz = soundfile.read(out)
    tail = audio[int((cues[0].end_s + 0.1) * sample_rate_hz):]
    assert _dbfs(tail) == pytest.approx(-50.0, abs=3.0)


def test_speech_track_rejects_overlap_and_overrun(media: Path):
    with pytest.raises(ValueError, match="overlaps"):
        dummies.speech_track([(0.0, "The water is very cold."), (0.3, "We eat bread.")], 5.0,
                             str(media / "bad.wav"))
    with pytest.raises(ValueError, match="past the end"):
        dummies.speech_track([(0.5, "The water is very cold.")], 1.0, str(media / "bad.wav"))
    with pytest.raises(ValueError, match="before the track"):
        dummies.speech_track([(-0.1, "Hello.")], 3.0, str(media / "bad.wav"))
    with pytest.raises(ValueError, match="unknown background"):
        dummies.speech_track([(0.1, "Hello.")], 3.0, str(media / "bad.wav"), background="rain")


def test_speak_returns_the_file_duration(media: Path):
    out = media / "speak.wav"
    duration_s = dummies.speak("I drink coffee every morning.", str(out))
    info = soundfile.info(out)
    assert info.samplerate == 22050 and info.channels == 1
    assert duration_s == pytest.approx(info.frames / 22050)
    assert 1.0 < duration_s < 4.0


def _probe(path: Path) -> dict:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info = {
            "size": (video.codec_context.width, video.codec_context.height),
            "pix_fmt": video.codec_context.pix_fmt,
            "codec": video.codec_context.name,
            "fps": video.average_rate,
            "duration_s": float(container.duration / av.time_base),
            "audio": [(a.codec_context.name, a.codec_context.sample_rate, a.codec_context.channels)
                      for a in container.streams.audio],
        }
        frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    info["frames"] = len(frames)
    info["first_last_diff"] = float(np.abs(frames[0].astype(float) - frames[-1].astype(float)).mean())
    return info


def test_still_video_without_audio(media: Path):
    out = media / "still.mp4"
    dummies.still_video(dummies.portrait("camera"), str(out), 2.0, fps=25, size=(320, 180))
    info = _probe(out)
    assert info["size"] == (320, 180)
    assert (info["codec"], info["pix_fmt"]) == ("h264", "yuv420p")
    assert info["fps"] == 25
    assert info["frames"] == 50
    assert info["duration_s"] == pytest.approx(2.0, abs=1 / 25)
    assert info["audio"] == []
    assert info["first_last_diff"] > 0.5          # the slow zoom moves the picture


def test_still_video_with_audio(media: Path, silent_track):
    wav = media / "clean.wav"                    # 5 s at 48 kHz, longer than the clip: cut
    out = media / "talking.mp4"
    dummies.still_video(dummies.portrait(), str(out), 2.4, audio_wav=str(wav), fps=30, size=(640, 360))
    info = _probe(out)
    assert info["size"] == (640, 360)
    assert info["frames"] == 72
    assert info["duration_s"] == pytest.approx(2.4, abs=1 / 30)
    assert info["audio"] == [("aac", 48000, 2)]
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert float(audio.duration * audio.time_base) == pytest.approx(2.4, abs=1 / 30)


def test_still_video_pads_short_audio(media: Path):
    wav = media / "short.wav"
    dummies.silent_wav(str(wav), 0.5)
    info = soundfile.info(wav)
    assert (info.samplerate, info.channels, info.frames) == (48000, 2, 24000)
    out = media / "padded.mp4"
    dummies.still_video(dummies.portrait(), str(out), 1.0, audio_wav=str(wav), size=(160, 90))
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert float(audio.duration * audio.time_base) == pytest.approx(1.0, abs=1 / 25)


def test_still_video_rejects_odd_size(media: Path):
    with pytest.raises(ValueError, match="even"):
        dummies.still_video(dummies.portrait(), str(media / "odd.mp4"), 1.0, size=(321, 180))


def test_truncated_copy_cannot_be_opened(media: Path):
    src = media / "whole.mp4"
    dummies.still_video(dummies.portrait(), str(src), 1.0, size=(160, 90))
    with av.open(str(src)):
        pass
    dst = media / "truncated.mp4"
    dummies.truncated_copy(str(src), str(dst), keep_bytes=4096)
    assert dst.stat().st_size == 4096
    assert dst.read_bytes() == src.read_bytes()[:4096]
    with pytest.raises(av.error.FFmpegError):
        av.open(str(dst))          # the moov atom is at the end of the file: gone


@pytest.mark.parametrize("name", ["astronaut", "camera"])
def test_portrait_is_rgb_uint8(name: str):
    image = dummies.portrait(name)
    assert image.shape == (512, 512, 3) and image.dtype == np.uint8
    if name == "camera":
        assert np.array_equal(image[..., 0], image[..., 2])
    else:
        assert not np.array_equal(image[..., 0], image[..., 2])


@pytest.mark.parametrize("ext", [".srt", ".vtt"])
def test_write_subtitles_round_trip(media: Path, ext: str):
    cues = [Cue(0.7, 2.4761, "Die Erde ist sehr schön."), Cue(4.0, 5.5, "Zweite Zeile.")]
    path = media / f"subs{ext}"
    dummies.write_subtitles(cues, str(path))
    loaded = pysubs2.load(str(path), encoding="utf-8")
    assert [(e.start, e.end, e.plaintext) for e in loaded] == [
        (700, 2477, "Die Erde ist sehr schön."), (4000, 5500, "Zweite Zeile.")]
    assert path.read_text(encoding="utf-8").startswith("WEBVTT" if ext == ".vtt" else "1\n")


def test_write_subtitles_rejects_unknown_extension(media: Path):
    with pytest.raises(ValueError, match=".srt or .vtt"):
        dummies.write_subtitles([Cue(0.0, 1.0, "x")], str(media / "subs.ass"))


def test_demo_build(tmp_path: Path):
    from catalogs.demo import build

    log: list[str] = []
    catalog = build.build(tmp_path, log=log.append)
    rows = [json.loads(line) for line in catalog.read_text(encoding="utf-8").splitlines()]
    assert [r["video_id"] for r in rows] == [
        "astronaut-greeting", "cameraman-weather", "astronaut-recipe", "broken-upload"]
    for row in rows:
        assert row["target_langs"] == ["es", "de", "pt"]
        for column, uri in row.items():
            if column == "uri" or column.endswith("_uri") or column.startswith("subtitles_uri_"):
                assert not Path(uri).is_absolute() and ".." not in uri
                assert (tmp_path / uri).is_file(), (row["video_id"], column)
    by_id = {r["video_id"]: r for r in rows}
    assert "source_subtitles_uri" not in by_id["astronaut-greeting"]
    assert set(by_id["cameraman-weather"]) >= {"source_subtitles_uri", "subtitles_uri_de"}
    assert by_id["astronaut-recipe"]["source_lang"] == "en"

    for video_id in ("astronaut-greeting", "cameraman-weather", "astronaut-recipe"):
        info = _probe(tmp_path / by_id[video_id]["uri"])
        assert info["size"] == (640, 360) and info["audio"] == [("aac", 48000, 2)]
        assert 8.0 <= info["duration_s"] <= 12.0
    with pytest.raises(av.error.FFmpegError):
        av.open(str(tmp_path / by_id["broken-upload"]["uri"]))

    # German subtitles are timed to the English cues.
    english = pysubs2.load(str(tmp_path / by_id["cameraman-weather"]["source_subtitles_uri"]))
    german = pysubs2.load(str(tmp_path / by_id["cameraman-weather"]["subtitles_uri_de"]))
    assert [(e.start, e.end) for e in english] == [(e.start, e.end) for e in german]
    assert english[0].plaintext != german[0].plaintext

    # The real loader accepts it as it is.
    from operators.catalog import load_catalog

    table = load_catalog(str(catalog))
    assert table.column("video_id").to_pylist() == [r["video_id"] for r in rows]

    # A second run keeps every file.
    log.clear()
    mtimes = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    build.build(tmp_path, log=log.append)
    assert log and all(line.startswith("kept") for line in log)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == mtimes


def test_talking_video_mouth_follows_the_speech(tmp_path):
    """The drawn opening is what a landmark model measures: closed in silence, open on speech."""
    import av

    from operators import face_geometry as geometry
    from operators.backends import load_faces
    from operators.config import FacesConfig

    wav = str(tmp_path / "s.wav")
    dummies.speech_track([(0.6, "Hello, I am an astronaut.")], 3.0, wav)
    head = dummies.portrait("astronaut")[20:300, 90:400]
    truth = dummies.talking_video(str(tmp_path / "t.mp4"), 3.0, [dummies.FaceSpec(head, (320, 180), 130)],
                                  audio_wav=wav)
    with av.open(str(tmp_path / "t.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]
    assert len(frames) == len(truth["times_s"]) == 75
    faces = load_faces(FacesConfig())
    measured = np.array([geometry.mouth_opening(faces.landmarks(f, faces.detect(f)[0])) for f in frames])
    drawn = truth["opening"][0]
    assert np.corrcoef(measured, drawn)[0, 1] > 0.8
    assert measured[drawn == 0].mean() < 0.08 and measured[drawn > 0.3].mean() > 0.25


def test_talking_video_variable_frame_rate_and_no_face(tmp_path):
    import av

    dummies.talking_video(str(tmp_path / "v.mp4"), 2.0, [], vfr=True)
    with av.open(str(tmp_path / "v.mp4")) as c:
        pts = [f.pts for f in c.decode(c.streams.video[0])]
    assert len(set(np.diff(pts))) == 2                        # frames of one and of two periods
    with pytest.raises(ValueError, match="no face found"):
        dummies.talking_video(str(tmp_path / "x.mp4"), 1.0, [dummies.FaceSpec(dummies.portrait("camera"), (320, 180), 120)])
