"""Build the demo catalog from scratch: `python -m catalogs.demo.build [--out DIR] [--force]`.

Four rows, every file synthesized here (Piper speech over a quiet background,
public-domain portraits) so nothing binary lives in git:

- astronaut-greeting  a talking head (her mouth moves with the English speech);
                      no source subtitles (ASR runs); German subtitles given
- cameraman-weather   a still of a man in profile with a slow zoom: nobody on
                      screen speaks, so the lips stage must leave it untouched;
                      English source subtitles (ASR skipped); German subtitles given
- astronaut-recipe    a talking head, mirrored and framed differently;
                      source_lang "en", German subtitles (WebVTT) given
- broken-upload       the first 4096 bytes of astronaut-greeting.mp4: must fail

Spanish always comes from machine translation (Apertium en->es), so the
English lines are short declaratives it translates well, and the German
subtitles are faithful hand translations, so a back-transcription of either
dub is checkable against a known text. Idempotent: a clip whose files all
exist is kept unless --force.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

DEFAULT_OUT = Path(__file__).resolve().parent / "build"
CATALOG_NAME = "catalog.jsonl"
# Bumped when the clips change, so a build folder from an older builder is rebuilt, not kept.
BUILD_VERSION = "3"   # 2: talking heads; 3: Piper without sampling noise (the same media on every build)
FPS = 25
SIZE = (640, 360)


@dataclass(frozen=True)
class Line:
    start_s: float
    en: str
    de: str


@dataclass(frozen=True)
class Clip:
    video_id: str
    image: str                      # "astronaut", "astronaut-mirrored" or "camera"
    face_height_px: int | None      # a talking head with this face size; None: a still with a zoom
    duration_s: float
    background: str | None
    lines: tuple[Line, ...]
    # pt: Apertium reaches it from English through Spanish (en-es, then es-pt)
    target_langs: tuple[str, ...] = ("es", "de", "pt")
    source_lang: str | None = None
    source_subtitles: str | None = None          # extension of the English sidecar, None = no sidecar
    translated_subtitles: dict[str, str] = field(default_factory=dict)   # lang -> extension

    def files(self) -> dict[str, str]:
        """Catalog column -> file name in the out dir."""
        out = {"uri": f"{self.video_id}.mp4"}
        if self.source_subtitles:
            out["source_subtitles_uri"] = f"{self.video_id}.en{self.source_subtitles}"
        for lang, ext in self.translated_subtitles.items():
            out[f"subtitles_uri_{lang}"] = f"{self.video_id}.{lang}{ext}"
        return out


CLIPS = (
    Clip("astronaut-greeting", "astronaut", 130, 10.0, "hum", (
        Line(0.8, "Hello, I am an astronaut.", "Hallo, ich bin Astronaut."),
        Line(4.0, "I see the earth from my window.", "Ich sehe die Erde von meinem Fenster aus."),
        Line(7.2, "The earth is very beautiful.", "Die Erde ist sehr schön."),
    ), translated_subtitles={"de": ".srt"}),
    Clip("cameraman-weather", "camera", None, 10.0, "noise", (
        Line(0.6, "Good morning, this is the weather report.", "Guten Morgen, hier ist der Wetterbericht."),
        Line(4.0, "The sun is warm and the sky is blue.", "Die Sonne ist warm und der Himmel ist blau."),
        Line(7.4, "Tomorrow it will rain in the city.", "Morgen wird es in der Stadt regnen."),
    ), source_lang="en", source_subtitles=".srt", translated_subtitles={"de": ".srt"}),
    Clip("astronaut-recipe", "astronaut-mirrored", 150, 9.0, "hum", (
        Line(0.7, "We make a cake today.", "Wir backen heute einen Kuchen."),
        Line(3.3, "Mix the eggs with the sugar.", "Verrühre die Eier mit dem Zucker."),
        Line(6.0, "The cake is ready in one hour.", "Der Kuchen ist in einer Stunde fertig."),
    ), source_lang="en", translated_subtitles={"de": ".vtt"}),
)
BROKEN_ID = "broken-upload"
BROKEN_FROM = "astronaut-greeting"
BROKEN_KEEP_BYTES = 4096


def _image(name: str) -> np.ndarray:
    from catalogs.dummies import portrait

    if name == "astronaut":
        return np.ascontiguousarray(portrait("astronaut")[10:330, 60:420])      # head and shoulders
    if name == "astronaut-mirrored":
        # Mirrored and framed tighter: a different shot from the greeting clip.
        return np.ascontiguousarray(portrait("astronaut")[30:280, 110:380][:, ::-1])
    return portrait(name)


def _build_clip(clip: Clip, out: Path, tmp: Path) -> None:
    from catalogs import dummies

    wav = tmp / f"{clip.video_id}.wav"
    cues = dummies.speech_track([(line.start_s, line.en) for line in clip.lines], clip.duration_s,
                                str(wav), background=clip.background)
    files = clip.files()
    # Build every file beside its destination, then rename: an interrupted
    # build never leaves a partial file that a later run would keep.
    staged: dict[str, Path] = {}
    staged["uri"] = tmp / files["uri"]
    if clip.face_height_px:
        face = dummies.FaceSpec(_image(clip.image), (SIZE[0] / 2, SIZE[1] / 2), clip.face_height_px)
        dummies.talking_video(str(staged["uri"]), clip.duration_s, [face], str(wav), fps=FPS, size=SIZE)
    else:
        dummies.still_video(_image(clip.image), str(staged["uri"]), clip.duration_s, str(wav), fps=FPS, size=SIZE)
    if clip.source_subtitles:
        staged["source_subtitles_uri"] = tmp / files["source_subtitles_uri"]
        dummies.write_subtitles(cues, str(staged["source_subtitles_uri"]))
    for lang in clip.translated_subtitles:
        if lang != "de":
            raise ValueError(f"{clip.video_id}: the demo only has German translations, not {lang!r}")
        column = f"subtitles_uri_{lang}"
        staged[column] = tmp / files[column]
        translated = [dummies.Cue(cue.start_s, cue.end_s, line.de) for cue, line in zip(cues, clip.lines)]
        dummies.write_subtitles(translated, str(staged[column]))
    for column, path in staged.items():
        os.replace(path, out / files[column])


def _rows() -> list[dict]:
    rows = []
    for clip in CLIPS:
        row: dict = {"video_id": clip.video_id, **clip.files(), "target_langs": list(clip.target_langs)}
        if clip.source_lang:
            row["source_lang"] = clip.source_lang
        rows.append(row)
    rows.append({"video_id": BROKEN_ID, "uri": f"{BROKEN_ID}.mp4", "target_langs": ["es", "de", "pt"]})
    return rows


def build(out_dir: str | os.PathLike = DEFAULT_OUT, force: bool = False,
          log: Callable[[str], None] = print) -> Path:
    """Build the demo catalog into `out_dir`; return the path of its catalog.jsonl.

    Clips whose files all exist are kept unless `force`. Uris in the catalog
    are relative to `out_dir`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stamp = out / ".build-version"
    if not stamp.is_file() or stamp.read_text().strip() != BUILD_VERSION:
        force = True
    rebuilt: set[str] = set()
    with tempfile.TemporaryDirectory(dir=out, prefix=".building-") as tmp_name:
        tmp = Path(tmp_name)
        for clip in CLIPS:
            names = list(clip.files().values())
            if not force and all((out / name).is_file() for name in names):
                log(f"kept   {', '.join(names)}")
                continue
            started = time.perf_counter()
            _build_clip(clip, out, tmp)
            rebuilt.add(clip.video_id)
            log(f"built  {', '.join(names)}  ({clip.duration_s:.1f} s clip, {len(clip.lines)} lines, "
                f"{time.perf_counter() - started:.1f} s)")

        from catalogs.dummies import truncated_copy

        broken = out / f"{BROKEN_ID}.mp4"
        if force or BROKEN_FROM in rebuilt or not broken.is_file():
            staged = tmp / broken.name
            truncated_copy(str(out / f"{BROKEN_FROM}.mp4"), str(staged), keep_bytes=BROKEN_KEEP_BYTES)
            os.replace(staged, broken)
            log(f"built  {broken.name}  (first {BROKEN_KEEP_BYTES} bytes of {BROKEN_FROM}.mp4)")
        else:
            log(f"kept   {broken.name}")

    if force:
        stamp.write_text(BUILD_VERSION + "\n")
    catalog = out / CATALOG_NAME
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in _rows())
    if force or not catalog.is_file() or catalog.read_text(encoding="utf-8") != text:
        catalog.write_text(text, encoding="utf-8")
        log(f"wrote  {catalog} ({text.count(chr(10))} rows)")
    else:
        log(f"kept   {catalog} ({text.count(chr(10))} rows)")
    return catalog


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m catalogs.demo.build", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"output folder (default: {DEFAULT_OUT})")
    parser.add_argument("--force", action="store_true", help="rebuild files that already exist")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    catalog = build(args.out, force=args.force)
    print(f"demo catalog: {catalog}  ({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
