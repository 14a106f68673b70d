"""Catalog, media, work folder and outputs on s3:// (a moto server on 127.0.0.1), end to end."""
import json
import time

import av
import pytest

from catalogs import dummies
from operators import manifest
from pipelines.localize import run
from tests.conftest import S3_PORT, moto_server, small_config
from tests.outage import Outage

pytest.importorskip("s3fs")
pytest.importorskip("moto")


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    """The moto server, behind a forwarder on the endpoint the whole session uses (S3_PORT) that can go down."""
    with moto_server(tmp_path_factory.mktemp("moto") / "moto.log") as moto_port:
        outage = Outage(S3_PORT, moto_port)
        yield outage
        outage.close()


@pytest.fixture(scope="module")
def s3(endpoint):
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.mkdir("raydub-test")
    return fs


def test_a_catalog_on_s3_dubs_into_s3(s3, ray_local, tmp_path):
    speech = str(tmp_path / "s.wav")
    dummies.speech_track([(0.5, "The house is red.")], 3.0, speech)
    dummies.still_video(dummies.portrait(), str(tmp_path / "a.mp4"), 3.0, audio_wav=speech)
    s3.put_file(str(tmp_path / "a.mp4"), "raydub-test/jobs/media/a.mp4")
    s3.pipe_file("raydub-test/jobs/catalog.jsonl",
                 (json.dumps({"video_id": "a", "uri": "media/a.mp4", "target_langs": ["es"]}) + "\n").encode())

    out = "s3://raydub-test/out"
    summary = run("s3://raydub-test/jobs/catalog.jsonl", out, config=small_config())
    assert [(r["video_id"], r["lang"], r["status"], r["error"]) for r in summary.results] == [("a", "es", "ok", None)]
    rows = manifest.read_manifest(out)
    assert rows[0]["video_out_uri"] == "s3://raydub-test/out/videos/a/a.es.mp4"
    assert len(s3.glob("raydub-test/out/manifest/lang=es/part-*.parquet")) == 1
    assert s3.exists("raydub-test/out/_work/a/source.wav")
    local = str(tmp_path / "dub.mp4")
    s3.get_file("raydub-test/out/videos/a/a.es.mp4", local)
    with av.open(local) as f:
        assert [s.metadata.get("language") for s in f.streams.audio] == ["spa", "eng"]
    # and a re-run finds its results on s3
    assert run("s3://raydub-test/jobs/catalog.jsonl", out, config=small_config()).resumed == 1
    # the quality report reads the same OUT on s3: the summary, the HTML, and a frame strip from s3 videos
    from pipelines import report
    from pipelines.cli import main

    page = tmp_path / "report.html"
    assert main(["report", out, "--html", str(page)]) == 0
    assert "id='summary'" in page.read_text() and "s3://raydub-test/out" in page.read_text()
    assert report.frame_strip_png(manifest.read_manifest(out)[0]).startswith(b"\x89PNG")


def test_two_jobs_on_one_s3_out_the_second_is_refused(s3, tmp_path):
    from operators.lock import LOCK_NAME, OutInUse, OutLock

    with OutLock("s3://raydub-test/locked"):
        assert s3.exists(f"raydub-test/locked/{LOCK_NAME}")
        with pytest.raises(OutInUse, match=r"^s3://raydub-test/locked is in use by another raydub job"):
            catalog = tmp_path / "catalog.jsonl"
            catalog.write_text(json.dumps({"video_id": "a", "uri": "a.mp4", "target_langs": ["es"]}) + "\n")
            run(str(catalog), "s3://raydub-test/locked")
        with OutLock("s3://raydub-test/locked-too"):                     # another prefix of the bucket is free
            pass
    assert not s3.exists(f"raydub-test/locked/{LOCK_NAME}")


def test_an_outage_during_an_outage_extends_it(endpoint):
    """The job test's two outages can overlap (a fast machine ends the analysis within seconds of the first)."""
    import socket

    from tests.outage import wait_for_port

    def reachable() -> bool:
        try:
            socket.create_connection(("127.0.0.1", S3_PORT), timeout=0.5).close()
            return True
        except OSError:
            return False

    started = time.monotonic()
    endpoint.down(2.0)
    time.sleep(1.0)
    endpoint.down(2.0)                            # back 2 s from now, not from the first
    time.sleep(1.5)
    assert not reachable()
    wait_for_port(S3_PORT, 10)
    assert 2.9 <= time.monotonic() - started < 6.0


def test_the_endpoint_away_for_seconds_loses_nothing(s3, endpoint):
    """Reads and writes wait the outage out (botocore's retries with backoff), on the driver as on workers."""
    import threading

    from operators import uri as uris

    uris.write_bytes("s3://raydub-test/outage/before.txt", b"before")
    endpoint.down(4.0)
    started = time.monotonic()
    done = {}

    def io():
        uris.write_bytes("s3://raydub-test/outage/during.txt", b"during")
        done["read"] = uris.read_bytes("s3://raydub-test/outage/before.txt")

    worker = threading.Thread(target=io)
    worker.start()
    worker.join(timeout=120)
    waited = time.monotonic() - started
    assert done.get("read") == b"before"
    assert uris.read_bytes("s3://raydub-test/outage/during.txt") == b"during"
    assert waited >= 3.0                          # it did wait for the endpoint to come back


def test_a_job_whose_endpoint_goes_away_mid_job_loses_nothing(s3, endpoint, ray_local, tmp_path):
    import threading

    speech = str(tmp_path / "s.wav")
    dummies.speech_track([(0.5, "The house is red.")], 3.0, speech)
    dummies.still_video(dummies.portrait(), str(tmp_path / "b.mp4"), 3.0, audio_wav=speech)
    s3.put_file(str(tmp_path / "b.mp4"), "raydub-test/outage-job/media/b.mp4")
    s3.pipe_file("raydub-test/outage-job/catalog.jsonl",
                 (json.dumps({"video_id": "b", "uri": "media/b.mp4", "target_langs": ["es", "pt"]}) + "\n").encode())
    outages = []

    def outage(*_):
        if len(outages) < 2:
            outages.append(time.monotonic())
            endpoint.down(4.0)

    # One 10 s in (planning, analysis), one as the analysis ends and the languages begin.
    timer = threading.Timer(10.0, outage)
    timer.start()
    try:
        summary = run("s3://raydub-test/outage-job/catalog.jsonl", "s3://raydub-test/outage-job/out",
                      config=small_config(lips={"enabled": False}), on_shard=outage)
    finally:
        timer.cancel()
    assert len(outages) == 2                    # both fell inside the job
    assert [(r["lang"], r["status"], r["error"]) for r in sorted(summary.results, key=lambda r: r["lang"])] == [
        ("es", "ok", None), ("pt", "ok", None)]
    rows = manifest.read_manifest("s3://raydub-test/outage-job/out")
    assert sorted(r["lang"] for r in rows) == ["es", "pt"]
    assert all(s3.exists(r["video_out_uri"]) for r in rows)
