"""Configs cannot exhaust the machine or slip through: aliases, bounded messages, every numeric range."""
import dataclasses
import json
import math
import time

import pytest

from vlmbench.config import ConfigError, ExperimentConfig, build, config_to_yaml, load_config, parse_assignment, shown
from vlmbench.run.session import BenchSession  # imported before any pytester run, which drops modules it saw imported (torch)


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


# ---------------------------------------------------------------- sizes bounded by the data and the model
CASES_WITHOUT_A_MODEL = """
import pytest

@pytest.fixture(scope="session")
def vlm_variant(request):
    return request.param

def test_caption(vlm_variant, vlm_chunk):
    pass
"""


COUNT_CASES = """
def pytest_collection_modifyitems(items):  # runs before vlmbench's (trylast): how many cases were built
    built = sum(isinstance(getattr(getattr(item, "callspec", None), "params", {}).get("vlm_chunk"), int) for item in items)
    open("cases_built.txt", "w").write(str(built))
"""


def test_a_limit_above_the_data_is_refused_before_any_case_is_built(pytester, write_config):
    """dataset.limit: 10**30 filled the memory while pytest collected 10**27 case ids; the rows are now
    read first and the limit refused against them before any case exists. (10**30 itself would hang
    the old code; 20000 with 2 images per chunk built 10000 cases before the same refusal, and fails
    this test first.)"""
    for limit in (20_000, 10**30):
        config = write_config({"dataset": {"synthetic_images": 8, "limit": limit}})
        pytester.makeconftest(COUNT_CASES)
        pytester.makepyfile(test_cases=CASES_WITHOUT_A_MODEL)
        run = pytester.runpytest_inprocess("--vlm-config", str(config), "--collect-only", "-p", "no:xdist",
                                           "-p", "no:randomly", "-p", "no:cacheprovider")
        built = pytester.path / "cases_built.txt"  # absent when the refusal comes before collection starts
        assert run.ret == pytest.ExitCode.USAGE_ERROR and (not built.exists() or built.read_text() == "0")
        run.stderr.fnmatch_lines([f"*config key 'dataset.limit' is {limit} but the data source has only 8 "
                                  "images; lower the limit to at most 8*"])


def _hub_model_in_cache(tmp_path, monkeypatch, context: int) -> str:
    """org/model at main in an offline HF cache, with a config.json of `context` positions."""
    from huggingface_hub import constants
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf-cache" / "models--org--model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl",
                                                                         "max_position_embeddings": context}))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return "org/model"


def _local_model(tmp_path, context: int) -> str:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl",
                                                   "text_config": {"max_position_embeddings": context}}))
    (folder / "model.safetensors").write_bytes(b"\x00" * 8)
    return str(folder)


# (overrides, context) for every kind of model whose config is knowable before it loads;
# room = context - image tokens (img_size 56: 4; 112: 16) - prompt bytes - 64 template tokens
MODELS = {
    "embedded": ({"model": {"weights": "embedded"}, "inference": {"img_size": 112, "prompt": "Caption:"}}, 1024),
    "random tiny": ({}, 4096),
    "local folder": ("local", 2048),
    "hub (cached config)": ("hub", 2048),
}


@pytest.mark.parametrize("kind", MODELS)
def test_max_new_tokens_beyond_the_models_context_is_refused_with_what_fits(kind, tmp_path, monkeypatch):
    from vlmbench.models.context import image_tokens, prompt_tokens_bound
    overrides, context = MODELS[kind]
    if overrides == "local":
        overrides = {"model_id": _local_model(tmp_path, context), "model": {"weights": "pretrained", "tiny": False}}
    elif overrides == "hub":
        overrides = {"model_id": _hub_model_in_cache(tmp_path, monkeypatch, context),
                     "model": {"weights": "pretrained", "tiny": False}}
    from tests.conftest import TINY, merge
    data = merge(TINY, {**overrides, "results_dir": str(tmp_path / "results")})
    cfg = build(ExperimentConfig, data)
    room = context - image_tokens(cfg.inference.img_size) - prompt_tokens_bound(cfg.inference.prompt)
    fits = BenchSession(cfg.replace(inference=dataclasses.replace(cfg.inference, max_new_tokens=room)), tmp_path)
    fits.identify_model()  # exactly the room left: accepted
    too_many = build(ExperimentConfig, merge(data, {"inference": {"max_new_tokens": 10**9}}))
    with pytest.raises(ConfigError, match=rf"'inference.max_new_tokens' is {10**9} but the model's context is "
                                          rf"{context} tokens .*set inference.max_new_tokens to at most {room}\."):
        BenchSession(too_many, tmp_path).identify_model()


def test_image_tokens_follow_the_processor():
    from vlmbench.models.context import image_tokens
    assert [image_tokens(s) for s in (56, 112, 1024, 3584)] == [4, 16, 1369, 16384]
