"""Every output and work path comes from operators.paths, and none can leave its root."""
import os

import numpy as np
import pytest

from operators import audio, paths
from operators.config import Config
from operators.fit_duration import FitDuration
from operators.paths import UnsafePath

ESCAPES = ["..", "../x", "a/../../b", "/etc", "a/b", "", ".hidden", "a\\..\\b", "x\n", "%2e%2e", "~", "a b"]
ROOTS = ["/tmp/raydub-root/out", "s3://bucket/out"]


@pytest.mark.parametrize("root", ROOTS)
@pytest.mark.parametrize("bad", ESCAPES)
def test_no_input_escapes_its_root(root, bad):
    """Each catalog value that becomes part of a path, tried with each escape."""
    builders = [
        lambda v: paths.video_work(root, v, "source.wav"),            # video_id
        lambda v: paths.video_work(root, "a", v),                     # a file name
        lambda v: paths.line_audio(root, v, "es", 0, "tts"),          # video_id
        lambda v: paths.line_audio(root, "a", v, 0, "fit"),           # lang
        lambda v: paths.rendered_video(root, v, "es"),
        lambda v: paths.rendered_video(root, "a", v),
        lambda v: paths.marker(root, v, "es"),
        lambda v: paths.marker(root, "a", v),
        lambda v: paths.output(root, v, "es", ".mp4"),
        lambda v: paths.output(root, "a", v, ".mp4"),
        lambda v: paths.partition(root, v),
    ]
    for build in builders:
        with pytest.raises(UnsafePath):
            build(bad)


@pytest.mark.parametrize("root", ROOTS)
def test_good_values_stay_under_the_root(root):
    for p in (paths.video_work(root, "ep-01.v2", "faces.npz"), paths.line_audio(root, "ep", "pt-br", 12, "fit"),
              paths.rendered_video(root, "ep", "es-419"), paths.marker(root, "ep", "de"),
              paths.output(root, "ep", "es", ".srt"), paths.partition(root + "/manifest", "es")):
        assert p.startswith(root + "/")
    assert paths.line_audio(root, "ep", "de", 7, "tts") == f"{root}/ep/de/0007.tts.wav"
    assert paths.partition(root, "pt-br") == f"{root}/lang=pt-br/part-0.parquet"


def test_ids_that_look_like_artifact_names_never_share_a_file():
    """Ids like 'a.tts.wav' and 'a.fit.wav' used to collide: fit paths were made by replacing '.tts.wav' in a URI."""
    root = "/tmp/raydub-root/_work"
    ids = ["a", "a.tts.wav", "a.fit.wav", "a.es", "a.es.mp4", "render", "a.tts", "a.es.dual"]
    langs = ["es", "de", "pt-br"]
    made = []
    for vid in ids:
        for name in ("source.wav", "asr16k.wav", "faces.npz", "lip_models.npz"):
            made.append(paths.video_work(root, vid, name))
        for lang in langs:
            made += [paths.line_audio(root, vid, lang, i, stage) for i in range(3) for stage in ("tts", "fit")]
            made += [paths.rendered_video(root, vid, lang), paths.marker(root, vid, lang)]
            made += [paths.output("/tmp/raydub-root", vid, lang, s)
                     for s in (".mp4", ".wav", ".srt", ".vtt", ".dual.vtt", ".dual.srt")]
    assert len(made) == len(set(made))


def test_fit_paths_come_from_ids_not_from_the_tts_uri(tmp_path):
    """FitDuration writes where paths.line_audio says, whatever the synthesized file was called."""
    work = str(tmp_path / "work")
    odd = tmp_path / "elsewhere" / "a.tts.wav"      # a tts_uri whose text contains '.tts.wav' twice
    odd.parent.mkdir()
    audio.write_wav(str(odd), np.zeros((8000, 1), dtype=np.float32), 16000)
    row = {"video_id": "a.tts.wav", "lang": "es", "duration_s": 3.0, "segments": [
        {"segment_id": "a@0-1000", "start_s": 0.0, "end_s": 1.0, "tts_uri": str(odd), "tts_duration_s": 0.5}]}
    op = FitDuration(Config(), work, str(tmp_path / "out"))
    (seg,) = op.process_row(row)["segments"]
    assert seg["fit_uri"] == paths.line_audio(work, "a.tts.wav", "es", 0, "fit")
    assert os.path.exists(seg["fit_uri"]) and os.path.exists(odd)


def test_no_stage_joins_a_path_from_row_values_by_hand():
    """Stages build paths through operators.paths only; manifest.py joins fixed names to OUT and WORK."""
    import pathlib
    import re

    root = pathlib.Path(__file__).resolve().parent.parent / "operators"
    by_hand = {}
    for f in root.rglob("*.py"):
        if f.name in ("uri.py", "paths.py"):
            continue
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if re.search(r"uris\.join\(|os\.path\.join\(.*(row|video_id|lang)|\.replace\(\"\.tts", line) and \
                    not re.search(r'uris\.join\((out_dir|work_dir), "(_results|manifest|segments)"\)', line):
                by_hand[f"{f.relative_to(root)}:{n}"] = line.strip()
    assert by_hand == {}
