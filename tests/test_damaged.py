"""Corrupt bytes in the middle of a file: the damaged stretch is named, the rest of the video is dubbed.

An H.264/AAC mp4 whose container is intact but whose media data has 4% of
its bytes overwritten with noise around the middle (about 8-10 s of 18 s).
ffmpeg reads every packet, but some neither decode as picture nor as sound.
"""
import json
import random
import subprocess

import numpy as np
import pytest
import soundfile as sf

from catalogs import dummies
from operators import manifest, paths
from operators.media import MediaError, check_complete, probe
from operators.schema import FAILED, OK
from pipelines.localize import run
from tests.conftest import small_config

LINES = [(0.4, "The house is red."), (2.6, "I drink coffee every morning."), (5.6, "The dog sleeps in the garden."),
         (8.4, "We walk to the market."), (12.5, "The book is on the table."), (15.3, "My brother plays the guitar.")]
DAMAGED_SHARE = (0.48, 0.52)


def damaged_copy(src: str, dst: str, share: tuple[float, float], seed: int = 1) -> None:
    data = bytearray(open(src, "rb").read())
    rng = random.Random(seed)
    for i in range(int(len(data) * share[0]), int(len(data) * share[1])):
        data[i] = rng.randrange(256)
    open(dst, "wb").write(data)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("damaged")
    cues = dummies.speech_track(LINES, 18.0, str(d / "speech.wav"), background="hum")
    head = dummies.portrait("astronaut")[20:300, 90:400]
    face = dummies.FaceSpec(head, (300, 185), 130, path=lambda t: (4 * t, 2 * np.sin(t)))
    dummies.talking_video(str(d / "good.mp4"), 18.0, [face], audio_wav=str(d / "speech.wav"),
                          background=(20, 30, 40))
    damaged_copy(str(d / "good.mp4"), str(d / "bad.mp4"), DAMAGED_SHARE)
    dummies.write_subtitles(cues, str(d / "bad.en.srt"))
    return d


def test_damage_inside_packets_is_not_a_truncated_file(media, tmp_path):
    assert check_complete(str(media / "good.mp4")) == []
    messages = check_complete(str(media / "bad.mp4"))
    assert messages and all(m.startswith("[") for m in messages)
    # an interrupted upload of a faststart file: its header is whole, its data is not
    faststart = tmp_path / "faststart.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(media / "good.mp4"), "-c", "copy",
                    "-movflags", "+faststart", str(faststart)], check=True)
    (tmp_path / "cut.mp4").write_bytes(faststart.read_bytes()[: faststart.stat().st_size // 2])
    with pytest.raises(MediaError, match="partial file"):
        check_complete(str(tmp_path / "cut.mp4"))


def test_a_file_damaged_in_the_middle_is_dubbed_around_the_damage(media, ray_local, tmp_path):
    catalog = media / "catalog.jsonl"
    catalog.write_text(json.dumps({"video_id": "bad", "uri": "bad.mp4", "source_lang": "en",
                                   "source_subtitles_uri": "bad.en.srt", "target_langs": ["es"]}) + "\n")
    out = str(tmp_path / "out")
    config = small_config(shards={"min_s": 3.0, "target_s": 4.0, "max_s": 5.5, "overlap_s": 0.5})
    summary = run(str(catalog), out, config=config)
    assert [r["status"] for r in summary.results] == [OK], summary.results
    row = manifest.read_manifest(out)[0]

    # The shards whose faces could not be analysed failed, named with their time range; the others did not.
    failed = [s for s in row["shards"] if s["status"] == FAILED]
    assert failed and len(failed) < len(row["shards"])
    for s in failed:
        assert f"shard {s['shard_index']} (" in s["error"] and "at faces" in s["error"]
        assert 6.0 < s["end_s"] and s["start_s"] < 11.0                   # around the damage
    # Their lines (by the line's middle, as the merge places them) keep their lips and say why; the lines
    # elsewhere are re-rendered.
    in_failed = [seg for seg in row["segments"]
                 if any(s["start_s"] <= (seg["start_s"] + seg["end_s"]) / 2 < s["end_s"] for s in failed)]
    assert in_failed and all(seg["lip_reason"] == "face analysis failed for this part of the video"
                             for seg in in_failed)
    assert row["frames_rerendered"] > 0
    assert any(seg["lip_frames_rendered"] for seg in row["segments"] if seg not in in_failed)

    # The picture keeps every frame and its timing; frames that did not decode are listed.
    source = probe(str(media / "bad.mp4"))
    dub = probe(row["video_out_uri"])
    assert dub.frame_count == source.frame_count == 450
    assert abs(dub.duration_s - source.duration_s) < 1e-3
    notes = " | ".join(row["source_notes"])
    assert "damaged data inside the file" in notes and "could not be decoded" in notes
    assert "the audio track has damaged frames" in notes

    # The sound after the damage stays in time: ffmpeg drops the frames it cannot decode, and the
    # extracted track would close the gap (every later line early) if the gap were not filled.
    good_work = tmp_path / "good.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(media / "good.mp4"), "-ar", "48000", "-ac", "2",
                    str(good_work)], check=True)
    extracted, sr = sf.read(paths.video_work(out + "/_work", "bad", "source.wav"))
    reference, _ = sf.read(str(good_work))
    assert len(extracted) == round(18.0 * sr)
    after = slice(int(14.0 * sr), int(17.0 * sr))
    assert np.max(np.abs(extracted[after] - reference[after])) < 0.01
