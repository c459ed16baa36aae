"""Config parsing, validation messages, fingerprint and overrides."""
import pytest

from vlmbench.config import ConfigError, ExperimentConfig, build, expand_env, load_config, parse_assignment


def test_default_is_the_seed_experiment():
    cfg = load_config()
    assert cfg.model_id == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert cfg.quantizer == "bitsandbytes_linear8bitlt"
    assert cfg.precision.language_model == "fp16"
    assert cfg.dataset.hf_parquet_prefix == "hf://datasets/phiyodr/coco2017/"
    assert cfg.dataset.split_file == "data/validation-00000-of-00001-e3c37e369512a3aa.parquet"
    assert (cfg.dataset.limit, cfg.seed, cfg.inference.max_new_tokens, cfg.inference.img_size) == (5000, 42, 40, 1024)
    assert cfg.inference.batch_size == 1000 and cfg.num_chunks == 5
    assert cfg.variants == ("fp16", "int8", "int8_vit")


@pytest.mark.parametrize("data, message", [
    ({"modle_id": "x"}, "unknown config key 'modle_id'. Did you mean 'model_id'?"),
    ({"inference": {"max_new_token": 3}}, "unknown config key 'inference.max_new_token'. Did you mean "
                                          "'inference.max_new_tokens'?"),
    ({"seed": "42"}, "config key 'seed' has value '42'; allowed: an integer"),
    ({"inference": {"img_size": 10.5}}, "config key 'inference.img_size' has value 10.5; allowed: an integer"),
    ({"dataset": {"limit": 0}}, "config key 'dataset.limit' has value 0; allowed: an integer >= 1"),
    ({"variants": ["fp16", "int8vit"]}, "unknown variant 'int8vit'. Did you mean 'int8_vit'? Known variants: "
                                        "fp16, int8, int8_vit"),
    ({"variants": []}, "config key 'variants' is empty"),
    ({"quantizer": "gptq"}, "config key 'quantizer' has value 'gptq'; allowed: bitsandbytes_linear8bitlt"),
    ({"precision": {"language_model": "int4"}}, "allowed: fp16, bf16, fp32"),
    ({"model": {"weights": "fake"}}, "config key 'model.weights' has value 'fake'; allowed: pretrained, random"),
    ({"inference": {"min_new_tokens": 50}}, "config key 'inference.min_new_tokens' has value 50"),
    ({"dataset": {"coco_dir": "a", "parquet_path": "b"}}, "choose one data source"),
    ({"precision": "fp16"}, "config key 'precision' must be a mapping"),
    ({"thresholds": {"per_variant": {"int9": {}}}}, "config key 'thresholds.per_variant' names unknown variant"),
    ({"thresholds": {"default": {"cider_drop": 1}}}, "unknown config key 'thresholds.default.cider_drop'. Did you mean"),
])
def test_bad_config_names_key_value_and_allowed(data, message):
    with pytest.raises(ConfigError) as info:
        build(ExperimentConfig, data)
    assert message in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping of keys at the top level"):
        load_config(bad)


def test_fingerprint_tracks_result_fields_only():
    base = load_config()
    assert base.fingerprint == load_config().fingerprint
    assert base.replace(results_dir="elsewhere").fingerprint == base.fingerprint
    assert base.replace(variants=("fp16",)).fingerprint == base.fingerprint
    assert load_config(overrides={"seed": 1}).fingerprint != base.fingerprint
    assert load_config(overrides={"inference.micro_batch_size": 4}).fingerprint != base.fingerprint


def test_overrides_and_env(monkeypatch):
    assert parse_assignment("inference.micro_batch_size=8") == ("inference.micro_batch_size", 8)
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignment("micro_batch_size")
    cfg = load_config(overrides={"inference.micro_batch_size": 3, "dataset.limit": 7})
    assert (cfg.inference.micro_batch_size, cfg.dataset.limit) == (3, 7)
    monkeypatch.setenv("VLMB_X", "/data")
    assert expand_env("${VLMB_X}/a ${VLMB_MISSING:-dflt}") == "/data/a dflt"
    with pytest.raises(ConfigError, match="VLMB_MISSING"):
        expand_env("${VLMB_MISSING}")


def test_snapshot_round_trip(tmp_path):
    from vlmbench.config import config_to_yaml
    cfg = load_config(overrides={"seed": 7})
    path = tmp_path / "snap.yaml"
    path.write_text(config_to_yaml(cfg))
    again = load_config(path)
    assert again == cfg and again.fingerprint == cfg.fingerprint


def test_every_shipped_config_is_valid():
    from tests.conftest import ROOT
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        assert load_config(path).num_chunks >= 1, path
