"""Workers that die: a row whose worker is killed once is retried and ends ok; a row that kills its worker
every time becomes a failed row, and the job ends (run.max_restarts, run.max_task_retries)."""
import json
import os
from pathlib import Path

import pytest

from catalogs import dummies
from operators import manifest
from operators.backends.apertium import ApertiumMT
from operators.schema import FAILED, OK
from pipelines.localize import run
from tests.conftest import small_config


class DyingTranslator:
    """Apertium, but the worker process dies on a line that says "poison", and once on one that says "flaky"."""

    def __init__(self, marks: str):
        self.inner = ApertiumMT()
        self.marks = marks

    def supports(self, source_lang, target_lang):
        return self.inner.supports(source_lang, target_lang)

    def routes(self):
        return self.inner.routes()

    def route(self, source_lang, target_lang):
        return self.inner.route(source_lang, target_lang)

    def model_info(self, source_lang, target_lang):
        return self.inner.model_info(source_lang, target_lang)

    def translate(self, texts, source_lang, target_lang):
        said = " ".join(texts).lower()
        if "poison" in said:
            Path(self.marks, f"poison-{os.getpid()}").touch()
            os._exit(1)
        flaky = Path(self.marks, "flaky-died")
        if "flaky" in said and not flaky.exists():
            flaky.touch()
            os._exit(1)
        return self.inner.translate(texts, source_lang, target_lang)


def test_a_killed_worker_is_retried_and_a_poison_video_fails_alone(ray_local, tmp_path):
    face = dummies.portrait("astronaut")
    rows = []
    for name, line in [("good", "The house is red."), ("flaky", "The flaky house is red."),
                       ("poison", "The poison house is red.")]:
        speech = str(tmp_path / f"{name}.wav")
        cues = dummies.speech_track([(0.4, line)], 2.5, speech)
        dummies.still_video(face, str(tmp_path / f"{name}.mp4"), 2.5, audio_wav=speech)
        dummies.write_subtitles(cues, str(tmp_path / f"{name}.en.srt"))
        rows.append({"video_id": name, "uri": f"{name}.mp4", "source_lang": "en",
                     "source_subtitles_uri": f"{name}.en.srt"})
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in rows))
    marks = tmp_path / "marks"
    marks.mkdir()
    # The defaults' 2 retries: a row that shares a worker with the poison video dies with it, and must
    # still have a retry left after the poison video's own attempts (1 retry flaked once in 4 runs).
    config = small_config(lips={"enabled": False}, run={"max_restarts": 5, "max_task_retries": 2})

    summary = run(str(catalog), str(tmp_path / "out"), langs=["es"], config=config,
                  backends={"translate": DyingTranslator(str(marks))})

    by_video = {r["video_id"]: r for r in manifest.read_manifest(str(tmp_path / "out"))}
    assert (by_video["good"]["status"], by_video["flaky"]["status"]) == (OK, OK)
    assert (marks / "flaky-died").exists()                              # it did die, once
    poison = by_video["poison"]
    assert poison["status"] == FAILED and poison["error_stage"] == "pipeline"
    assert "died more than run.max_task_retries (2) times" in poison["error"]
    # Tried, then retried at most twice: never more. (Under load Ray can spend a retry on an actor that was
    # unreachable before the row started, so fewer attempts may leave a mark: 2 of 3 was seen once.)
    assert 1 <= len(list(marks.glob("poison-*"))) <= 3
    assert len(summary.results) == 3


class UnloadableTranslator:
    """A backend that cannot be rebuilt on a worker: every Translate actor dies as it starts, which ends the pass."""

    def __getstate__(self):
        return {}

    def __setstate__(self, state):
        raise RuntimeError("this translator cannot be loaded on a worker")


def test_a_pass_that_ray_ends_keeps_what_finished_and_fails_the_rest_with_the_reason(ray_local, tmp_path):
    face = dummies.portrait("astronaut")
    speech = str(tmp_path / "speech.wav")
    cues = dummies.speech_track([(0.4, "The house is red.")], 2.5, speech)
    dummies.still_video(face, str(tmp_path / "good.mp4"), 2.5, audio_wav=speech)
    dummies.write_subtitles(cues, str(tmp_path / "good.en.srt"))
    dummies.still_video(face, str(tmp_path / "mute.mp4"), 2.0, audio_wav=None)
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(json.dumps({"video_id": "good", "uri": "good.mp4", "source_lang": "en",
                                   "source_subtitles_uri": "good.en.srt"}) + "\n"
                       + json.dumps({"video_id": "mute", "uri": "mute.mp4"}) + "\n")
    out = str(tmp_path / "out")

    summary = run(str(catalog), out, langs=["es", "de"], config=small_config(lips={"enabled": False}),
                  backends={"translate": UnloadableTranslator()})

    rows = {(r["video_id"], r["lang"]): r for r in manifest.read_manifest(out)}
    assert len(rows) == len(summary.results) == 4
    # Finished before the pass broke: kept as it was.
    assert rows["mute", "es"]["error_stage"] == "probe" and "no audio stream" in rows["mute", "es"]["error"]
    for lang in ("es", "de"):
        good = rows["good", lang]
        assert (good["status"], good["error_stage"]) == (FAILED, "pipeline")
        assert good["error"].startswith("the localize pass ended before this result: ")
        assert good["error"].endswith("; re-run to retry")


def test_pools_that_cannot_start_on_this_cluster_fail_at_once_naming_the_stages(ray_local, tmp_path):
    """A pool minimum that needs GPUs a CPU cluster lacks used to leave the job waiting forever."""
    from operators.config import ConfigError

    dummies.still_video(dummies.portrait("astronaut"), str(tmp_path / "a.mp4"), 2.0, audio_wav=None)
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text(json.dumps({"video_id": "a", "uri": "a.mp4"}) + "\n")
    config = small_config()
    gpu = config.with_overrides(resources={**{k: v.model_dump() for k, v in config.resources.items()},
                                           "transcribe": {"num_cpus": 0.2, "num_gpus": 0.5, "pool": (2, 4)}})
    # An ok result of an earlier run, which this job would redo: a job refused at start must leave it be.
    from operators.schema import MANIFEST_VERSION, result_id

    work = str(tmp_path / "out" / "_work")
    manifest.write_marker(work, {"video_id": "a", "uri": str(tmp_path / "a.mp4"), "lang": "es", "status": OK,
                                 "result_id": result_id("a", "es"), "manifest_version": MANIFEST_VERSION})
    with pytest.raises(ConfigError) as e:
        run(str(catalog), str(tmp_path / "out"), langs=["es"], config=gpu)
    assert manifest.previous_results(str(tmp_path / "out"), work)["a", "es"]["status"] == OK
    assert str(e.value).startswith("the analyze pass needs 1 GPU to start (pool minimums: transcribe 2 x 0.5; "
                                   "plus its largest task) but the cluster has 0:")
    # Told that an autoscaling cluster can grow to a GPU, the check passes.
    from pipelines.localize import build_operators, check_pools_fit

    reachable = gpu.with_overrides(run={"reachable_resources": {"CPU": 2, "GPU": 1, "memory": 8 * 2**30}})
    check_pools_fit(build_operators(reachable, str(tmp_path / "w"), str(tmp_path / "o")), reachable)
