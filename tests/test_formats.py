"""The files studios deliver, dubbed end to end: containers, codecs, odd sizes, 10-bit, audio that starts
late or ends early.

One pipeline run on a catalog with a row per format. Most rows take their lines from catalog subtitles
(no ASR) so they cost little; the late-audio row is transcribed, so its line times come from the audio
as extracted and show whether it was put in the right place. Rows made from a still portrait keep their
picture (the copy path); rows made from a talking head get new lips (the encode path).
"""
import json
import subprocess

import av
import numpy as np
import pytest

from catalogs import dummies
from operators import formats
from operators import audio as audio_io
from operators import manifest
from operators.config import Config, ConfigError
from operators.media import probe
from operators.schema import FAILED, OK
from pipelines.localize import run
from tests.conftest import small_config

SIZE = (320, 240)
DURATION_S = 3.0
LINE = (0.4, "Hello, I am an astronaut.")
GERMAN = "Hallo, ich bin Astronautin."
LATE_S = 0.5

# video_id: (base clip, ffmpeg output options, file suffix, expected (container, codec, copied, pixel format))
TRANSCODED = {
    "h264_mkv": ("still", ["-c:v", "copy", "-c:a", "copy"], ".mkv", ("mp4", "h264", True, "yuv420p")),
    "h264_mov": ("still", ["-c:v", "copy", "-c:a", "copy"], ".mov", ("mp4", "h264", True, "yuv420p")),
    "hevc_mp4": ("still", ["-c:v", "libx265", "-tag:v", "hvc1", "-c:a", "copy"], ".mp4", ("mp4", "hevc", True, "yuv420p")),
    "hevc_mkv": ("still", ["-c:v", "libx265", "-c:a", "copy"], ".mkv", ("mp4", "hevc", True, "yuv420p")),
    "hevc_mov": ("still", ["-c:v", "libx265", "-tag:v", "hvc1", "-c:a", "copy"], ".mov", ("mp4", "hevc", True, "yuv420p")),
    "prores_copy": ("still", ["-c:v", "prores_ks", "-c:a", "pcm_s16le"], ".mov", ("mov", "prores", True, "yuv422p10le")),
    "prores_lips": ("talking", ["-c:v", "prores_ks", "-c:a", "pcm_s16le"], ".mov",
                    ("mov", "prores", False, "yuv422p10le")),
    "odd_lips": ("talking", ["-vf", "scale=321:241", "-c:v", "libx264", "-pix_fmt", "yuv444p", "-c:a", "copy"], ".mp4",
                 ("mp4", "h264", False, "yuv444p")),
    "hevc10_lips": ("talking", ["-c:v", "libx265", "-pix_fmt", "yuv420p10le", "-tag:v", "hvc1", "-c:a", "copy"],
                    ".mkv", ("mp4", "h264", False, "yuv420p10le")),
}


def _ffmpeg(*args):
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args, "-x265-params", "log-level=error"]
                   if "libx265" in args else ["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True)


def _subtitled(d, video_id, uri, cue):
    dummies.write_subtitles([cue], str(d / f"{video_id}.en.srt"))
    dummies.write_subtitles([dummies.Cue(cue.start_s, cue.end_s, GERMAN)], str(d / f"{video_id}.de.srt"))
    return {"video_id": video_id, "uri": uri, "source_lang": "en", "target_langs": ["de"],
            "source_subtitles_uri": f"{video_id}.en.srt", "subtitles_uri_de": f"{video_id}.de.srt"}


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("formats")
    speech = str(d / "speech.wav")
    [cue] = dummies.speech_track([LINE], DURATION_S, speech, background=None)
    head = dummies.portrait("astronaut")[20:300, 90:400]
    dummies.still_video(head, str(d / "still.mp4"), DURATION_S, audio_wav=speech, size=SIZE)
    dummies.talking_video(str(d / "talking.mp4"), DURATION_S, [dummies.FaceSpec(head, (160, 120), 130)],
                          audio_wav=speech, size=SIZE)
    dummies.talking_video(str(d / "vfr.mp4"), DURATION_S, [dummies.FaceSpec(head, (160, 120), 130)],
                          audio_wav=speech, size=SIZE, vfr=True)
    rows = [_subtitled(d, "vfr_lips", "vfr.mp4", cue)]
    for video_id, (base, options, suffix, _) in TRANSCODED.items():
        _ffmpeg("-i", str(d / f"{base}.mp4"), *options, str(d / f"{video_id}{suffix}"))
        rows.append(_subtitled(d, video_id, f"{video_id}{suffix}", cue))
    # The audio stream starts LATE_S after the first frame (the line is heard at LINE[0] + LATE_S); transcribed.
    _ffmpeg("-i", str(d / "still.mp4"), "-itsoffset", str(LATE_S), "-i", str(d / "still.mp4"),
            "-map", "0:v", "-map", "1:a", "-c", "copy", str(d / "late.mp4"))
    rows.append({"video_id": "late", "uri": "late.mp4", "source_lang": "en", "target_langs": ["es"]})
    # The audio ends 1.2 s before the picture.
    _ffmpeg("-i", str(d / "still.mp4"), "-map", "0:v", "-map", "0:a", "-c:v", "copy", "-af", "atrim=0:1.8",
            "-c:a", "aac", str(d / "short.mp4"))
    rows.append(_subtitled(d, "short", "short.mp4", cue))
    # The audio starts after the picture has ended: nothing to dub.
    _ffmpeg("-i", str(d / "still.mp4"), "-itsoffset", "5", "-i", str(d / "still.mp4"),
            "-map", "0:v", "-map", "1:a", "-c", "copy", str(d / "gone.mp4"))
    rows.append(_subtitled(d, "gone", "gone.mp4", cue))
    catalog = d / "catalog.jsonl"
    catalog.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return d, str(catalog), cue


@pytest.fixture(scope="module")
def results(media, ray_local, tmp_path_factory):
    _, catalog, _ = media
    out = str(tmp_path_factory.mktemp("out"))
    run(catalog, out, config=small_config())
    return out, {r["video_id"]: r for r in manifest.read_manifest(out)}


def _frame_times(path):
    with av.open(path) as c:
        v = c.streams.video[0]
        start = float(v.start_time * v.time_base)
        return np.array([float(f.time) - start for f in c.decode(v)])


def _onset_s(path, audio_index=0):
    """When the first loud sample of an audio stream plays, in seconds after the first frame."""
    with av.open(path) as c:
        v = c.streams.video[0]
        video_start = float(v.start_time * v.time_base)
        for frame in c.decode(c.streams.audio[audio_index]):
            samples = frame.to_ndarray()
            samples = samples.reshape(-1, frame.layout.nb_channels) if frame.format.is_packed else samples.T
            loud = np.flatnonzero(np.abs(samples.astype(np.float64)).max(axis=1) > 0.1 * _full_scale(samples))
            if len(loud):
                return float(frame.time) + loud[0] / frame.sample_rate - video_start
    return None


def _full_scale(samples):
    return float(np.iinfo(samples.dtype).max) if samples.dtype.kind == "i" else 1.0


@pytest.mark.parametrize("video_id", ["vfr_lips", *TRANSCODED])
def test_each_format_dubs_with_the_source_frames_and_timing(results, media, video_id):
    out, rows = results
    d, _, cue = media
    row = rows[video_id]
    assert row["status"] == OK, row["error"]
    assert row["source_notes"] == []             # AAC priming offsets (21 ms in Matroska) are no news
    source = str(d / row["uri"].rsplit("/", 1)[-1])
    container, codec, copied, pixel_format = TRANSCODED.get(video_id, (None, None, None, None))[3] \
        if video_id in TRANSCODED else ("mp4", "h264", False, "yuv420p")
    assert (row["output_container"], row["output_video_codec"], row["output_video_copied"]) == \
        (container, codec, copied)
    assert row["video_out_uri"].endswith(f"/videos/{video_id}/{video_id}.de.{container}")
    assert row["lip_status"] == ("unchanged" if copied else "rendered"), row["lip_reason"]
    made = probe(row["video_out_uri"])
    src = probe(source)
    assert (made.frame_count, made.width, made.height) == (src.frame_count, src.width, src.height)
    assert (made.video_codec, made.pixel_format) == (codec, pixel_format)
    times, source_times = _frame_times(row["video_out_uri"]), _frame_times(source)
    assert len(times) == len(source_times) == row["frame_count"]
    np.testing.assert_allclose(times, source_times, atol=1e-3)
    # The original track (a:1) is heard where it was heard in the source, relative to the picture.
    assert _onset_s(row["video_out_uri"], 1) == pytest.approx(_onset_s(source), abs=0.025)
    assert _onset_s(source) == pytest.approx(cue.start_s, abs=0.025)
    # The dub track starts with the picture.
    with av.open(row["video_out_uri"]) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert float(a.start_time * a.time_base) == pytest.approx(float(v.start_time * v.time_base), abs=0.025)


def test_audio_that_starts_after_the_picture_is_dubbed_where_it_is_heard(results, media):
    out, rows = results
    d, _, cue = media
    row = rows["late"]
    assert row["status"] == OK, row["error"]
    assert row["audio_start_offset_s"] == pytest.approx(LATE_S, abs=0.03)      # AAC priming: 1024 samples
    assert row["source_notes"] == [f"audio starts +{row['audio_start_offset_s']:.3f} s from the first frame: "
                                   "silence put before it"]
    [line] = row["segments"]
    # Heard at LINE[0] + LATE_S in the picture's time: ASR finds it there, and the dub is placed there.
    assert line["start_s"] == pytest.approx(cue.start_s + LATE_S, abs=0.15)
    assert line["placed_start_s"] == line["start_s"]
    source, sr = audio_io.read_wav(f"{out}/_work/late/source.wav")
    assert len(source) == round(DURATION_S * sr)
    heard_s = _onset_s(str(d / "late.mp4"))                # what a player does: the stream's own start time
    assert heard_s == pytest.approx(_onset_s(str(d / "still.mp4")) + LATE_S, abs=0.025)
    assert np.flatnonzero(np.abs(source).max(axis=1) > 0.1)[0] / sr == pytest.approx(heard_s, abs=0.005)
    assert _onset_s(row["video_out_uri"], 1) == pytest.approx(heard_s, abs=0.025)


def test_audio_that_ends_before_the_picture_is_padded_with_silence(results):
    out, rows = results
    row = rows["short"]
    assert row["status"] == OK, row["error"]
    assert any("audio ends at 1.8" in n and "padded with silence" in n for n in row["source_notes"]), \
        row["source_notes"]
    source, sr = audio_io.read_wav(f"{out}/_work/short/source.wav")
    assert len(source) == round(DURATION_S * sr)
    assert not source[int(1.85 * sr):].any()
    assert probe(row["video_out_uri"]).frame_count == row["frame_count"] == 75


def test_audio_that_starts_after_the_picture_ends_fails_with_a_reason(results):
    _, rows = results
    row = rows["gone"]
    assert (row["status"], row["error_stage"]) == (FAILED, "probe")
    assert "after the first frame, past the picture's end (3.00 s)" in row["error"]


def test_matroska_frame_count_is_counted_not_estimated(media):
    d, _, _ = media
    # The file's duration includes the audio's AAC priming (3.021 s): round(3.021 * 25) would say 76.
    p = probe(str(d / "h264_mkv.mkv"))
    assert p.frame_count == 75 and p.duration_s == pytest.approx(3.0)


@pytest.mark.parametrize("source, size, output, expected", [
    (("h264", "yuv420p"), (640, 360), {}, ("mp4", "h264", True, "yuv420p")),
    (("prores", "yuv422p10le"), (640, 360), {}, ("mov", "prores", True, "yuv422p10le")),
    (("prores", "yuv422p10le"), (640, 360), {"container": "mp4"}, ("mp4", "h264", False, "yuv422p10le")),
    (("prores", "yuv422p10le"), (640, 360), {"audio_codec": "libopus"}, ("mkv", "prores", True, "yuv422p10le")),
    (("h264", "yuv420p"), (640, 360), {"container": "mkv", "video_codec": "hevc"}, ("mkv", "h264", True, "yuv420p")),
    (("h264", "yuv420p"), (641, 361), {"video_pixel_format": "yuv420p"}, ("mp4", "h264", True, "yuv420p")),
])
def test_output_format_when_the_picture_is_copied(source, size, output, expected):
    fmt = formats.choose(*source, *size, Config.from_dict({"output": output}).output, rerendered=False)
    assert (fmt.container, fmt.video_codec, fmt.copy, fmt.pixel_format) == expected


@pytest.mark.parametrize("source, size, output, expected", [
    (("h264", "yuv420p"), (640, 360), {}, ("mp4", "h264", "yuv420p")),
    (("hevc", "yuv420p10le"), (640, 360), {}, ("mp4", "h264", "yuv420p10le")),
    (("hevc", "yuv420p10le"), (640, 360), {"video_pixel_format": "yuv420p"}, ("mp4", "h264", "yuv420p")),
    (("h264", "yuv444p"), (641, 361), {}, ("mp4", "h264", "yuv444p")),
    (("prores", "yuv422p10le"), (641, 361), {}, ("mov", "prores", "yuv422p10le")),
    (("prores", "yuv422p10le"), (641, 361), {"container": "mp4", "video_codec": "hevc"}, ("mp4", "hevc", "yuv444p10le")),
    (("h264", "yuv420p"), (640, 360), {"container": "mov", "video_codec": "prores"}, ("mov", "prores", "yuv422p10le")),
])
def test_output_format_when_the_picture_is_encoded(source, size, output, expected):
    fmt = formats.choose(*source, *size, Config.from_dict({"output": output}).output, rerendered=True)
    assert (fmt.container, fmt.video_codec, fmt.pixel_format) == expected and not fmt.copy


@pytest.mark.parametrize("output, message", [
    ({"container": "mp4", "video_codec": "prores"}, "a mp4 file cannot hold prores video"),
    ({"container": "mov", "audio_codec": "libopus"}, "a mov file cannot hold libopus audio"),
    ({"video_codec": "prores", "video_pixel_format": "yuv420p"}, "prores cannot encode yuv420p"),
    ({"container": "webm"}, "output.container"),
])
def test_output_settings_no_container_can_write_are_refused(output, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"output": output})
