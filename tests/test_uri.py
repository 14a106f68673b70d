import pytest

from operators import uri as uris


def test_local_and_remote_paths_join_and_resolve(tmp_path):
    assert uris.join("s3://bucket/out/", "videos", "a.mp4") == "s3://bucket/out/videos/a.mp4"
    assert uris.join(str(tmp_path), "a", "b.wav") == str(tmp_path / "a" / "b.wav")
    assert uris.resolve("clips/a.mp4", "s3://bucket/jobs/catalog.parquet") == "s3://bucket/jobs/clips/a.mp4"
    assert uris.resolve("s3://other/a.mp4", str(tmp_path / "c.csv")) == "s3://other/a.mp4"
    assert uris.resolve("/abs/a.mp4", str(tmp_path / "c.csv")) == "/abs/a.mp4"


def test_artifacts_round_trip_through_an_fsspec_filesystem(tmp_path):
    # memory:// stands in for s3://: the same code path through fsspec, no network
    target = "memory://raydub-test/work/v1/seg.wav"
    src = tmp_path / "x.bin"
    src.write_bytes(b"abc")
    uris.upload(str(src), target)
    assert uris.exists(target) and uris.read_bytes(target) == b"abc"
    with uris.local_copy(target) as local:
        assert open(local, "rb").read() == b"abc"
    with uris.staged_output("memory://raydub-test/out/y.txt") as local:
        open(local, "w").write("done")
    assert uris.read_text("memory://raydub-test/out/y.txt") == "done"
    uris.write_text("memory://raydub-test/out/z.txt", "z")
    assert uris.read_text("memory://raydub-test/out/z.txt") == "z"


SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRET"
PRESIGNED = ("https://bucket.s3.amazonaws.com/masters/ep01.mp4?X-Amz-Algorithm=AWS4-HMAC-SHA256"
             f"&X-Amz-Credential=AKIAEXAMPLE%2F20261130%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261130T000000Z"
             f"&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={SECRET}")


@pytest.mark.parametrize("uri, shown", [
    (PRESIGNED, "https://bucket.s3.amazonaws.com/masters/ep01.mp4?X-Amz-Algorithm=REDACTED&X-Amz-Credential=REDACTED"
                "&X-Amz-Date=REDACTED&X-Amz-Expires=REDACTED&X-Amz-SignedHeaders=REDACTED&X-Amz-Signature=REDACTED"),
    (f"ftp://studio:{SECRET}@media.example.com/ep.mov", "ftp://REDACTED@media.example.com/ep.mov"),
    (f"https://cdn.example.com/ep.mp4?token={SECRET}#t={SECRET}", "https://cdn.example.com/ep.mp4?token=REDACTED#REDACTED"),
    (f"https://x.blob.core.windows.net/c/ep.mp4?sv=2024&sig={SECRET}", "https://x.blob.core.windows.net/c/ep.mp4?sv=REDACTED&sig=REDACTED"),
    ("s3://bucket/masters/ep01.mp4", "s3://bucket/masters/ep01.mp4"),
    ("/local/path/ep?.mp4", "/local/path/ep?.mp4"),
])
def test_redacted_keeps_where_and_drops_credentials(uri, shown):
    assert uris.redacted(uri) == shown


def test_redact_text_finds_uris_and_stray_tokens_in_messages():
    msg = (f"ClientResponseError: 403, message='Forbidden', url='{PRESIGNED}' "
           f"(retrying with Signature={SECRET}; auth https://u:{SECRET}@h/x)")
    out = uris.redact_text(msg)
    assert SECRET not in out and "AKIAEXAMPLE" not in out
    assert "bucket.s3.amazonaws.com/masters/ep01.mp4" in out and "403, message='Forbidden'" in out
    assert uris.redact_text("no uri here: a=1") == "no uri here: a=1"


def test_local_copy_of_a_presigned_url_does_not_name_the_file_after_the_query(tmp_path):
    import http.server
    import threading

    (tmp_path / "clip.bin").write_bytes(b"media")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/clip.bin?X-Amz-Signature={SECRET}"
        with uris.local_copy(url) as local:
            assert open(local, "rb").read() == b"media"
            assert SECRET not in local and local.endswith("clip.bin")
    finally:
        server.shutdown()
        server.server_close()
