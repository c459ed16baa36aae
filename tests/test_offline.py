"""One offline switch: VLMBENCH_OFFLINE=1 alone asks no server (model identity, processor, weights, the Hub
parquet) and says so at once; before, the model lookup tried the Hub for about 31 s (issue 17.5)."""
import os
import socket
import time

import pytest

from vlmbench.config import ConfigError, DatasetConfig, load_config


@pytest.fixture
def no_network(monkeypatch):
    """Every attempt to resolve a host or open a connection is recorded and refused."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise OSError("the test allows no network")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.fixture
def vlmbench_offline_only(tmp_path, monkeypatch):
    """VLMBENCH_OFFLINE=1 with HF_HUB_OFFLINE unset (in the environment and in huggingface_hub), an empty HF cache."""
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.setenv(name, "")  # recorded, so teardown restores what was there
    monkeypatch.setenv("VLMBENCH_OFFLINE", "1")


def test_vlmbench_offline_alone_asks_no_server_and_answers_at_once(vlmbench_offline_only, no_network):
    from vlmbench.data.hub import download_parquet
    from vlmbench.models.loading import model_identity
    cfg = load_config(overrides={"model_id": "org/uncached"})
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"'org/uncached' .revision main. is not in the Hugging Face cache and "
                                          r"offline \(VLMBENCH_OFFLINE or HF_HUB_OFFLINE is set\)"):
        model_identity(cfg)
    with pytest.raises(ConfigError, match="not in the Hugging Face cache and offline"):
        download_parquet(DatasetConfig())
    assert no_network == [] and time.perf_counter() - start < 5  # was 31 s of retries before the message


def test_a_prequantized_checkpoints_config_is_not_fetched_offline(vlmbench_offline_only, no_network):
    """The check before any model loads reads the checkpoint's config.json; offline, from the Hub cache only."""
    from vlmbench.quantize.prequantized import refusal
    why = refusal("org/uncached-awq", None)
    assert why.startswith("cannot read config.json of 'org/uncached-awq'") and no_network == []


def test_processor_and_weights_load_from_local_files_with_the_hub_offline(vlmbench_offline_only, monkeypatch):
    """build_processor and load_variant_model call from_pretrained with local_files_only and huggingface_hub's
    offline constant set (transformers reads it through is_offline_mode for its own Hub calls). The
    transformers classes are stand-ins here: importing AutoProcessor costs 20 s on a busy CPU."""
    import transformers
    from huggingface_hub import constants
    from vlmbench.models.loading import build_processor, load_variant_model
    from vlmbench.quantize.variants import get_variant
    calls = []

    class Loaded:
        tokenizer = type("Tokenizer", (), {})()

        @classmethod
        def from_pretrained(cls, source, **kwargs):
            calls.append((source, kwargs["local_files_only"], constants.HF_HUB_OFFLINE))
            return cls()

        @classmethod
        def get_config_dict(cls, source, **kwargs):  # PreTrainedConfig's: the family is read before loading
            cls.from_pretrained(source, **kwargs)
            return {"model_type": "qwen2_5_vl"}, {}

        def eval(self):
            return self
    for name in ("AutoProcessor", "PreTrainedConfig", "AutoModelForImageTextToText"):
        monkeypatch.setitem(transformers.__dict__, name, Loaded)  # no lazy import of the real class
    cfg = load_config(overrides={"model_id": "org/uncached"})
    build_processor(cfg)
    load_variant_model(cfg, get_variant("fp16"), "org/uncached", "cpu")
    assert calls == [("org/uncached", True, True)] * 3  # processor, config (the family), weights
    assert constants.HF_HUB_OFFLINE is False  # set for the call only: later online tests are not affected


def test_the_entry_points_switch_huggingface_hub_offline_too(vlmbench_offline_only):
    from huggingface_hub import constants
    from vlmbench.offline import apply_offline_switch
    assert apply_offline_switch() is True
    assert os.environ["HF_HUB_OFFLINE"] == "1" and constants.HF_HUB_OFFLINE is True
