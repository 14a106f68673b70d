"""Shot boundaries, once per video (later stages render per shot).

PySceneDetect's content detector (HSV change between consecutive frames)
scores frames at about 256 px wide. The frames are decoded here rather than
by PySceneDetect's own reader, which converts every frame to colour at full
size before scaling it down: on 1080p H.264 that conversion cost as much as
the decode. Here the picture is decoded without the loop filter and scaled
plane by plane before its colour conversion (the 5-minute 1080p episode:
40.6 CPU-s against 62.1, and 24.7 s against 40.3 s of wall time, with the same 31 shots).
"""
from __future__ import annotations

from operators import paths
from operators import uri as uris
from operators.base import Operator, Resources, require_module
from operators.media import decoded, frame_times, small_bgr
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
        with uris.local_copy(paths.picture(row)) as path:
            cuts, n_frames = shot_cuts(path, row["fps"], self.config.shots.threshold,
                                       self.config.shots.min_shot_frames)
        n_frames = n_frames or row["frame_count"]
        fps = row["fps"]
        starts = [0] + [c for c in cuts if 0 < c < n_frames]
        bounds = list(zip(starts, starts[1:] + [n_frames]))
        shots = [{"shot_index": i, "start_frame": a, "end_frame": b,
                  "start_s": a / fps, "end_s": b / fps} for i, (a, b) in enumerate(bounds)]
        return {**row, "shots": shots}


def shot_cuts(path: str, fps: float, threshold: float, min_shot_frames: int) -> tuple[list[int], int]:
    """(the first frame of every shot after the first, the number of frames).

    Frames are indexed by their presentation times (from the packets), so a
    stretch of damaged data that does not decode (tests/test_damaged.py) is
    passed over, and the frames after it keep their own indices.
    """
    from scenedetect import ContentDetector, FrameTimecode
    from scenedetect.scene_manager import compute_downscale_factor

    times = frame_times(path)
    detector = ContentDetector(threshold=threshold, min_scene_len=min_shot_frames)
    cuts: list[int] = []
    size, last = None, -1
    for i, _, frame in decoded(path, 0, None, times, damaged=[], preview=True):
        if size is None:
            factor = compute_downscale_factor(max(frame.width, frame.height))
            size = tuple(max(2, 2 * round(side / factor / 2)) for side in (frame.width, frame.height))
        cuts += [c.frame_num for c in detector.process_frame(FrameTimecode(i, fps), small_bgr(frame, *size))]
        last = i
    if last >= 0:
        cuts += [c.frame_num for c in detector.post_process(FrameTimecode(last, fps))]
    return sorted(set(cuts)), len(times)
