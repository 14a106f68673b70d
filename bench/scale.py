"""Benchmark at scale: memory, time and worker scaling on one long 1080p episode.

    .venv/bin/python bench/scale.py [--minutes 5] [--langs es,de] [--cpus N] [--out bench-scale]
    .venv/bin/python bench/scale.py --minutes 5 --scaling          # the same video on 1 and 2 Ray CPUs

The episode (1920x1080, 25 fps, H.264 yuv420p, AAC 48 kHz stereo) is cut
from a few synthesized talking-head shots (two speakers, a two-shot, a
cutaway with a voice-over), built once at 960x540 with the demo builder's
helpers and scaled up in one x264 encode of the whole concatenation. The
shots and every episode length are cached in --media (idempotent), so a
30-minute file costs one encode. German comes from subtitles (timed to the
episode), Spanish from Apertium.

Each pipeline run is a fresh child process (`pipelines.localize.run`, no
resume), so its memory is its own. A sampler reads, every 0.5 s, the RSS
of that process and all its descendants: the embedded Ray's gcs_server and
raylet are children of the driver and the workers children of the raylet,
so the tree holds every process of the run. The sum of RSS counts pages
shared between processes (libraries, the object store) once per process.

Figures (also in OUT/scale-<N>min.json):
- memory: peak RSS of the largest single process, and the peak of the sum
  over all processes; goals: every process under 3 GiB, and the 30-minute
  peak at most 1.3x the 5-minute one (compared when both JSON files exist);
- time, per stage: wall and CPU seconds from the manifest rows' `timings`
  (a sharded stage summed over its shards; the shards run side by side, so
  those walls add up to more than the time that passed), the
  language-independent stages (pipelines.localize.ANALYZE) once per video,
  the per-language ones (LOCALIZE) per language;
- time, per phase: the analysis phase's wall time (plan and analyze passes,
  as the driver timed them, plus the per-video merge) and its real-time
  factor (seconds per second of video); each language's work in CPU seconds
  against a plain ffmpeg decode + x264 re-encode of the picture at the
  output's preset and crf, run alone on all cores (its CPU seconds and its
  wall), and the localize pass's wall against the re-encode's wall. Goals:
  analysis <= 0.5x real time; each language's work <= 4x the re-encode's;
- scaling (--scaling): end-to-end wall on 1 and on 2 Ray CPUs, and the ratio.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MEDIA = ROOT / "bench" / "build"
# Bumped when the shots or the episode recipe change, so a cache from an older script is rebuilt.
BUILD_VERSION = "1"
SHOT_SIZE = (960, 540)          # built small, scaled up once in the episode's encode
EPISODE_SIZE = (1920, 1080)
FPS = 25
SAMPLE_RATE_HZ = 48000
SAMPLE_EVERY_S = 0.5
PROGRESS_EVERY_S = 120
GIB = 1024 ** 3
# Goals of issue 10 ("Performance").
GOAL_PROCESS_GIB = 3.0
GOAL_LONG_OVER_SHORT = 1.3
GOAL_ANALYSIS_RTF = 0.5
GOAL_LANG_OVER_REENCODE = 4.0


# --- media ----------------------------------------------------------------------

@dataclass(frozen=True)
class Face:
    image: str                    # a framing of catalogs.demo.build._image
    centre_x: float               # share of the shot's width
    face_height_px: int           # at SHOT_SIZE
    speaks: str | None = "all"    # "all", "even" / "odd" lines (a two-shot), None: does not speak


@dataclass(frozen=True)
class Shot:
    name: str
    duration_s: float
    faces: tuple[Face, ...]
    lines: tuple                  # catalogs.demo.build.Line: start_s, en, de
    background: str = "hum"


def _shots():
    from catalogs.demo.build import Line

    return (
        Shot("anchor", 10.0, (Face("astronaut", 0.5, 220),), (
            Line(0.6, "Good evening, and welcome to the news.", "Guten Abend und willkommen zu den Nachrichten."),
            Line(3.6, "Today the weather was calm and warm.", "Heute war das Wetter ruhig und warm."),
            Line(6.8, "Tomorrow brings rain in the north.", "Morgen bringt Regen im Norden."),
        )),
        Shot("guest", 9.0, (Face("astronaut-mirrored", 0.62, 190),), (
            Line(0.5, "Thank you for having me tonight.", "Danke, dass ich heute Abend hier sein darf."),
            Line(3.4, "We built a new school in the city.", "Wir haben eine neue Schule in der Stadt gebaut."),
            Line(6.2, "The children start there next week.", "Die Kinder beginnen dort nächste Woche."),
        )),
        # Both on screen, speaking in turns: the lip stage must pick the right face per line.
        Shot("two-shot", 12.0, (Face("astronaut", 0.27, 110, "even"), Face("astronaut-mirrored", 0.73, 110, "odd")), (
            Line(0.5, "How many children are there?", "Wie viele Kinder gibt es?"),
            Line(3.3, "There are three hundred children.", "Es gibt dreihundert Kinder."),
            Line(6.3, "That is a very big school.", "Das ist eine sehr große Schule."),
            Line(9.2, "Yes, and it has a garden.", "Ja, und sie hat einen Garten."),
        )),
        # Nobody on screen speaks: a voice-over, the picture must stay as it is.
        Shot("cutaway", 8.0, (Face("camera", 0.5, 500, None),), (
            Line(0.6, "The city will open the school in May.", "Die Stadt eröffnet die Schule im Mai."),
            Line(4.2, "The garden is ready in the summer.", "Der Garten ist im Sommer fertig."),
        ), background="noise"),
        Shot("anchor-wide", 10.0, (Face("astronaut", 0.38, 120),), (
            Line(0.7, "That was the news for today.", "Das waren die Nachrichten für heute."),
            Line(3.8, "The sun comes back on the weekend.", "Am Wochenende kommt die Sonne zurück."),
            Line(7.0, "Thank you for watching, good night.", "Danke fürs Zuschauen, gute Nacht."),
        )),
    )


def _build_shot(shot: Shot, media: Path) -> list:
    """Write SHOT.mp4 (picture) and SHOT.wav (48 kHz stereo) into media; return the cues."""
    from catalogs import dummies
    from catalogs.demo.build import _image

    with tempfile.TemporaryDirectory(dir=media, prefix=".building-") as tmp:
        wav, mp4 = Path(tmp) / f"{shot.name}.wav", Path(tmp) / f"{shot.name}.mp4"
        cues = dummies.speech_track([(line.start_s, line.en) for line in shot.lines], shot.duration_s, str(wav),
                                    sample_rate_hz=SAMPLE_RATE_HZ, background=shot.background)
        specs = []
        for face in shot.faces:
            if face.speaks == "all":
                speaks = None
            else:
                parity = {"even": 0, "odd": 1}.get(face.speaks)
                speaks = [(c.start_s - 0.1, c.end_s + 0.1) for i, c in enumerate(cues) if i % 2 == parity]
            specs.append(dummies.FaceSpec(_image(face.image), (face.centre_x * SHOT_SIZE[0], SHOT_SIZE[1] / 2),
                                          face.face_height_px, speaks=speaks, animate=face.speaks is not None))
        dummies.talking_video(str(mp4), shot.duration_s, specs, str(wav), fps=FPS, size=SHOT_SIZE)
        os.replace(wav, media / wav.name)
        os.replace(mp4, media / mp4.name)
    return cues


def _shot_cues(media: Path) -> dict[str, list]:
    """Each shot's cues (speech spans as placed), built where missing; cached in cues.json."""
    from catalogs.dummies import Cue

    index = media / "cues.json"
    stamp = media / ".build-version"
    cached = {}
    if stamp.is_file() and stamp.read_text().strip() == BUILD_VERSION and index.is_file():
        cached = json.loads(index.read_text())
    out = {}
    for shot in _shots():
        files = [media / f"{shot.name}.mp4", media / f"{shot.name}.wav"]
        if shot.name in cached and all(f.is_file() for f in files):
            out[shot.name] = [Cue(**c) for c in cached[shot.name]]
            continue
        started = time.perf_counter()
        out[shot.name] = _build_shot(shot, media)
        print(f"built  shot {shot.name} ({shot.duration_s:.0f} s, {len(shot.faces)} face(s), "
              f"{time.perf_counter() - started:.1f} s)", flush=True)
        cached[shot.name] = [c.__dict__ for c in out[shot.name]]
        index.write_text(json.dumps(cached, indent=1))
        stamp.write_text(BUILD_VERSION + "\n")
    return out


def _sequence(shots, duration_s: float) -> list:
    """Shots in a varying (seeded) order, never the same twice in a row, until duration_s is covered."""
    rng = random.Random(20240610)
    order, total = [], 0.0
    while total < duration_s:
        choices = [s for s in shots if not order or s.name != order[-1].name]
        order.append(rng.choice(choices))
        total += order[-1].duration_s
    return order


def build_episode(minutes: float, media: Path) -> tuple[Path, Path]:
    """The episode and its German subtitles (cached): (episode.mp4, episode.de.srt)."""
    from catalogs import dummies

    media.mkdir(parents=True, exist_ok=True)
    name = f"episode-{minutes:g}min"
    mp4, srt = media / f"{name}.mp4", media / f"{name}.de.srt"
    stamp = media / f"{name}.version"
    if mp4.is_file() and srt.is_file() and stamp.is_file() and stamp.read_text().strip() == BUILD_VERSION:
        print(f"kept   {mp4}", flush=True)
        return mp4, srt
    cues = _shot_cues(media)
    duration_s = minutes * 60.0
    shots = _shots()
    order = _sequence(shots, duration_s)
    de_cues, offset = [], 0.0
    for shot in order:
        for cue, line in zip(cues[shot.name], shot.lines):
            if offset + cue.end_s <= duration_s:
                de_cues.append(dummies.Cue(round(offset + cue.start_s, 3), round(offset + cue.end_s, 3), line.de))
        offset += shot.duration_s
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=media, prefix=".building-") as tmp:
        # Picture and sound are concatenated separately: WAV joins are sample-exact, where
        # joining AAC files would shift the sound by the encoder delay at every cut.
        pictures, sounds = Path(tmp) / "pictures.txt", Path(tmp) / "sounds.txt"
        pictures.write_text("".join(f"file '{media / s.name}.mp4'\n" for s in order))
        sounds.write_text("".join(f"file '{media / s.name}.wav'\n" for s in order))
        staged = Path(tmp) / mp4.name
        cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
               "-f", "concat", "-safe", "0", "-i", str(pictures), "-f", "concat", "-safe", "0", "-i", str(sounds),
               "-map", "0:v", "-map", "1:a", "-vf", f"scale={EPISODE_SIZE[0]}:{EPISODE_SIZE[1]}:flags=bicubic",
               "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p", "-g", str(2 * FPS),
               "-r", str(FPS), "-c:a", "aac", "-b:a", "128k", "-ar", str(SAMPLE_RATE_HZ), "-ac", "2",
               "-t", f"{duration_s}", "-map_metadata", "-1", "-fflags", "+bitexact", str(staged)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"ffmpeg failed writing {mp4}: {proc.stderr.strip()}")
        staged_srt = Path(tmp) / srt.name
        dummies.write_subtitles(de_cues, str(staged_srt))
        os.replace(staged, mp4)
        os.replace(staged_srt, srt)
    stamp.write_text(BUILD_VERSION + "\n")
    print(f"built  {mp4} ({len(order)} shots, {len(de_cues)} lines, {time.perf_counter() - started:.1f} s)",
          flush=True)
    return mp4, srt


def write_catalog(path: Path, mp4: Path, srt: Path, langs: list[str]) -> Path:
    row = {"video_id": mp4.stem, "uri": str(mp4), "target_langs": langs, "source_lang": "en"}
    if "de" in langs:
        row["subtitles_uri_de"] = str(srt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row) + "\n")
    return path


# --- measuring ------------------------------------------------------------------

class TreeSampler(threading.Thread):
    """Every SAMPLE_EVERY_S, the RSS of a process and all its descendants: peaks per process and of the sum."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        import psutil

        self.root = psutil.Process(pid)
        self.stop = threading.Event()
        self.peak_sum_bytes = 0
        self.peak_sum_at_s = 0.0
        self.peak_by_pid: dict[int, tuple[int, str]] = {}    # pid -> (peak rss, cmdline)
        self.cpu_by_pid: dict[int, float] = {}                # pid -> user + system s, as last seen
        self.max_processes = 0
        self.samples = 0
        self.started = time.perf_counter()

    def run(self) -> None:
        import psutil

        while not self.stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            total = 0
            for proc in procs:
                try:
                    rss = proc.memory_info().rss
                    cpu = proc.cpu_times()
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                self.cpu_by_pid[proc.pid] = cpu.user + cpu.system
                total += rss
                if rss > self.peak_by_pid.get(proc.pid, (0, ""))[0]:
                    try:
                        cmdline = " ".join(proc.cmdline()) or proc.name()
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        cmdline = "?"
                    self.peak_by_pid[proc.pid] = (rss, cmdline)
            self.samples += 1
            self.max_processes = max(self.max_processes, len(procs))
            if total > self.peak_sum_bytes:
                self.peak_sum_bytes, self.peak_sum_at_s = total, time.perf_counter() - self.started
            if self.samples % round(PROGRESS_EVERY_S / SAMPLE_EVERY_S) == 0:
                # so a run stopped before its end still leaves its peaks so far in the log
                peak = max(self.peak_by_pid.values(), default=(0, ""))
                print(f"  [{time.perf_counter() - self.started:6.0f} s] {len(procs)} processes, now "
                      f"{total / GIB:.2f} GiB; peaks so far: sum {self.peak_sum_bytes / GIB:.2f} GiB, largest "
                      f"process {peak[0] / GIB:.2f} GiB ({_short(peak[1], 60)})", flush=True)
            self.stop.wait(SAMPLE_EVERY_S)

    def figures(self) -> dict:
        top = sorted(self.peak_by_pid.items(), key=lambda kv: -kv[1][0])
        return {
            "peak_process_rss_gib": top[0][1][0] / GIB if top else 0.0,
            "peak_process_cmdline": _short(top[0][1][1]) if top else "",
            "peak_sum_rss_gib": self.peak_sum_bytes / GIB,
            "peak_sum_at_s": round(self.peak_sum_at_s, 1),
            "max_processes": self.max_processes,
            "processes_seen": len(self.peak_by_pid),
            "samples": self.samples,
            # Lower bound: a process's CPU after its last sample (a short ffmpeg call) is missed.
            "cpu_s": sum(self.cpu_by_pid.values()),
            "top_processes": [{"pid": pid, "peak_rss_gib": rss / GIB, "cmdline": _short(cmd)}
                              for pid, (rss, cmd) in top[:6]],
        }


def _short(cmdline: str, limit: int = 100) -> str:
    cmdline = " ".join(cmdline.replace(str(ROOT) + "/", "").split())    # Ray pads its process titles
    return cmdline if len(cmdline) <= limit else cmdline[: limit - 3] + "..."


def min_ray_cpus() -> float:
    """Ray CPUs the pipeline needs to run at all: one actor of every pool at once, plus one task.

    From the stages' declared resources (config overrides not counted). With
    fewer, an actor pool never starts and the run waits forever.
    """
    import pipelines.localize as localize

    pools, tasks = 0.0, 0.0
    for op in (*getattr(localize, "ANALYZE", ()), *getattr(localize, "LOCALIZE", ())):
        r = getattr(op, "resources", None)
        if r is None:
            continue
        if getattr(r, "pool", None):
            pools += r.pool[0] * r.num_cpus
        else:
            tasks = max(tasks, r.num_cpus)
    return pools + tasks


def run_pipeline(catalog: Path, out: Path, langs: list[str], cpus: int | None, config: str | None,
                 cores: int | None = None) -> dict:
    """One fresh pipeline run in a child process, sampled; its rows' timings, walls and memory peaks.

    `cpus`: Ray logical CPUs; `cores`: pin the run (and so every Ray process) to that many cores.
    """
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    result = out / "bench-result.json"
    cmd = [sys.executable, os.path.abspath(__file__), "_child", "--catalog", str(catalog), "--out", str(out / "run"),
           "--langs", ",".join(langs), "--result", str(result)]
    if cpus:
        cmd += ["--cpus", str(cpus)]
    if cores:
        cmd += ["--cores", str(cores)]
    if config:
        cmd += ["--config", config]
    log_path = out / "pipeline.log"
    import psutil

    load_start = os.getloadavg()[0]
    busy_start = _busy_cpu_s(psutil.cpu_times())
    started = time.perf_counter()
    with open(log_path, "w") as log_file:
        child = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)
        sampler = TreeSampler(child.pid)
        sampler.start()
        try:
            rc = child.wait()
        except BaseException:
            # Interrupted: stop the run (its driver shuts its Ray down) rather than leave it running.
            child.terminate()
            child.wait(timeout=120)
            raise
    wall = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    if rc != 0 or not result.is_file():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"pipeline run failed (exit {rc}); {log_path} ends:\n{tail}")
    figures = json.loads(result.read_text())
    figures["process_wall_s"] = wall
    # Other work on the machine inflates every wall time; the load says how much there was.
    figures["load_avg_1min"] = [load_start, os.getloadavg()[0]]
    figures["machine_busy_cpu_s"] = _busy_cpu_s(psutil.cpu_times()) - busy_start
    figures["memory"] = sampler.figures()
    return figures


def _busy_cpu_s(times) -> float:
    """CPU seconds the whole machine has been busy (every core, since boot)."""
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def child_main(argv: list[str]) -> int:
    """The pipeline run itself, in its own process: writes its rows' timings as JSON."""
    from operators.catalog import parse_langs
    from operators.config import Config
    from pipelines.localize import run

    p = argparse.ArgumentParser()
    p.add_argument("--catalog", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--langs", required=True)
    p.add_argument("--result", required=True)
    p.add_argument("--cpus", type=int)
    p.add_argument("--cores", type=int)
    p.add_argument("--config")
    args = p.parse_args(argv)
    if args.cores:
        # Inherited by Ray's processes started from here (gcs, raylet, workers) and their ffmpeg calls.
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))
    overrides = {"resume": False}
    if args.cpus:
        overrides["num_cpus"] = args.cpus
    config = Config.load(args.config).with_overrides(run=overrides)
    started = time.perf_counter()
    summary = run(args.catalog, args.out, langs=parse_langs(args.langs), config=config)
    wall = time.perf_counter() - started
    rows = [{key: r.get(key) for key in ("video_id", "lang", "status", "error_stage", "error", "duration_s",
                                         "frames_rerendered", "timings")} for r in summary.results]
    Path(args.result).write_text(json.dumps({"run_wall_s": wall, "num_cpus": config.run.num_cpus,
                                             "phase_s": summary.phase_s,
                                             "cores": len(os.sched_getaffinity(0)), "rows": rows}))
    return 0


def plain_reencode_s(mp4: Path, config: str | None) -> tuple[float, dict]:
    """Wall seconds of a plain decode + x264 encode of the picture at the output's preset and crf."""
    from operators.config import Config

    output = Config.load(config).output
    settings = {"preset": output.video_preset, "crf": output.video_crf}
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(mp4), "-map", "0:v",
           "-c:v", "libx264", "-preset", output.video_preset, "-crf", str(output.video_crf), "-f", "null", "-"]
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    settings["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, settings


def stage_scopes() -> tuple[set[str], set[str]]:
    """(per-video, per-language) stage names, from the pipeline's own lists."""
    import pipelines.localize as localize

    def names(ops) -> set[str]:
        return {getattr(op, "name", op) for op in ops}

    return names(getattr(localize, "ANALYZE", ())), names(getattr(localize, "LOCALIZE", ()))


@dataclass
class Seconds:
    wall: float = 0.0
    cpu: float = 0.0

    def __add__(self, other: "Seconds") -> "Seconds":
        return Seconds(self.wall + other.wall, self.cpu + other.cpu)


def phase_times(rows: list[dict]) -> dict:
    """Stage seconds per phase from the ok rows' timings.

    A per-video stage is repeated in each language's row, so it is counted
    from one row per video. A stage in neither list (the pipeline changes)
    counts as per-video where it took the same time in every language's row
    of the video, else per language; such stages are listed as unclassified.
    """
    per_video_names, per_lang_names = stage_scopes()
    ok = [r for r in rows if r["status"] == "ok"]
    by_row = []
    for r in ok:
        stages: dict[str, Seconds] = defaultdict(Seconds)
        for t in r["timings"] or []:
            stages[t["stage"]] += Seconds(t["wall_s"], t.get("cpu_s") or 0.0)   # a sharded stage: once per shard
        by_row.append((r, stages))
    seen: dict[tuple[str, str], set] = defaultdict(set)
    for r, stages in by_row:
        for stage, s in stages.items():
            seen[r["video_id"], stage].add(round(s.wall, 6))
    unclassified = sorted({stage for _, stages in by_row for stage in stages} - per_video_names - per_lang_names)
    langs_per_video = defaultdict(int)
    for r, _ in by_row:
        langs_per_video[r["video_id"]] += 1

    def is_per_video(video_id: str, stage: str) -> bool:
        if stage in per_video_names:
            return True
        if stage in per_lang_names:
            return False
        return langs_per_video[video_id] > 1 and len(seen[video_id, stage]) == 1

    analysis: dict[str, dict[str, Seconds]] = defaultdict(dict)       # stage -> video -> s
    per_lang: dict[str, dict[str, Seconds]] = defaultdict(lambda: defaultdict(Seconds))    # lang -> stage -> s
    for r, stages in by_row:
        for stage, s in stages.items():
            if is_per_video(r["video_id"], stage):
                analysis[stage][r["video_id"]] = s
            else:
                per_lang[r["lang"]][stage] += s
    return {
        "analysis_stages_s": {stage: sum(v.values(), Seconds()) for stage, v in analysis.items()},
        "lang_stages_s": {lang: dict(stages) for lang, stages in per_lang.items()},
        "unclassified_stages": unclassified,
        "video_s": sum({r["video_id"]: r["duration_s"] for r in ok}.values()),
    }


# --- report ---------------------------------------------------------------------

def report(label: str, fig: dict, reencode_s: float | None, reencode_settings: dict | None) -> dict:
    times = phase_times(fig["rows"])
    video_s = times["video_s"]
    mem = fig["memory"]
    failed = [r for r in fig["rows"] if r["status"] != "ok"]
    print(f"\n== {label}: Ray CPUs {fig['num_cpus'] or 'default'}, {fig['cores']} core(s); "
          f"{len(fig['rows'])} results ({len(fig['rows']) - len(failed)} ok), {video_s:.1f} s of video")
    for r in failed:
        print(f"   {r['lang']}: {r['status']} at {r['error_stage']}: {r['error']}")
    print(f"wall: {fig['process_wall_s']:.1f} s for the process (Ray start, model loading included); "
          f"run() {fig['run_wall_s']:.1f} s = {fig['run_wall_s'] / max(video_s, 1e-9):.3f} s per video-s; "
          f"CPU {mem['cpu_s']:.0f} s over all processes")
    cores = os.cpu_count() or 1
    if "machine_busy_cpu_s" in fig:
        # Other work on the machine inflates every wall time: the machine's busy CPU less the run's own.
        other = max(0.0, fig["machine_busy_cpu_s"] - mem["cpu_s"])
        print(f"other work on the machine during the run: {other:.0f} CPU-s, "
              f"{other / (cores * fig['process_wall_s']):.0%} of its {cores} cores"
              + ("  (wall times are inflated)" if other > 0.1 * cores * fig["process_wall_s"] else ""))
    out = {"label": label, "num_cpus": fig["num_cpus"], "cores": fig["cores"], "video_s": video_s,
           "process_wall_s": fig["process_wall_s"], "run_wall_s": fig["run_wall_s"],
           "load_avg_1min": fig["load_avg_1min"], "memory": mem, "failed": failed,
           "phase_s": fig.get("phase_s"), "unclassified_stages": times["unclassified_stages"],
           "analysis_stages_s": {k: vars(v) for k, v in times["analysis_stages_s"].items()},
           "lang_stages_s": {lang: {k: vars(v) for k, v in st.items()} for lang, st in times["lang_stages_s"].items()}}
    if video_s <= 0:
        return out
    phases = fig.get("phase_s") or {}
    print(f"\n{'stage':<16}{'scope':<12}{'wall s':>10}{'CPU s':>10}")
    for stage, sec in times["analysis_stages_s"].items():
        print(f"{stage:<16}{'per video':<12}{sec.wall:>10.1f}{sec.cpu:>10.1f}")
    analysis = sum(times["analysis_stages_s"].values(), Seconds())
    # The analysis phase's own wall: the driver's plan and analyze passes, and the merge stages, which run
    # at the head of the localize pass (their task walls: one task per video).
    import pipelines.localize as localize

    merge_stages = {op.name for op in localize.MERGE}
    merge_s = sum(sec.wall for stage, sec in times["analysis_stages_s"].items() if stage in merge_stages)
    phase_wall = phases.get("plan", 0.0) + phases.get("analyze", 0.0) + merge_s if phases else analysis.wall
    out["analysis_s"], out["analysis_cpu_s"], out["analysis_rtf"] = phase_wall, analysis.cpu, phase_wall / video_s
    print(f"{'= analysis':<28}{analysis.wall:>10.1f}{analysis.cpu:>10.1f}   phase wall {phase_wall:.1f} s = "
          f"{phase_wall / video_s:.3f}x real time, goal <= {GOAL_ANALYSIS_RTF}: "
          f"{'met' if phase_wall / video_s <= GOAL_ANALYSIS_RTF else 'NOT met'}")
    out["langs"] = {}
    for lang, stages in times["lang_stages_s"].items():
        for stage, sec in stages.items():
            print(f"{stage:<16}{'lang ' + lang:<12}{sec.wall:>10.1f}{sec.cpu:>10.1f}")
        total = sum(stages.values(), Seconds())
        entry = {"wall_s": total.wall, "cpu_s": total.cpu, "cpu_rtf": total.cpu / video_s}
        line = f"{'= lang ' + lang:<28}{total.wall:>10.1f}{total.cpu:>10.1f}"
        if reencode_s and total.cpu > 0:           # (rows from before timings held CPU seconds have none)
            ratio = total.cpu / reencode_settings["cpu_s"]
            entry["cpu_over_reencode"] = ratio
            line += (f"   CPU {ratio:.2f}x the re-encode's, goal <= {GOAL_LANG_OVER_REENCODE}: "
                     f"{'met' if ratio <= GOAL_LANG_OVER_REENCODE else 'NOT met'}")
        out["langs"][lang] = entry
        print(line)
    if reencode_s:
        print(f"{'plain re-encode':<16}{'ffmpeg':<12}{reencode_s:>10.1f}{reencode_settings['cpu_s']:>10.1f}   "
              f"(decode + libx264 -preset {reencode_settings['preset']} -crf {reencode_settings['crf']}, all cores)")
        if "localize" in phases and len(times["lang_stages_s"]) == 1:
            localize_s = phases["localize"] - merge_s
            out["localize_over_reencode_wall"] = localize_s / reencode_s
            print(f"the language's pass, wall: {localize_s:.1f} s (the localize pass less the merge) = "
                  f"{localize_s / reencode_s:.2f}x the re-encode's wall")
    if times["unclassified_stages"]:
        print(f"(stages in neither ANALYZE nor LOCALIZE, placed by their timings: "
              f"{', '.join(times['unclassified_stages'])})")
    print(f"\nmemory (RSS, sampled every {SAMPLE_EVERY_S} s, {mem['samples']} samples, "
          f"{mem['processes_seen']} processes seen, at most {mem['max_processes']} at once):")
    print(f"  largest process: {mem['peak_process_rss_gib']:.2f} GiB  {mem['peak_process_cmdline']}   "
          f"goal < {GOAL_PROCESS_GIB} GiB: {'met' if mem['peak_process_rss_gib'] < GOAL_PROCESS_GIB else 'NOT met'}")
    print(f"  all processes:   {mem['peak_sum_rss_gib']:.2f} GiB (sum, at {mem['peak_sum_at_s']:.0f} s)")
    for p in mem["top_processes"][1:]:
        print(f"    {p['peak_rss_gib']:.2f} GiB  {p['cmdline']}")
    return out


def compare_sizes(out_dir: Path, minutes: float, figures: dict) -> None:
    """The 30-minute memory peak against the 5-minute one, when both have been measured."""
    if minutes not in (5, 30):
        return
    other_path = out_dir / f"scale-{35 - minutes:g}min.json"
    if not other_path.is_file():
        return
    other = json.loads(other_path.read_text())
    short, long_ = (figures, other) if minutes == 5 else (other, figures)
    if not short.get("runs") or not long_.get("runs"):
        return
    s, lg = short["runs"][0]["memory"], long_["runs"][0]["memory"]
    print("\nmemory, 30 min over 5 min (goal <= "
          f"{GOAL_LONG_OVER_SHORT}x): largest process {lg['peak_process_rss_gib']:.2f} / "
          f"{s['peak_process_rss_gib']:.2f} GiB = {lg['peak_process_rss_gib'] / s['peak_process_rss_gib']:.2f}x; "
          f"all processes {lg['peak_sum_rss_gib']:.2f} / {s['peak_sum_rss_gib']:.2f} GiB = "
          f"{lg['peak_sum_rss_gib'] / s['peak_sum_rss_gib']:.2f}x")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        return child_main(sys.argv[2:])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))     # so a killed benchmark stops its run too
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=5, help="episode length: 1, 5 or 30 (default 5)")
    p.add_argument("--langs", default="es,de")
    p.add_argument("--cpus", type=int, help="Ray logical CPUs (config run.num_cpus; default: the pipeline's)")
    p.add_argument("--cores", type=int, help="pin the run to this many cores (default: all)")
    p.add_argument("--scaling", action="store_true", help="run on 1 and on 2 workers and compare")
    p.add_argument("--scaling-by", choices=("auto", "ray-cpus", "cores"), default="auto",
                   help="workers are Ray CPUs (run.num_cpus), or cores the run is pinned to (Ray CPUs left at "
                        "the default); auto: Ray CPUs when the pipeline can run on 1, else cores")
    p.add_argument("--out", default="bench-scale")
    p.add_argument("--media", default=str(DEFAULT_MEDIA), help=f"cache of the generated media ({DEFAULT_MEDIA})")
    p.add_argument("--config")
    args = p.parse_args()
    from operators.catalog import parse_langs

    langs = parse_langs(args.langs)
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    # (Ray CPUs, cores) per run
    plan: list[tuple[int | None, int | None]] = [(args.cpus, None)]
    by = None
    if args.scaling:
        needed = min_ray_cpus()
        by = args.scaling_by
        if by == "auto":
            by = "ray-cpus" if needed <= 1 else "cores"
        if by == "ray-cpus" and needed > 1:
            print(f"note: the pipeline needs {needed:g} Ray CPUs at once (an actor per pool and a task); "
                  f"a run on fewer waits for them forever (try --scaling-by cores)")
            return 2
        if by == "cores":
            print(f"scaling by cores: the pipeline needs {needed:g} Ray CPUs to start, so Ray keeps "
                  f"{args.cpus or 'its default'} logical CPUs and the run is pinned to 1, then 2 cores")
        plan = [(1, None), (2, None)] if by == "ray-cpus" else [(args.cpus, 1), (args.cpus, 2)]
    elif args.cores:
        plan = [(args.cpus, args.cores)]
    mp4, srt = build_episode(args.minutes, Path(args.media).resolve())
    catalog = write_catalog(out_dir / f"catalog-{args.minutes:g}min.jsonl", mp4, srt, langs)
    load_start = os.getloadavg()[0]
    reencode_s, settings = plain_reencode_s(mp4, args.config)
    settings["load_avg_1min"] = [load_start, os.getloadavg()[0]]
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores; episode {mp4.name} "
          f"{EPISODE_SIZE[0]}x{EPISODE_SIZE[1]} {FPS} fps; languages {', '.join(langs)}; "
          f"plain re-encode {reencode_s:.1f} s", flush=True)

    runs = []
    for cpus, cores in plan:
        label = f"{args.minutes:g} min"
        if cpus:
            label += f", {cpus} Ray CPU{'s' if cpus > 1 else ''}"
        if cores:
            label += f", pinned to {cores} core{'s' if cores > 1 else ''}"
        name = f"run-{args.minutes:g}min-cpus{cpus or 'default'}" + (f"-cores{cores}" if cores else "")
        fig = run_pipeline(catalog, out_dir / name, langs, cpus, args.config, cores)
        runs.append(report(label, fig, reencode_s, settings))
    figures = {"machine": {"arch": platform.machine(), "cores": os.cpu_count()}, "minutes": args.minutes,
               "langs": langs, "episode": str(mp4), "reencode_s": reencode_s, "reencode_settings": settings,
               "runs": runs}
    if args.scaling:
        one, two = runs
        unit = "Ray CPU" if by == "ray-cpus" else "core"
        figures["scaling"] = {"by": by, "wall_1_s": one["process_wall_s"], "wall_2_s": two["process_wall_s"],
                              "speedup": one["process_wall_s"] / two["process_wall_s"]}
        print(f"\nscaling: {one['process_wall_s']:.1f} s on 1 {unit}, {two['process_wall_s']:.1f} s on 2: "
              f"{figures['scaling']['speedup']:.2f}x")
    result = out_dir / f"scale-{args.minutes:g}min{'-scaling' if args.scaling else ''}.json"
    result.write_text(json.dumps(figures, indent=1))
    if not args.scaling:
        compare_sizes(out_dir, args.minutes, figures)
    print(f"\nfigures: {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
