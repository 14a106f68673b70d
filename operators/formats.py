"""The finished video's container and picture codec, and how a picture is encoded when it must be.

A studio's masters come as H.264 or HEVC in MP4, MKV or MOV, and as ProRes in
MOV. The rule: a picture that is not re-rendered keeps its stream (copied,
not re-encoded) whenever the chosen container can hold it; a picture that is
re-rendered, or whose codec the container cannot hold, is encoded with the
configured codec, keeping the source's chroma and bit depth where that codec
can. Nothing is ever copied into a container that cannot hold it (ffmpeg
refuses ProRes in MP4, and Opus in MOV).

`output.container = "auto"` takes the first of mp4, mov, mkv that holds both
the source's picture codec and the audio codec: H.264/HEVC -> mp4, ProRes ->
mov. `output.video_codec = "auto"` re-encodes ProRes as ProRes (where the
container holds it) and everything else as H.264.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from operators.config import OutputConfig

# Picture codecs (ffmpeg's names) each container holds, and so may be copied into it.
VIDEO_CODECS = {
    "mp4": frozenset({"h264", "hevc", "av1", "vp9", "mpeg4"}),
    "mov": frozenset({"h264", "hevc", "prores", "mpeg4", "mjpeg", "dnxhd"}),
    "mkv": frozenset({"h264", "hevc", "prores", "av1", "vp8", "vp9", "mpeg4", "mjpeg", "dnxhd", "ffv1",
                      "mpeg2video"}),
}
AUDIO_CODECS = {"mp4": frozenset({"aac", "libopus"}), "mov": frozenset({"aac"}),
                "mkv": frozenset({"aac", "libopus"})}
MUXERS = {"mp4": "mp4", "mov": "mov", "mkv": "matroska"}
# Subtitle codec of the embedded track: MP4 and MOV hold only timed text.
SUBTITLE_CODECS = {"mp4": "mov_text", "mov": "mov_text", "mkv": "srt"}
ENCODERS = {"h264": "libx264", "hevc": "libx265", "prores": "prores_ks"}
ENCODER_PIXEL_FORMATS = {
    "h264": ("yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le", "yuv444p10le"),
    "hevc": ("yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le", "yuv444p10le"),
    "prores": ("yuv422p10le", "yuv444p10le"),
}


@dataclass(frozen=True)
class OutputFormat:
    container: str          # "mp4", "mov" or "mkv": also the file name's suffix
    video_codec: str        # the output picture's codec (the source's, where copied)
    copy: bool              # the source picture stream is copied as it is (nothing re-rendered)
    pixel_format: str       # what an encode writes (the source's, where copied)

    @property
    def suffix(self) -> str:
        return f".{self.container}"

    @property
    def encoder(self) -> str:
        return ENCODERS[self.video_codec]


def container_for(source_codec: str, cfg: "OutputConfig") -> str:
    if cfg.container != "auto":
        return cfg.container
    for container in ("mp4", "mov", "mkv"):
        if source_codec in VIDEO_CODECS[container] and cfg.audio_codec in AUDIO_CODECS[container]:
            return container
    return "mkv" if cfg.audio_codec in AUDIO_CODECS["mkv"] else "mp4"


def choose(source_codec: str, source_pixel_format: str, width: int, height: int, cfg: "OutputConfig",
           rerendered: bool) -> OutputFormat:
    """The output of one video: copied where it can be, else encoded per `cfg`."""
    container = container_for(source_codec, cfg)
    if not rerendered and source_codec in VIDEO_CODECS[container]:
        return OutputFormat(container, source_codec, True, source_pixel_format)
    codec = cfg.video_codec
    if codec == "auto":
        codec = "prores" if source_codec == "prores" and "prores" in VIDEO_CODECS[container] else "h264"
    return OutputFormat(container, codec, False, pixel_format(codec, source_pixel_format, width, height, cfg))


def pixel_format(codec: str, source: str, width: int, height: int, cfg: "OutputConfig") -> str:
    """The encode's pixel format: configured, or the source's chroma and bit depth as far as `codec` has them."""
    if cfg.video_pixel_format != "source":
        source = cfg.video_pixel_format
    if source in ENCODER_PIXEL_FORMATS[codec]:
        fmt = source
    else:
        deep = any(bits in source for bits in ("10", "12", "16"))
        chroma = "444" if "444" in source or source.startswith(("gbr", "rgb", "bgr")) else \
                 "422" if "422" in source else "420"
        fmt = f"yuv{chroma}p{'10le' if deep else ''}"
        if fmt not in ENCODER_PIXEL_FORMATS[codec]:        # ProRes: 4:2:2 or 4:4:4, 10-bit only
            fmt = "yuv444p10le" if chroma == "444" else "yuv422p10le"
    # H.264 and HEVC code chroma in whole samples: subsampled chroma needs an even width
    # (and for 4:2:0 an even height). An odd-sized picture keeps its size in 4:4:4.
    if codec in ("h264", "hevc") and ((width % 2 and ("420" in fmt or "422" in fmt)) or
                                      (height % 2 and "420" in fmt)):
        fmt = fmt.replace("420", "444").replace("422", "444")
    return fmt


def encoder_options(fmt: OutputFormat, cfg: "OutputConfig") -> dict[str, str]:
    """Options for the encoder, as ffmpeg's `-key value` / PyAV's `stream.options`."""
    if fmt.video_codec == "prores":
        return {}                               # prores_ks picks its profile from the pixel format
    options = {"crf": str(cfg.video_crf), "preset": cfg.video_preset}
    if fmt.video_codec == "hevc":
        options["x265-params"] = "log-level=error"
    return options


def check(cfg: "OutputConfig") -> None:
    """Combinations no container can write, refused when the config is read."""
    if cfg.container != "auto":
        if cfg.video_codec != "auto" and cfg.video_codec not in VIDEO_CODECS[cfg.container]:
            raise ValueError(f"a {cfg.container} file cannot hold {cfg.video_codec} video")
        if cfg.audio_codec not in AUDIO_CODECS[cfg.container]:
            raise ValueError(f"a {cfg.container} file cannot hold {cfg.audio_codec} audio")
    if cfg.video_codec != "auto" and cfg.video_pixel_format != "source" and \
            cfg.video_pixel_format not in ENCODER_PIXEL_FORMATS[cfg.video_codec]:
        raise ValueError(f"{cfg.video_codec} cannot encode {cfg.video_pixel_format}; it takes "
                         f"{', '.join(ENCODER_PIXEL_FORMATS[cfg.video_codec])}")
