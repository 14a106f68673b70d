"""The finished video: original picture stream-copied, the dub track, the original track, subtitles."""
from __future__ import annotations

import contextlib

from operators import languages, paths
from operators import uri as uris
from operators.base import Operator, Resources, require_binary
from operators.media import ffmpeg, probe
from operators.schema import RESULT


class Mux(Operator):
    name = "mux"
    reads = ("uri", "rendered_video_uri", "dub_audio_uri", "subtitles_out_uri")
    writes = ("video_out_uri",)
    resources = Resources(num_cpus=1)
    output_schema = RESULT

    def check_dependencies(self) -> None:
        require_binary("ffmpeg", "ffmpeg")

    def process_row(self, row: dict) -> dict:
        out = self.config.output
        lang, src_lang = row["lang"], row["source_lang"]
        video_out_uri = paths.output(self.out_dir, row["video_id"], lang, ".mp4")
        bitrate = f"{out.audio_bitrate_kbps}k"
        with contextlib.ExitStack() as stack:
            source = stack.enter_context(uris.local_copy(row["uri"]))
            dub = stack.enter_context(uris.local_copy(row["dub_audio_uri"]))
            # Inputs: 0 the source (original audio), 1 the dub, 2 the picture, 3 the subtitles.
            # The picture is the lip-synced render if there is one, else the source's own
            # stream; either way it is stream-copied: mux never re-encodes it.
            picture = source
            if row.get("rendered_video_uri"):
                picture = stack.enter_context(uris.local_copy(row["rendered_video_uri"]))
            args = ["-i", source, "-i", dub, "-i", picture]
            subs = None
            if out.subtitle_track and row.get("subtitles_out_uri") and uris.read_text(row["subtitles_out_uri"]).strip():
                subs = stack.enter_context(uris.local_copy(row["subtitles_out_uri"]))
                args += ["-i", subs]
            args += ["-map", "2:v:0", "-c:v", "copy",
                     "-map", "1:a:0", "-c:a:0", out.audio_codec, "-b:a:0", bitrate,
                     "-metadata:s:a:0", f"language={languages.iso639_2b(lang)}",
                     *_track_name("a:0", f"Dub ({lang})"), "-disposition:a:0", "default"]
            if out.keep_source_audio:
                args += ["-map", "0:a:0", "-c:a:1", out.audio_codec, "-b:a:1", bitrate,
                         "-metadata:s:a:1", f"language={languages.iso639_2b(src_lang)}",
                         *_track_name("a:1", f"Original ({src_lang})"), "-disposition:a:1", "0"]
            if subs:
                args += ["-map", "3:s:0", "-c:s", "mov_text",
                         "-metadata:s:s:0", f"language={languages.iso639_2b(lang)}"]
            local_out = stack.enter_context(uris.staged_output(video_out_uri))
            ffmpeg(*args, "-movflags", "+faststart", local_out)
            made = probe(local_out)
            if made.frame_count != row["frame_count"]:
                raise RuntimeError(f"muxed video has {made.frame_count} frames, source has {row['frame_count']}")
        return {**row, "video_out_uri": video_out_uri}


def _track_name(stream: str, name: str) -> tuple[str, ...]:
    # MP4 players show the handler name as the track's name; other containers use title.
    return (f"-metadata:s:{stream}", f"title={name}", f"-metadata:s:{stream}", f"handler_name={name}")
