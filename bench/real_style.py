"""Benchmark of lips on real-style footage: heads that turn, roll and drift, a hand at the chin, cuts, 24 fps.

    .venv/bin/python bench/real_style.py [--minutes 2] [--lang es] [--mode natural] [--out bench-real]

The dialogue is cut from generated shots (1280x720, 24 fps, H.264 in
Matroska, AAC), rebuilt in --out/media when missing:
- "her": a close-up whose head turns up to 35 degrees either way, rolls and
  drifts, the suit's collar under the chin; a hand comes up to the chin in
  her second line;
- "him": a close-up of a second, low-resolution face (the LFW photograph,
  25 px enlarged: blurry, as the least flattering footage is), turning;
- "two-shot": both, smaller, speaking in turns, turning a little;
- "voice-over": a profile that does not speak while a line is heard.
Lines are English (Piper); the target text comes from Apertium (en-es) and
the speech from espeak-ng, so Spanish lines run longer than their slots.

Runs the pipeline once (embedded Ray, offline backends) and prints, from the
manifest: lines lip-synced over lines whose speaker is on screen (by
construction), the reasons for the rest; the visual scores per line
(percentiles); the lip model's R² per speaker; the share of lines at or past
the speed-up cap; seconds of speech cut. Frame strips of three lines,
source over dub, go to --out/strips (PNG) to be looked at.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FPS = 24
SIZE = (1280, 720)
BUILD_VERSION = "1"


@dataclass(frozen=True)
class Shot:
    name: str
    duration_s: float
    lines: tuple[tuple[float, str], ...]
    speakers: tuple[str | None, ...]          # per line: the face that speaks it ("her", "him"), None: off screen


SHOTS = (
    Shot("her", 9.0, ((0.6, "I have waited all week to tell you this."),
                      (4.6, "We are going back to the mountains in spring.")), ("her", "her")),
    Shot("him", 8.0, ((0.5, "That sounds wonderful, but the roads are closed."),
                      (4.4, "Who will drive the old truck this time?")), ("him", "him")),
    Shot("two-shot", 11.0, ((0.5, "I will drive it myself."), (3.3, "You said that last year."),
                            (6.4, "This year is different, I promise you.")), ("her", "him", "her")),
    Shot("voice-over", 7.0, ((0.7, "They left at dawn on the first of April."),), (None,)),
)


def _faces(shot: Shot, cues) -> list:
    from catalogs import dummies
    from catalogs.demo.build import _image

    def speaking(who: str):
        return [(c.start_s - 0.1, c.end_s + 0.1) for c, s in zip(cues, shot.speakers) if s == who]

    her_img, him_img = _image("astronaut"), dummies.portrait("lfw")
    if shot.name == "her":
        hand_line = cues[1]
        mid = (hand_line.start_s + hand_line.end_s) / 2
        return [dummies.FaceSpec(her_img, (SIZE[0] * 0.5, SIZE[1] * 0.55), 230, speaks=speaking("her"),
                                 turn=lambda t: 35.0 * math.sin(2 * math.pi * t / 7.0),
                                 roll=lambda t: 4.0 * math.sin(2 * math.pi * t / 5.0),
                                 path=lambda t: (40.0 * math.sin(2 * math.pi * t / 9.0), 10.0 * math.sin(t)),
                                 hand=lambda t: max(0.0, 1.0 - abs(t - mid) / 0.8))]
    if shot.name == "him":
        return [dummies.FaceSpec(him_img, (SIZE[0] * 0.45, SIZE[1] * 0.5), 220, speaks=speaking("him"),
                                 turn=lambda t: 25.0 * math.sin(2 * math.pi * t / 6.0 + 1.0),
                                 path=lambda t: (25.0 * math.sin(2 * math.pi * t / 8.0), 0.0))]
    if shot.name == "two-shot":
        return [dummies.FaceSpec(her_img, (SIZE[0] * 0.28, SIZE[1] * 0.5), 140, speaks=speaking("her"),
                                 turn=lambda t: 15.0 + 10.0 * math.sin(2 * math.pi * t / 6.0)),
                dummies.FaceSpec(him_img, (SIZE[0] * 0.72, SIZE[1] * 0.5), 140, speaks=speaking("him"),
                                 turn=lambda t: -15.0 - 10.0 * math.sin(2 * math.pi * t / 5.0))]
    return [dummies.FaceSpec(dummies.portrait("camera"), (SIZE[0] * 0.5, SIZE[1] * 0.5), 500, animate=False)]


def build(minutes: float, media: Path) -> tuple[Path, Path, list[dict]]:
    """The dialogue (mkv), its English subtitles, and per line: time, speaker, shot (cached in media)."""
    from catalogs import dummies

    media.mkdir(parents=True, exist_ok=True)
    name = f"dialogue-{minutes:g}min"
    mkv, srt, truth_json = media / f"{name}.mkv", media / f"{name}.en.srt", media / f"{name}.json"
    stamp = media / f"{name}.version"
    if all(p.is_file() for p in (mkv, srt, truth_json, stamp)) and stamp.read_text().strip() == BUILD_VERSION:
        return mkv, srt, json.loads(truth_json.read_text())
    cues = {}
    for shot in SHOTS:
        wav, mp4 = media / f"{shot.name}.wav", media / f"{shot.name}.mp4"
        cues[shot.name] = dummies.speech_track(list(shot.lines), shot.duration_s, str(wav), background="noise")
        t0 = time.perf_counter()
        dummies.talking_video(str(mp4), shot.duration_s, _faces(shot, cues[shot.name]), str(wav), fps=FPS, size=SIZE,
                              background=(40, 44, 52))
        print(f"built  shot {shot.name} ({time.perf_counter() - t0:.1f} s)", flush=True)
    order, total = [], 0.0
    while total < minutes * 60.0:
        order.append(SHOTS[len(order) % len(SHOTS)])
        total += order[-1].duration_s
    truth, en, offset = [], [], 0.0
    for shot in order:
        for cue, who in zip(cues[shot.name], shot.speakers):
            truth.append({"start_s": round(offset + cue.start_s, 3), "end_s": round(offset + cue.end_s, 3),
                          "speaker": who, "shot": shot.name})
            en.append(dummies.Cue(round(offset + cue.start_s, 3), round(offset + cue.end_s, 3), cue.text))
        offset += shot.duration_s
    with tempfile.TemporaryDirectory(dir=media) as tmp:
        pictures, sounds = Path(tmp) / "p.txt", Path(tmp) / "s.txt"
        pictures.write_text("".join(f"file '{media / s.name}.mp4'\n" for s in order))
        sounds.write_text("".join(f"file '{media / s.name}.wav'\n" for s in order))
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i",
                        str(pictures), "-f", "concat", "-safe", "0", "-i", str(sounds), "-map", "0:v", "-map", "1:a",
                        "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-r", str(FPS),
                        "-c:a", "aac", "-b:a", "128k", str(mkv)], check=True)
    dummies.write_subtitles(en, str(srt))
    truth_json.write_text(json.dumps(truth))
    stamp.write_text(BUILD_VERSION + "\n")
    return mkv, srt, truth


def strips(row: dict, segments: list[dict], out: Path) -> list[str]:
    """Source over dub, 6 frames across each of three lip-synced lines (the worst visual first)."""
    import cv2

    from pipelines.report import frame_strip_png

    out.mkdir(parents=True, exist_ok=True)
    done = []
    ranked = sorted([s for s in segments if s.get("lip_frames_rendered")], key=lambda s: s.get("visual_ssim") or 1)
    for s in ranked[:2] + ranked[-1:]:
        png = frame_strip_png(row, s)
        if png is None:
            continue
        path = out / f"{row['lang']}-{s['start_s']:07.2f}.png"
        path.write_bytes(png)
        done.append(str(path))
    return done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--lang", default="es")
    ap.add_argument("--mode", choices=("natural", "tight"), default="natural")
    ap.add_argument("--out", default="bench-real")
    args = ap.parse_args()

    from operators import manifest
    from operators.config import Config
    from pipelines.localize import run

    out = Path(args.out).resolve()
    mkv, srt, truth = build(args.minutes, out / "media")
    catalog = out / "catalog.jsonl"
    catalog.write_text(json.dumps({"video_id": mkv.stem, "uri": str(mkv), "source_lang": "en",
                                   "source_subtitles_uri": str(srt), "target_langs": [args.lang]}) + "\n")
    result_dir = out / f"run-{args.lang}-{args.mode}"
    config = Config.from_dict({"lips": {"mode": args.mode}, "run": {"resume": False}})
    t0 = time.perf_counter()
    run(str(catalog), str(result_dir), config=config)
    wall = time.perf_counter() - t0
    # an earlier run of another length into the same --out left its own row there too
    (row,) = [r for r in manifest.read_manifest(str(result_dir)) if r["video_id"] == mkv.stem]
    segments = row["segments"]
    print(f"\n{mkv.name}: {row['duration_s']:.0f} s, {len(segments)} lines, {args.lang}, lips.mode={args.mode}, "
          f"status {row['status']} {row.get('error') or ''}, {wall:.0f} s end to end")

    def match(seg):
        return next((t for t in truth if abs(t["start_s"] - seg["start_s"]) < 0.3), None)

    on_screen = [(s, match(s)) for s in segments if (match(s) or {}).get("speaker")]
    synced = [s for s, _ in on_screen if s.get("lip_frames_rendered")]
    print(f"lines whose speaker is on screen: {len(on_screen)}; lip-synced: {len(synced)} "
          f"({len(synced) / max(1, len(on_screen)):.0%})")
    left = {}
    for s, t in on_screen:
        if not s.get("lip_frames_rendered"):
            left.setdefault(f"{t['shot']}: {s.get('lip_reason')}", []).append(s["start_s"])
    for why, starts in left.items():
        print(f"  left alone, {len(starts)}: {why}")
    off = [s for s in segments if not (match(s) or {}).get("speaker")]
    print(f"voice-over lines: {len(off)}; given lips anyway: {sum(bool(s.get('lip_frames_rendered')) for s in off)}")
    for key in ("visual_ssim", "visual_seam", "visual_flicker", "mouth_shape_error", "sync_confidence"):
        values = np.array([s[key] for s in synced if s.get(key) is not None])
        if len(values):
            p = np.percentile(values, [0, 5, 50, 95, 100])
            print(f"{key:>18}: min {p[0]:.3f}  p5 {p[1]:.3f}  median {p[2]:.3f}  p95 {p[3]:.3f}  max {p[4]:.3f}")
    for sp in row["speakers"]:
        print(f"speaker {sp['speaker_id']}: tracks {len(sp['track_ids'])}, model {sp['lip_model_kind']}, "
              f"frames {sp['lip_model_frames']}, held-out R² "
              + (f"{sp['lip_model_r2']:.3f}" if sp["lip_model_r2"] is not None else "none"))
    rates = np.array([s["speech_rate"] for s in segments if s.get("fit_uri")])
    cap = Config().fit.max_speedup
    print(f"timing: {len(rates)} lines dubbed; at or past the {cap}x cap: {np.mean(rates >= cap - 1e-6):.1%}; "
          f"past it: {row['lines_over_cap']}; speech cut: {row['cut_s_total']:.2f} s in {row['lines_cut']} lines; "
          f"borrowed before: {row['lead_s_total']:.2f} s, after: {row['overflow_s_total']:.2f} s")
    tracks = row["face_tracks"]
    ends = {}
    for t in tracks:
        ends[t["end_reason"].split(" (")[0]] = ends.get(t["end_reason"].split(" (")[0], 0) + 1
    print(f"face tracks: {len(tracks)}, ended by: {ends}; face coverage {row['face_coverage']:.2f}")
    print(f"review: {row['review_reasons']}")
    for path in strips(row, segments, out / "strips" / f"{args.lang}-{args.mode}"):
        print(f"strip: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
