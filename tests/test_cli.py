import json
import tomllib

from pipelines.cli import main


def test_config_prints_the_documented_defaults(capsys):
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert tomllib.loads(out)["fit"]["max_speedup"] == 1.3
    assert "# Largest speech-rate increase applied to a dubbed line" in out


def test_config_check_reports_unknown_keys(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[output]\naudio_bitrat_kbps = 128\n")
    assert main(["config", "--check", str(bad)]) == 2
    assert "unknown key 'output.audio_bitrat_kbps'" in capsys.readouterr().err


def test_a_bad_catalog_stops_run_before_any_work(tmp_path, capsys):
    catalog = tmp_path / "c.jsonl"
    catalog.write_text(json.dumps({"video_id": "../x", "uri": "a.mp4"}) + "\n")
    out = tmp_path / "out"
    assert main(["run", "--catalog", str(catalog), "--langs", "es", "--out", str(out)]) == 2
    assert "row 1 (video_id '../x'), field video_id" in capsys.readouterr().err
    assert not out.exists()


def test_bad_langs_and_validate(tmp_path, capsys):
    catalog = tmp_path / "c.csv"
    catalog.write_text("video_id,uri\na,a.mp4\nb,b.mp4\n")
    assert main(["validate", "--catalog", str(catalog), "--langs", "es,de"]) == 0
    assert "ok, 2 videos, 4 (video, language) pairs" in capsys.readouterr().out
    assert main(["validate", "--catalog", str(catalog), "--langs", "es,zz"]) == 2
    assert "--langs: 'zz' is not a BCP 47 language tag" in capsys.readouterr().err
