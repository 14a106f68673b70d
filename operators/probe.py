"""Probe a source video and extract its audio once, for every language after it.

A talking photo (an image `uri` with its speech in `audio_uri`) is first made
into the source video it stands for (operators/photo.py), in the work dir:
`photo_video_uri`, which every later stage decodes (paths.picture).
"""
from __future__ import annotations

import logging

from operators import paths, photo, provenance
from operators import uri as uris
from operators.catalog import is_image
from operators.base import Operator, Resources, require_binary
from operators.media import MediaError, check_complete, ffmpeg, probe
from operators.schema import VIDEO

log = logging.getLogger(__name__)

ASR_SAMPLE_RATE_HZ = 16000
# 5.1 in ffmpeg's (and WAV's) channel order: FL FR FC LFE BL BR (or SL SR); dialogue is in FC.
SURROUND_CHANNELS, CENTRE_CHANNEL = 6, 2
# Audio that ends this much before the picture gets a note in the manifest (it is padded with
# silence either way: a credits roll without sound is common and valid).
NOTE_AUDIO_SHORTFALL_S = 0.1
# An audio start offset this small is an encoder's priming (AAC: 1024 samples, 21 ms at 48 kHz),
# present in most files: applied, but not worth a note.
NOTE_AUDIO_OFFSET_S = 0.05


class ProbeMedia(Operator):
    name = "probe"
    reads = ("uri", "audio_track", "source_lang", "audio_uri")
    writes = ("photo_video_uri", "duration_s", "fps", "frame_count", "width", "height", "video_codec", "pixel_format",
              "audio_start_offset_s", "source_notes", "source_audio_track", "source_audio_layout", "source_audio_uri", "asr_audio_uri", "source_sha256")
    resources = Resources(num_cpus=1)
    output_schema = VIDEO

    def check_dependencies(self) -> None:
        require_binary("ffmpeg", "ffmpeg")

    def process_row(self, row: dict) -> dict:
        if is_image(row["uri"]):
            row = self._photo_video(row)
        if not uris.exists(paths.picture(row)):
            raise MediaError(f"source video not found: {uris.redacted(row['uri'])}")
        with uris.local_copy(paths.picture(row)) as path:
            p = probe(path, row.get("audio_track"), row.get("source_lang"))
            limit_s = self.config.shards.max_video_s
            if p.duration_s > limit_s:
                raise MediaError(f"the video is {_clock(p.duration_s)} long, over the limit of {_clock(limit_s)} "
                                 f"(shards.max_video_s)")
            damage = check_complete(path)
            # Once per video, not per language: every output's C2PA manifest cites the source by this hash.
            source_sha256 = provenance.file_sha256(path)
            if p.audio_sample_rate_hz is None:
                raise MediaError("no audio stream: there is no speech to dub")
            offset_s = p.audio_start_offset_s or 0.0
            notes = []
            if offset_s >= p.duration_s:
                raise MediaError(f"the audio starts {offset_s:.2f} s after the first frame, past the picture's "
                                 f"end ({p.duration_s:.2f} s): no sound plays with the picture")
            audio_end_s = offset_s + p.audio_duration_s if p.audio_duration_s is not None else None
            if audio_end_s is not None and audio_end_s <= 0:
                raise MediaError(f"the audio ends {-audio_end_s:.2f} s before the first frame: no sound plays "
                                 f"with the picture")
            if abs(offset_s) >= NOTE_AUDIO_OFFSET_S:
                notes.append(f"audio starts {offset_s:+.3f} s from the first frame: "
                             + ("silence put before it" if offset_s > 0 else "the part before the picture dropped"))
            if audio_end_s is not None and audio_end_s < p.duration_s - NOTE_AUDIO_SHORTFALL_S:
                notes.append(f"audio ends at {audio_end_s:.2f} s of {p.duration_s:.2f} s: padded with silence")
            notes = list(row.get("source_notes") or []) + notes
            if damage:
                notes.append(f"damaged data inside the file ({len(damage)} parser messages, first: {damage[0]}): "
                             f"frames that do not decode show the nearest frame that does, and a shard whose faces cannot "
                             f"be analysed keeps its lips")
            source_audio = paths.video_work(self.work_dir, row["video_id"], "source.wav")
            asr_audio = paths.video_work(self.work_dir, row["video_id"], "asr16k.wav")
            with uris.staged_output(source_audio) as hi, uris.staged_output(asr_audio) as lo:
                # One decode, two outputs: full quality for the mix, 16 kHz mono for ASR. Both start
                # with the first frame (the audio's own start offset applied, to the sample) and are
                # exactly as long as the picture, padded with silence where the audio ends early.
                # A 5.1 track is kept whole for the mix, which dubs its centre channel, where film
                # dialogue lives; ASR hears the centre alone (cleaner than a downmix with the effects).
                align = _align_filter(offset_s, p.audio_sample_rate_hz)
                surround = p.audio_channels == SURROUND_CHANNELS

                def per_output(extra: str) -> tuple[str, ...]:
                    return ("-map", f"0:a:{p.audio_track}", "-af", f"{align},apad{extra}",
                            "-t", f"{p.duration_s:.6f}", "-c:a", "pcm_s16le")

                audio_log = ffmpeg("-i", path,
                       *per_output(""), "-ac", str(SURROUND_CHANNELS if surround else 2),
                       "-ar", str(self.config.mix.sample_rate_hz), hi,
                       *per_output(f",pan=mono|c0=c{CENTRE_CHANNEL}" if surround else ""), "-ac", "1",
                       "-ar", str(ASR_SAMPLE_RATE_HZ), lo)
            if audio_log.strip():
                notes.append(f"the audio track has damaged frames ({len(audio_log.strip().splitlines())} decode "
                             f"errors): silence where they were, the rest kept in time")
        return {**row,
                "duration_s": p.duration_s, "fps": p.fps, "frame_count": p.frame_count,
                "width": p.width, "height": p.height, "video_codec": p.video_codec,
                "pixel_format": p.pixel_format, "audio_start_offset_s": p.audio_start_offset_s,
                "source_notes": notes, "source_audio_track": p.audio_track,
                "source_audio_layout": "5.1" if p.audio_channels == SURROUND_CHANNELS else "stereo",
                "audio_sample_rate_hz": p.audio_sample_rate_hz, "audio_channels": p.audio_channels,
                "source_audio_uri": source_audio, "asr_audio_uri": asr_audio, "source_sha256": source_sha256}


    def _photo_video(self, row: dict) -> dict:
        from operators.backends import load_faces

        for field in ("uri", "audio_uri"):
            if not row.get(field) or not uris.exists(row[field]):
                raise MediaError(f"talking photo: {field} not found: {uris.redacted(row.get(field) or '')}")
        out_uri = paths.video_work(self.work_dir, row["video_id"], "photo.mp4")
        try:
            faces = load_faces(self.config.faces)
        except Exception as e:                 # no face backend: the photo still talks, without blinks
            log.warning("%s: talking photo without blinks: no face backend (%s)", row["video_id"], e)
            faces = None
        with uris.local_copy(row["uri"]) as image, uris.local_copy(row["audio_uri"]) as speech, \
                uris.staged_output(out_uri) as out:
            try:
                made = photo.make_talking_photo(image, speech, out, row["video_id"], faces)
            except ValueError as e:
                raise MediaError(f"talking photo: {e}") from None
        note = (f"talking photo: {made['frames']} frames made from the still, with small head motion"
                + (f" and {made['blinks']} blinks" if made["face_found"] else "; no face found in it, so no blinks"))
        return {**row, "photo_video_uri": out_uri,
                "source_notes": list(row.get("source_notes") or []) + [note]}


def _align_filter(offset_s: float, sample_rate_hz: int) -> str:
    """ffmpeg filters that put the audio's first sample `offset_s` after the first frame, gaps kept.

    ffmpeg's wav output ignores timestamps (a stream that starts late would start at 0), so
    the timestamps are reset and the offset is made of samples: silence before a late start,
    samples dropped from an early one.
    """
    shift = round(abs(offset_s) * sample_rate_hz)
    # Audio frames that cannot be decoded (damaged data) leave a gap in the timestamps; the wav
    # would close it and put everything after it early. aresample fills gaps over 10 ms with silence.
    start = f"asetpts=PTS-STARTPTS,aresample=async=1:min_hard_comp=0.01:first_pts=0"
    if offset_s > 0 and shift:
        return f"{start},adelay=delays={shift}S:all=1"
    if offset_s < 0 and shift:
        return f"{start},atrim=start_sample={shift},asetpts=PTS-STARTPTS"
    return start


def _clock(seconds: float) -> str:
    """h:mm:ss.s"""
    return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{seconds % 60:04.1f}"
