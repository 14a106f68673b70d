"""The finished video: the picture (copied where it can be), the dub track, the original track, subtitles."""
from __future__ import annotations

import contextlib
import os
import tempfile

from operators import formats, languages, paths, provenance
from operators import uri as uris
from operators.base import Operator, Resources, require_binary
from operators.media import ffmpeg, probe
from operators.schema import RESULT


class Mux(Operator):
    name = "mux"
    reads = ("uri", "video_codec", "pixel_format", "source_audio_uri", "rendered_video_uri", "dub_audio_uri",
             "subtitles_out_uri")
    writes = ("video_out_uri", "output_container", "output_video_codec", "output_video_copied", "disclosure",
              "disclosure_label", "provenance_status")
    resources = Resources(num_cpus=1)
    output_schema = RESULT

    def check_dependencies(self) -> None:
        require_binary("ffmpeg", "ffmpeg")
        if self.config.disclosure.burn_in:
            provenance.require_drawtext()
        self.signing = provenance.Signing(self.config)     # a key that cannot sign fails here, on the driver

    def process_row(self, row: dict) -> dict:
        out = self.config.output
        lang, src_lang = row["lang"], row["source_lang"]
        rendered = bool(row.get("rendered_video_uri"))
        # A burned-in label changes every frame: the picture is encoded, never copied.
        burn_in = self.config.disclosure.burn_in
        fmt = formats.choose(row["video_codec"], row["pixel_format"], row["width"], row["height"], out,
                             rendered or burn_in)
        disclosure = provenance.disclosure_text(self.config, lips_rendered=rendered)
        video_out_uri = paths.output(self.out_dir, row["video_id"], lang, fmt.suffix)
        with contextlib.ExitStack() as stack:
            # Inputs: 0 the original audio as extracted (it starts with the first frame, like the dub),
            # 1 the dub, 2 the picture, 3 the subtitles. The picture is the lip-synced render if there
            # is one (already in the output's codec), else the source's own stream: copied where the
            # container holds it, else encoded per `output`.
            original = stack.enter_context(uris.local_copy(row["source_audio_uri"]))
            dub = stack.enter_context(uris.local_copy(row["dub_audio_uri"]))
            picture = stack.enter_context(uris.local_copy(row["rendered_video_uri"] if rendered else paths.picture(row)))
            # ffmpeg starts each input at its earliest stream; where the picture starts after the
            # source's audio (AAC priming in Matroska, a late first frame), shift it back to 0 so the
            # first frame plays with the first sample of the dub, as it did with the source's audio.
            lead_s = _picture_lead_s(picture)
            args = ["-i", original, "-i", dub, *(["-itsoffset", f"{-lead_s:.6f}"] if lead_s else []), "-i", picture]
            subs = None
            if out.subtitle_track and row.get("subtitles_out_uri") and uris.read_text(row["subtitles_out_uri"]).strip():
                subs = stack.enter_context(uris.local_copy(row["subtitles_out_uri"]))
                args += ["-i", subs]
            args += ["-map", "2:v:0"]
            if (rendered or fmt.copy) and not burn_in:
                args += ["-c:v", "copy"]
            else:
                if burn_in:
                    label = os.path.join(stack.enter_context(tempfile.TemporaryDirectory(prefix="raydub-")),
                                         "label.txt")
                    with open(label, "w", encoding="utf-8") as f:
                        f.write(self.config.disclosure.label)
                    args += ["-vf", provenance.label_filter(label, self.config.disclosure.position, row["height"])]
                args += ["-c:v", fmt.encoder, "-pix_fmt", fmt.pixel_format, "-fps_mode", "passthrough"]
                for key, value in formats.encoder_options(fmt, out).items():
                    args += [f"-{key}", value]
            # A 5.1 source gives a 5.1 dub (its centre dubbed), then the same as a stereo downmix.
            surround = row.get("source_audio_layout") == "5.1"
            tracks = [("1:a:0", lang, f"Dub ({lang}, 5.1)" if surround else f"Dub ({lang})", None)]
            if surround:
                tracks.append(("1:a:0", lang, f"Dub ({lang}, stereo)", 2))
            if out.keep_source_audio:
                tracks.append(("0:a:0", src_lang, f"Original ({src_lang})", None))
            for k, (source_stream, track_lang, title, downmix_to) in enumerate(tracks):
                # The bitrate is per stereo pair: a 5.1 track gets three times it.
                kbps = out.audio_bitrate_kbps * (3 if surround and downmix_to is None else 1)
                args += ["-map", source_stream, f"-c:a:{k}", out.audio_codec, f"-b:a:{k}", f"{kbps}k",
                         *([f"-aac_coder:a:{k}", out.aac_coder] if out.audio_codec == "aac" else []),
                         *([f"-ac:a:{k}", str(downmix_to)] if downmix_to else []),
                         f"-metadata:s:a:{k}", f"language={languages.iso639_2b(track_lang)}",
                         *_track_name(f"a:{k}", title), f"-disposition:a:{k}", "default" if k == 0 else "0"]
            if subs:
                args += ["-map", "3:s:0", "-c:s", formats.SUBTITLE_CODECS[fmt.container],
                         "-metadata:s:s:0", f"language={languages.iso639_2b(lang)}"]
            # Players and platforms show `comment`; mp4 and mkv also keep `description` (mov drops it).
            args += ["-metadata", f"comment={disclosure}", "-metadata", f"description={disclosure}"]
            if fmt.container in ("mp4", "mov"):
                args += ["-movflags", "+faststart"]
            local_out = stack.enter_context(uris.staged_output(video_out_uri))
            ffmpeg(*args, "-f", formats.MUXERS[fmt.container], local_out)
            made = probe(local_out)
            if made.frame_count != row["frame_count"]:
                raise RuntimeError(f"muxed video has {made.frame_count} frames, source has {row['frame_count']}")
            # Last, on the finished file: the manifest's hash covers every byte that is uploaded.
            video_provenance = self.signing.sign(local_out, video_out_uri, fmt.container, row, picture=True,
                                                 lips_rendered=rendered, disclosure=disclosure)
        status = provenance.combine({"video": video_provenance,
                                     "audio": row.get("provenance_status") or video_provenance})
        return {**row, "video_out_uri": video_out_uri, "output_container": fmt.container,
                "output_video_codec": fmt.video_codec, "output_video_copied": fmt.copy and not rendered,
                "disclosure": disclosure, "disclosure_label": self.config.disclosure.label if burn_in else None,
                "provenance_status": status}


def _picture_lead_s(path: str) -> float:
    """How long after its file's start the first frame of `path` comes (0.0 for most files)."""
    import av

    with av.open(path) as container:
        v = container.streams.video[0]
        if v.start_time is None or container.start_time is None:
            return 0.0
        return max(0.0, float(v.start_time * v.time_base) - container.start_time / 1_000_000)


def _track_name(stream: str, name: str) -> tuple[str, ...]:
    # MP4 players show the handler name as the track's name; other containers use title.
    return (f"-metadata:s:{stream}", f"title={name}", f"-metadata:s:{stream}", f"handler_name={name}")
