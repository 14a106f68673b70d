"""A talking photo's source video: the still, held for as long as its speech, kept from looking frozen.

A catalog row whose `uri` is an image and whose `audio_uri` is the speech
becomes, at the probe stage, an ordinary source video in the work dir: the
photo at 25 fps with the speech as its audio track. From there it is dubbed
like any video; its mouth is drawn by the speaker-independent loudness mouth
(operators/lipsync.py, LoudnessMouth), since a photo's mouth never moves.

So that it does not look frozen, the picture:
- moves a little, as a head held by a living person does: a slow, smooth
  drift of a few pixels, a degree of roll and a percent of scale (sums of
  slow sines with incommensurate periods, seeded by the video id, so a
  re-run makes the same video);
- blinks, every 2.5-6 s, each blink 0.2 s: the upper eyelids warped down
  onto the lower ones and back, where a face and its eyes are found.
"""
from __future__ import annotations

import zlib

import numpy as np

FPS = 25
MAX_SIDE_PX = 1920
DRIFT_PX, ROLL_DEG, ZOOM = 4.0, 0.8, 0.01
BLINK_S = 0.2
BLINK_EVERY_S = (2.5, 6.0)
# Upper and lower eyelid points of the 68-point layout (face_geometry), right eye then left.
UPPER_LIDS = (37, 38, 43, 44)
LOWER_LIDS = (41, 40, 47, 46)


def _read_image(path: str) -> np.ndarray:
    """RGB, at most MAX_SIDE_PX on its longer side, even width and height (4:2:0 video)."""
    import cv2

    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: not an image OpenCV can read")
    h, w = bgr.shape[:2]
    scale = min(1.0, MAX_SIDE_PX / max(h, w))
    w2, h2 = max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)
    if (w2, h2) != (w, h):
        bgr = cv2.resize(bgr, (w2, h2), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _wobble(t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A slow, smooth signal in [-1, 1]: three sines of 3-11 s periods, random phases."""
    periods = rng.uniform(3.0, 11.0, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)
    return sum(np.sin(2 * np.pi * t / p + f) for p, f in zip(periods, phases)) / 3


def blink_times_s(duration_s: float, rng: np.random.Generator) -> list[float]:
    out, t = [], rng.uniform(0.8, 2.0)
    while t < duration_s - BLINK_S:
        out.append(float(t))
        t += rng.uniform(*BLINK_EVERY_S)
    return out


def closure(t_s: float, blinks: list[float]) -> float:
    """0 (open) to 1 (shut) at time t: each blink closes and opens again over BLINK_S."""
    for b in blinks:
        if b <= t_s < b + BLINK_S:
            return float(1.0 - abs(2 * (t_s - b) / BLINK_S - 1.0))
    return 0.0


def blinked(image: np.ndarray, landmarks: np.ndarray, amount: float) -> np.ndarray:
    """The eyes closed by `amount` (0..1): upper lids warped towards the lower lids, inside each eye's box."""
    import cv2

    from operators.backends.warp_renderer import backward_map

    if amount <= 0:
        return image
    out = image.copy()
    height, width = image.shape[:2]
    for eye, upper, lower in ((range(36, 42), UPPER_LIDS[:2], LOWER_LIDS[:2]),
                              (range(42, 48), UPPER_LIDS[2:], LOWER_LIDS[2:])):
        points = landmarks[list(eye)]
        eye_w = float(np.ptp(points[:, 0]))
        if eye_w < 6:
            continue
        pad = 0.6 * eye_w
        x0, y0 = np.floor(points.min(axis=0) - pad).astype(int)
        x1, y1 = np.ceil(points.max(axis=0) + pad).astype(int)
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
        w, h = x1 - x0, y1 - y0
        if w < 8 or h < 8:
            continue
        offset = np.array([x0, y0], dtype=np.float64)
        src_lids = landmarks[list(upper)] - offset
        # Shut: the upper lid comes down to just above the lower one (a closed eye's lid is not flat).
        dst_lids = src_lids + amount * 0.9 * (landmarks[list(lower)] - landmarks[list(upper)])
        fixed = np.vstack([landmarks[list(lower)] - offset, landmarks[[36 if upper[0] < 42 else 42,
                                                                      39 if upper[0] < 42 else 45]] - offset])
        border = np.array([(x, y) for x in np.linspace(0, w - 1, 6) for y in (0, h - 1)]
                          + [(x, y) for y in np.linspace(0, h - 1, 6) for x in (0, w - 1)], dtype=np.float64)
        mx, my = backward_map(np.vstack([dst_lids, fixed, border]), np.vstack([src_lids, fixed, border]), w, h)
        roi = image[y0:y1, x0:x1].astype(np.float32)
        warped = cv2.remap(roi, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # The lid's skin over the eye: towards the shut position, the eye's own dark is covered by lid colour.
        lid = roi[np.clip(np.round(src_lids[:, 1] - 0.25 * eye_w).astype(int), 0, h - 1),
                  np.clip(np.round(src_lids[:, 0]).astype(int), 0, w - 1)].mean(axis=0)
        mask = np.zeros((h, w), np.float32)
        cv2.fillPoly(mask, [np.round(points - offset).astype(np.int32)], 1.0)
        mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.08 * eye_w))[..., None] * amount ** 2
        out[y0:y1, x0:x1] = np.clip(warped * (1 - mask) + lid * mask, 0, 255).astype(np.uint8)
    return out


def make_talking_photo(image_path: str, audio_path: str, out_path: str, seed_text: str, faces=None) -> dict:
    """Write the photo as an H.264 video as long as the speech, with the speech as its AAC track.

    `faces`: a face backend (detect, landmarks) for the blinks; None, or no face found: no blinks.
    Returns what was done: {"duration_s", "frames", "blinks", "face_found"}.
    """
    import av
    import cv2
    import soundfile

    from operators.media import ffmpeg

    image = _read_image(image_path)
    height, width = image.shape[:2]
    info = soundfile.info(audio_path) if audio_path.lower().endswith((".wav", ".flac", ".ogg")) else None
    duration_s = info.duration if info is not None else _duration_s(audio_path)
    if not duration_s or duration_s <= 0:
        raise ValueError(f"{audio_path}: the speech has no duration")
    rng = np.random.default_rng(zlib.crc32(seed_text.encode()))
    n = int(np.ceil(duration_s * FPS))
    t = np.arange(n) / FPS
    dx, dy = DRIFT_PX * _wobble(t, rng), DRIFT_PX * _wobble(t, rng)
    roll, zoom = ROLL_DEG * _wobble(t, rng), 1.0 + ZOOM * _wobble(t, rng)
    landmarks = None
    if faces is not None:
        found = sorted(faces.detect(image), key=lambda b: (b.x1 - b.x0) * (b.y1 - b.y0), reverse=True)
        if found:
            landmarks = faces.landmarks(image, found[0])
    blinks = blink_times_s(duration_s, rng) if landmarks is not None else []
    centre = (landmarks.mean(axis=0) if landmarks is not None else np.array([width / 2, height / 2]))
    picture_only = out_path + ".picture.mp4"
    with av.open(picture_only, "w") as sink:
        stream = sink.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for i in range(n):
            frame = blinked(image, landmarks, closure(t[i], blinks)) if landmarks is not None else image
            motion = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(roll[i]), float(zoom[i]))
            motion[:, 2] += (dx[i], dy[i])
            frame = cv2.warpAffine(frame, motion, (width, height), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                sink.mux(packet)
        for packet in stream.encode():
            sink.mux(packet)
    try:
        ffmpeg("-i", picture_only, "-i", audio_path, "-map", "0:v", "-map", "1:a:0", "-c:v", "copy",
               "-c:a", "aac", "-b:a", "192k", "-t", f"{n / FPS:.6f}", out_path)
    finally:
        import os

        os.remove(picture_only)
    return {"duration_s": n / FPS, "frames": n, "blinks": len(blinks), "face_found": landmarks is not None}


def _duration_s(path: str) -> float:
    import av

    with av.open(path) as c:
        if c.duration:
            return c.duration / 1e6
        stream = c.streams.audio[0]
        return float(stream.duration * stream.time_base) if stream.duration else 0.0
