"""Probe a source video and extract its audio once, for every language after it."""
from __future__ import annotations

from operators import paths
from operators import uri as uris
from operators.base import Operator, Resources, require_binary
from operators.media import MediaError, check_complete, ffmpeg, probe
from operators.schema import VIDEO

ASR_SAMPLE_RATE_HZ = 16000
# A source whose audio ends this much before the picture is treated as
# truncated rather than dubbed with a hole at the end.
MAX_AUDIO_SHORTFALL_S = 1.0


class ProbeMedia(Operator):
    name = "probe"
    reads = ("uri",)
    writes = ("duration_s", "fps", "frame_count", "width", "height", "source_audio_uri", "asr_audio_uri")
    resources = Resources(num_cpus=1)
    output_schema = VIDEO

    def check_dependencies(self) -> None:
        require_binary("ffmpeg", "ffmpeg")

    def process_row(self, row: dict) -> dict:
        if not uris.exists(row["uri"]):
            raise MediaError(f"source video not found: {uris.redacted(row['uri'])}")
        with uris.local_copy(row["uri"]) as path:
            p = probe(path)
            check_complete(path)
            if p.audio_sample_rate_hz is None:
                raise MediaError("no audio stream: there is no speech to dub")
            if p.audio_duration_s is not None and p.audio_duration_s < p.duration_s - MAX_AUDIO_SHORTFALL_S:
                raise MediaError(f"audio ends at {p.audio_duration_s:.2f} s of {p.duration_s:.2f} s (truncated?)")
            source_audio = paths.video_work(self.work_dir, row["video_id"], "source.wav")
            asr_audio = paths.video_work(self.work_dir, row["video_id"], "asr16k.wav")
            with uris.staged_output(source_audio) as hi, uris.staged_output(asr_audio) as lo:
                # One decode, two outputs: full quality for the mix, 16 kHz mono for ASR.
                # apad + -t: both exactly as long as the picture, even where the audio ends early.
                per_output = ("-map", "0:a:0", "-af", "apad", "-t", f"{p.duration_s:.6f}", "-c:a", "pcm_s16le")
                ffmpeg("-i", path,
                       *per_output, "-ac", "2", "-ar", str(self.config.mix.sample_rate_hz), hi,
                       *per_output, "-ac", "1", "-ar", str(ASR_SAMPLE_RATE_HZ), lo)
        return {**row,
                "duration_s": p.duration_s, "fps": p.fps, "frame_count": p.frame_count,
                "width": p.width, "height": p.height, "video_codec": p.video_codec,
                "audio_sample_rate_hz": p.audio_sample_rate_hz, "audio_channels": p.audio_channels,
                "source_audio_uri": source_audio, "asr_audio_uri": asr_audio}
