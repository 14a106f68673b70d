"""Shot detection decodes its own small frames: the cuts must be PySceneDetect's own, whatever the pixels."""
import subprocess

import numpy as np
import pytest

from catalogs import dummies
from operators.media import decoded, small_bgr
from operators.shots import shot_cuts

CUTS_S = (1.6, 3.2)


@pytest.fixture(scope="module")
def three_shots(tmp_path_factory) -> str:
    """Three shots of 1.6 s: a portrait drifting left, the same drifting right, then another person."""
    d = tmp_path_factory.mktemp("shots")
    clips = []
    for k, (name, drift) in enumerate((("astronaut", 30), ("astronaut", -30), ("camera", 20))):
        face = dummies.FaceSpec(dummies.portrait(name), (320, 180), 200, path=lambda t, v=drift: (v * t, 0),
                                animate=name == "astronaut")        # the man with a camera is in profile
        clips.append(str(d / f"{k}.mp4"))
        dummies.talking_video(clips[-1], CUTS_S[0], [face], size=(640, 360))
    out = str(d / "three.mp4")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *sum((["-i", c] for c in clips), []),
                    "-filter_complex", "[0:v][1:v][2:v]concat=n=3:v=1:a=0[v]", "-map", "[v]",
                    "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", out], check=True)
    return out


def _scenedetect_cuts(path: str) -> list[int]:
    from scenedetect import ContentDetector, detect

    return [s[0].frame_num for s in detect(path, ContentDetector(threshold=27.0, min_scene_len=15))][1:]


@pytest.mark.parametrize("options, suffix", [([], ".mp4"),                          # 8-bit 4:2:0: plane by plane
                                             (["-pix_fmt", "yuv420p10le"], ".mkv"),  # 10-bit: swscale
                                             (["-c:v", "prores_ks"], ".mov")])       # 4:2:2 10-bit: swscale
def test_the_cuts_are_pyscenedetects_own(three_shots, tmp_path, options, suffix):
    path = three_shots
    if options:
        path = str(tmp_path / f"recoded{suffix}")
        codec = [] if "-c:v" in options else ["-c:v", "libx264", "-crf", "18", "-preset", "veryfast"]
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", three_shots, *codec, *options, path],
                       check=True)
    cuts, n_frames = shot_cuts(path, 25.0, 27.0, 15)
    assert n_frames == 120
    assert cuts == [40, 80] == _scenedetect_cuts(path)


def test_a_small_frame_has_swscales_colours(three_shots):
    """The plane-by-plane path converts at the small size; swscale converts, then scales. Their filters and
    rounding differ by a few levels (about 2 on average here), a tenth of a cut's score threshold."""
    for i, _, frame in decoded(three_shots):
        if i in (10, 50, 100):
            mine = small_bgr(frame, 256, 144).astype(float)
            theirs = frame.reformat(width=256, height=144, format="bgr24").to_ndarray().astype(float)
            assert mine.shape == theirs.shape == (144, 256, 3)
            assert np.abs(mine - theirs).mean() < 3.0, i
