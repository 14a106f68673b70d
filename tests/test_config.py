import tomllib

import pytest

from operators.config import STAGES, Config, ConfigError, defaults_toml


def test_defaults_are_documented_and_parse_back():
    text = defaults_toml()
    parsed = tomllib.loads(text)
    assert parsed["fit"]["max_speedup"] == 1.3
    assert Config.from_dict(parsed) == Config()
    # every field of every section carries a description line
    for name, field in Config.model_fields.items():
        if name != "resources":
            for key, f in type(getattr(Config(), name)).model_fields.items():
                assert f.description, f"{name}.{key} has no description"


def test_file_overrides_defaults(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[fit]\nmax_speedup = 1.5\n[resources.transcribe]\nnum_gpus = 0.25\npool = [1, 4]\n')
    cfg = Config.load(str(path))
    assert cfg.fit.max_speedup == 1.5
    assert cfg.fit.min_gap_s == Config().fit.min_gap_s
    assert cfg.resources["transcribe"].pool == (1, 4)


@pytest.mark.parametrize("text, needle", [
    ("[fit]\nmax_sped = 1.5\n", "unknown key 'fit.max_sped'"),
    ("[nonsense]\nx = 1\n", "unknown key 'nonsense'"),
    ("[fit]\nmax_speedup = 0.5\n", "fit.max_speedup"),
    ("[mix]\nbackground = 'magic'\n", "mix.background"),
    ("[resources.bogus]\nnum_cpus = 1\n", "unknown stage 'bogus'"),
    ("[resources.mix]\npool = [3, 1]\n", "pool"),
    ("[fit\n", "not valid TOML"),
    ("[subtitles]\nmin_duration_s = 8.0\n", "min_duration_s (8.0) must be less than max_duration_s (7.0)"),
    ("[subtitles]\ndual_format = 'ass'\n", "subtitles.dual_format"),
])
def test_bad_config_is_an_error_naming_the_key(tmp_path, text, needle):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        Config.load(str(path))
    assert needle in str(e.value)
    assert str(path) in str(e.value)


def test_resources_override_merges_into_operator_defaults():
    from operators.base import Resources

    cfg = Config.from_dict({"resources": {"score": {"num_cpus": 2, "pool": [0, 0]}}})
    merged = Resources(num_cpus=1, pool=(1, 2), batch_size=4).with_(cfg.resources["score"])
    assert merged == Resources(num_cpus=2, pool=None, batch_size=4)
    assert set(STAGES) >= {"transcribe", "mix"}


def test_the_stage_list_is_the_pipelines_stages_in_order():
    """Resource overrides are checked against config.STAGES: it must name every stage the pipeline runs."""
    from pipelines.localize import ANALYZE, LOCALIZE
    from operators.expand import ExpandLanguages

    assert STAGES == tuple(cls.name for cls in (*ANALYZE, ExpandLanguages, *LOCALIZE))
