"""Benchmark of the lip stages on a 720p talking head: tracking fps, render fps, share re-rendered.

    .venv/bin/python bench/lipsync.py [--seconds 20] [--out bench-lips]

Runs the operators in this process, one after another (no Ray), so each
figure is one process's work (PyAV decode and x264 may add a thread):
face tracking (decode + detect every Nth frame + landmarks every frame),
the lip model, and the render stage
(decode + mouth re-render of speech frames + H.264 encode of every frame).
Render fps is given two ways: all frames of the video per second of the
render stage, and re-rendered frames per second of mouth rendering alone,
which is what grows with speech rather than with video length.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from catalogs import dummies  # noqa: E402
from operators.config import Config  # noqa: E402
from operators.schema import CATALOG, conform  # noqa: E402

LINES = ["Good evening, and welcome to the news.", "Today the weather was calm and warm.",
         "Tomorrow brings rain in the north.", "The markets closed a little higher.",
         "Thank you for watching, good night."]
GERMAN = ["Guten Abend und willkommen zu den Nachrichten.", "Heute war das Wetter ruhig und warm.",
          "Morgen bringt Regen im Norden.", "Die Märkte schlossen etwas höher.",
          "Danke fürs Zuschauen, gute Nacht."]


MOUTH_RENDER_S: list[float] = []


class TimedWarp:
    """The offline renderer, timing its `render` calls (mouth pixels only, no decode or encode)."""

    def __init__(self) -> None:
        from operators.backends.warp_renderer import WarpRenderer

        self.inner = WarpRenderer()

    def prepare(self, frames, landmarks):
        self.inner.prepare(frames, landmarks)

    def render(self, frame, landmarks, target_lips, audio_16k=None):
        t0 = time.perf_counter()
        out = self.inner.render(frame, landmarks, target_lips, audio_16k)
        MOUTH_RENDER_S.append(time.perf_counter() - t0)
        return out

    def model_info(self):
        return self.inner.model_info()


def build(out: str, seconds: float) -> str:
    os.makedirs(out, exist_ok=True)
    step = seconds / len(LINES)
    wav = os.path.join(out, "news.wav")
    cues = dummies.speech_track([(0.5 + i * step, t) for i, t in enumerate(LINES)], seconds, wav, background="hum")
    head = dummies.portrait("astronaut")[20:300, 90:400]
    dummies.talking_video(os.path.join(out, "news.mp4"), seconds, [dummies.FaceSpec(head, (640, 360), 300)],
                          audio_wav=wav, fps=25, size=(1280, 720))
    dummies.write_subtitles(cues, os.path.join(out, "news.en.srt"))
    dummies.write_subtitles([dummies.Cue(c.start_s, c.end_s, t) for c, t in zip(cues, GERMAN)],
                            os.path.join(out, "news.de.srt"))
    return out


def main() -> int:
    from operators.expand import ExpandLanguages
    from operators.render import RenderLips
    from pipelines.localize import ANALYZE, LOCALIZE, MERGE

    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--out", default="bench-lips")
    args = p.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    started = time.perf_counter()
    media = build(args.out, args.seconds)
    print(f"built a {args.seconds:.0f} s 1280x720 talking head in {time.perf_counter() - started:.1f} s")

    config = Config()
    work = os.path.join(args.out, "work")
    row = {"video_id": "news", "uri": os.path.join(media, "news.mp4"), "target_langs": ["de"], "source_lang": "en",
           "catalog_row": 1, "source_subtitles_uri": os.path.join(media, "news.en.srt"),
           "translations": [{"lang": "de", "subtitles_uri": os.path.join(media, "news.de.srt")}]}
    catalog = conform([row], CATALOG)
    table = catalog
    wall = {}
    # The pipeline's stages in order, one process, no Ray: the video's rows, then its shards', then
    # the video's again (the merge reads the shards' checkpoints), then per language; the stitch takes
    # all the shards' rows of the one (video, language) at once.
    before_merge = [cls for cls in ANALYZE if cls not in MERGE]
    for cls in (*before_merge, *MERGE, ExpandLanguages, *[c for c in LOCALIZE if c.name not in ("mux", "score", "sync")]):
        op = cls(config, work, work, backend=TimedWarp() if cls is RenderLips else None)
        op.setup()
        op._ready = True
        if cls is MERGE[0]:
            table = catalog
        t0 = time.perf_counter()
        table = op(table)
        wall[cls.name] = wall.get(cls.name, 0.0) + time.perf_counter() - t0
    r = table.to_pylist()[0]
    if r["status"] == "failed":
        print(f"failed at {r['error_stage']}: {r['error']}")
        return 1
    frames = r["frame_count"]
    rendered = r["frames_rerendered"]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; one process (PyAV decode and x264 may use a second thread)")
    print(f"video: {r['width']}x{r['height']}, {frames} frames, {r['duration_s']:.1f} s; "
          f"{len(r['face_tracks'])} face track(s), face {r['face_tracks'][0]['face_height_px']:.0f} px tall")
    print(f"face tracking: {wall['faces']:.1f} s = {frames / wall['faces']:.1f} fps "
          f"(detector every {config.faces.detect_every_frames} frames, landmarks every frame)")
    print(f"lip model fit: {wall['lip_model']:.2f} s (held-out R2 of mouth opening {r['lip_model_r2']:.2f})")
    print(f"render stage: {wall['render']:.1f} s for {frames} frames = {frames / wall['render']:.1f} fps "
          f"(decode + re-render + H.264 crf {config.output.video_crf} encode of every frame)")
    mouth_s = sum(MOUTH_RENDER_S)
    print(f"mouth rendering alone: {len(MOUTH_RENDER_S)} frames in {mouth_s:.1f} s = "
          f"{len(MOUTH_RENDER_S) / mouth_s:.1f} fps per core")
    print(f"re-rendered: {rendered} of {frames} frames ({r['share_rerendered']:.0%})")
    print(f"sync of the source against its own audio: offset {r['source_sync_offset_frames']} frames, "
          f"confidence {r['source_sync_confidence']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
