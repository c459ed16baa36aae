"""Configs cannot exhaust the machine or slip through: aliases, bounded messages, every numeric range."""
import math
import time

import pytest

from vlmbench.config import ConfigError, ExperimentConfig, build, config_to_yaml, load_config, parse_assignment, shown


def _bomb_yaml(depth: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, depth + 1):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 9) + "]")
    return "\n".join(lines)


def test_alias_bomb_as_variants_is_refused_fast_with_a_small_message(tmp_path):
    path = tmp_path / "bomb.yaml"
    path.write_text("anchors:\n  " + _bomb_yaml(9).replace("\n", "\n  ") + "\nvariants: *a9\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert time.perf_counter() - start < 2
    message = str(info.value)
    assert len(message) < 600 and "aliases are not allowed" in message and "line 3" in message


def test_a_shared_reference_bomb_built_in_python_gives_a_bounded_message():
    bomb = ["lol"] * 9
    for _ in range(9):
        bomb = [bomb] * 9  # 9**10 leaves if expanded
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        build(ExperimentConfig, {"variants": bomb})
    assert time.perf_counter() - start < 2 and len(str(info.value)) < 400
    assert "config key 'variants' has value [[[[...], [...], [...], [...], [...], ...]" in str(info.value)
    assert len(shown("x" * 10**7)) < 100 and len(shown(10**4000)) < 100


@pytest.mark.parametrize("text, expected", [
    ("seed: 1\nseed: 2\n", "duplicate key 'seed'"),
    ("inference:\n  batch_size: 4\n  batch_size: 8\n", "duplicate key 'batch_size'"),
    ("seed: " + "9" * 5000 + "\n", "not valid YAML"),
    ("variants: " + "[" * 50_000 + "]" * 50_000 + "\n", "not valid YAML"),
    ("base: &b {max_new_tokens: 3}\ninference:\n  <<: *b\n", "aliases are not allowed"),
])
def test_yaml_that_would_slip_through_is_refused(tmp_path, text, expected):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(path)
    assert len(str(info.value)) < 800


def test_oversized_config_file_is_not_read(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * 2_000_000 + "\nseed: 1\n")
    with pytest.raises(ConfigError, match="bytes; a config holds at most"):
        load_config(path)


def test_vlm_set_values_are_read_strictly():
    with pytest.raises(ConfigError, match="aliases are not allowed"):
        parse_assignment("variants=[&a fp16, *a]")
    assert parse_assignment("variants=[fp16, int8]") == ("variants", ["fp16", "int8"])


BAD = [
    ({"inference": {"batch_size": 4, "micro_batch_size": 16}}, "inference.micro_batch_size", "16",
     "an integer from 1 to 4 (inference.batch_size)"),
    ({"variants": ["fp16", "fp16"]}, "variants", "'fp16' more than once", "each variant once"),
    ({"dataset": {"synthetic_images": -3}}, "dataset.synthetic_images", "-3", "an integer from 1 to 100000"),
    ({"dataset": {"synthetic_images": 0}}, "dataset.synthetic_images", "0", "an integer from 1"),
    ({"dataset": {"synthetic_images": 10**9}}, "dataset.synthetic_images", "1000000000", "an integer from 1"),
    ({"measure": {"warmup_batches": -1}}, "measure.warmup_batches", "-1", "an integer >= 0"),
    ({"measure": {"latency_images": -2}}, "measure.latency_images", "-2", "an integer >= 0"),
    ({"dataset": {"limit": -5}}, "dataset.limit", "-5", "an integer >= 1"),
    ({"inference": {"batch_size": 0}}, "inference.batch_size", "0", "an integer >= 1"),
    ({"inference": {"max_new_tokens": 0}}, "inference.max_new_tokens", "0", "an integer >= 1"),
    ({"inference": {"min_new_tokens": -1}}, "inference.min_new_tokens", "-1", "an integer from 0 to 40"),
    ({"inference": {"img_size": 0}}, "inference.img_size", "0", "an integer from 56 to 3584"),
    ({"inference": {"img_size": 55}}, "inference.img_size", "55", "an integer from 56 to 3584"),
    ({"inference": {"img_size": 100_000}}, "inference.img_size", "100000", "max_pixels"),
    ({"inference": {"prefetch_batches": -1}}, "inference.prefetch_batches", "-1", "an integer from 0 to 64"),
    ({"inference": {"prefetch_batches": 10**6}}, "inference.prefetch_batches", "1000000", "from 0 to 64"),
    ({"dataset": {"download_workers": 0}}, "dataset.download_workers", "0", "an integer from 1 to 32"),
    ({"dataset": {"download_workers": 10**5}}, "dataset.download_workers", "100000", "connection pool"),
    ({"seed": -1}, "seed", "-1", "an integer from 0 to 4294967295"),
    ({"seed": 2**32}, "seed", "4294967296", "an integer from 0 to 4294967295"),
    ({"thresholds": {"default": {"cider_drop_abs": -1}}}, "thresholds.default.cider_drop_abs", "-1.0",
     "null or a finite number >= 0"),
    ({"thresholds": {"default": {"latency_increase_pct": math.nan}}}, "thresholds.default.latency_increase_pct",
     "nan", "null or a finite number >= 0"),
    ({"thresholds": {"per_variant": {"int8": {"energy_increase_pct": math.inf}}}},
     "thresholds.per_variant.int8.energy_increase_pct", "inf", "null or a finite number >= 0"),
    ({"inference": {"prompt": "   "}}, "inference.prompt", "'   '", "a non-blank instruction"),
    ({"model_id": ""}, "model_id", "''", "not blank"),
]


@pytest.mark.parametrize("data, key, value, allowed", BAD, ids=[b[1] + "=" + b[2][:20] for b in BAD])
def test_each_bad_value_is_refused_naming_key_value_and_what_is_allowed(data, key, value, allowed):
    with pytest.raises(ConfigError) as info:
        build(ExperimentConfig, data)
    message = str(info.value)
    assert f"config key '{key}'" in message and value in message and allowed in message
    assert "at most 0" not in message


def test_edges_of_each_range_are_accepted():
    cfg = build(ExperimentConfig, {"seed": 0, "inference": {"batch_size": 4, "micro_batch_size": 4, "img_size": 56,
                                                            "prefetch_batches": 0, "min_new_tokens": 40},
                                   "measure": {"latency_images": 0, "warmup_batches": 0},
                                   "dataset": {"download_workers": 32},
                                   "thresholds": {"default": {"cider_drop_abs": 0}}})
    assert cfg.inference.micro_batch_size == 4 and cfg.seed == 0


def test_snapshots_never_hold_aliases(tmp_path):
    cfg = load_config()
    shared = [1, 2, 3]
    text = config_to_yaml(cfg, resolved={"first_image_ids": shared, "again": shared})
    assert "&id" not in text and "*id" not in text
    path = tmp_path / "snap.yaml"
    path.write_text(text)
    assert load_config(path) == cfg


def test_shown_keeps_both_ends_of_a_long_string_within_a_short_limit():
    """config.shown serves every message (config, data cells, file names, CSV cells); a short limit
    still shows a string's start and end (a file name keeps its extension) and its quotes."""
    text = shown("../" + "x" * 500 + ".jpg", 60)
    assert len(text) <= 60 and text.startswith("'../x") and text.endswith("x.jpg'") and "..." in text
    assert len(shown({"captions": ["x" * 500] * 50, "more": list(range(10**4))}, 45)) <= 45
    assert shown("a dog", 45) == "'a dog'" and shown(None, 45) == "None"
