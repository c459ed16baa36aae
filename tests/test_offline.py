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
    from vlmbench.models.loading import build_processor, model_identity
    cfg = load_config(overrides={"model_id": "org/uncached"})
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"'org/uncached' .revision main. is not in the Hugging Face cache and "
                                          r"offline \(VLMBENCH_OFFLINE or HF_HUB_OFFLINE is set\)"):
        model_identity(cfg)
    with pytest.raises(ConfigError, match="not in the Hugging Face cache and offline"):
        download_parquet(DatasetConfig())
    assert no_network == [] and time.perf_counter() - start < 5  # was 31 s of retries before the message
    with pytest.raises(OSError):  # importing transformers takes seconds here: not timed
        build_processor(cfg)
    assert no_network == []


def test_the_entry_points_switch_huggingface_hub_offline_too(vlmbench_offline_only):
    from huggingface_hub import constants
    from vlmbench.offline import apply_offline_switch
    assert apply_offline_switch() is True
    assert os.environ["HF_HUB_OFFLINE"] == "1" and constants.HF_HUB_OFFLINE is True
