"""The demo's second catalog: a talking photo and a line replacement (ADR).

    python -m catalogs.demo.extras [--out DIR]

Built beside the demo catalog (it reuses the demo's talking head), into
DIR/extras.jsonl:

- astronaut-photo        the astronaut portrait as a still image (photo.jpg)
                         with English speech (photo.wav): a talking photo,
                         dubbed into Spanish (ASR finds the lines)
- astronaut-greeting-adr the demo's astronaut-greeting with its second line
                         re-voiced in English from new text: only that line's
                         voice and lips change

Run it with lips.mode = "tight" (catalogs/demo/tight.toml): `make demo-extras`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from catalogs.demo.build import DEFAULT_OUT, build

CATALOG_NAME = "extras.jsonl"
PHOTO_LINES = [(0.6, "Hello, I am a photograph."), (3.4, "Today I can talk to you.")]
PHOTO_SECONDS = 6.5
# astronaut-greeting's second line ("I see the earth from my window.") starts at 4.0 s
ADR_LINE = {"start_s": 4.0, "end_s": 6.4, "text": "I see the moon from my window tonight."}


def build_extras(out_dir: str | Path = DEFAULT_OUT, log=print) -> Path:
    import cv2

    from catalogs import dummies

    out = Path(out_dir)
    build(out, log=log)                              # the talking head the ADR row re-voices
    photo, speech = out / "photo.jpg", out / "photo.wav"
    if not photo.is_file():
        portrait = cv2.resize(dummies.portrait("astronaut"), (720, 720), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(photo), cv2.cvtColor(portrait, cv2.COLOR_RGB2BGR))
        log(f"built  {photo.name}")
    if not speech.is_file():
        dummies.speech_track(PHOTO_LINES, PHOTO_SECONDS, str(speech), background=None)
        log(f"built  {speech.name}")
    rows = [
        {"video_id": "astronaut-photo", "uri": photo.name, "audio_uri": speech.name, "source_lang": "en",
         "target_langs": ["es"]},
        {"video_id": "astronaut-greeting-adr", "uri": "astronaut-greeting.mp4", "source_lang": "en",
         "replace_lines": [ADR_LINE]},
    ]
    catalog = out / CATALOG_NAME
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    log(f"wrote  {catalog} ({len(rows)} rows)")
    return catalog


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m catalogs.demo.extras", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    build_extras(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
