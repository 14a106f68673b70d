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
