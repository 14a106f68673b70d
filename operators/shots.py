"""Shot boundaries, once per video (later stages render per shot)."""
from __future__ import annotations

from operators import uri as uris
from operators.base import Operator, Resources, require_module
from operators.schema import VIDEO


class DetectShots(Operator):
    name = "shots"
    reads = ("uri", "fps", "frame_count")
    writes = ("shots",)
    resources = Resources(num_cpus=1)
    output_schema = VIDEO

    def check_dependencies(self) -> None:
        require_module("scenedetect", "scenedetect-headless")

    def process_row(self, row: dict) -> dict:
        from scenedetect import ContentDetector, detect

        with uris.local_copy(row["uri"]) as path:
            cfg = self.config.shots
            scenes = detect(path, ContentDetector(threshold=cfg.threshold, min_scene_len=cfg.min_shot_frames),
                            show_progress=False)
        fps = row["fps"]
        bounds = [(s.get_frames(), e.get_frames()) for s, e in scenes] or [(0, row["frame_count"])]
        shots = [{"shot_index": i, "start_frame": a, "end_frame": b,
                  "start_s": a / fps, "end_s": b / fps} for i, (a, b) in enumerate(bounds)]
        return {**row, "shots": shots}
