"""Shared fixtures for vlmbench's own tests (CPU, offline, tiny models).

The real COCO files and Qwen2.5-VL processor files live in ../shared (or $VLMBENCH_SHARED); tests
that need them skip with the reason when that folder is absent, as on a user's machine.
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]

# One intra-op thread for torch here and in every `pytest benchmarks` subprocess the tests start (they
# inherit the environment): the tests' matrices are tiny, and on a 2-core machine shared with other work
# torch's default (one thread per core, spinning while they wait for each other) made a tiny fp16 Linear
# 4-5x slower in wall time and 8x in CPU time than one thread. Set before anything imports torch; a
# value the caller exported wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def shared_dir() -> Path:
    return Path(os.environ.get("VLMBENCH_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared():
    path = shared_dir()
    if not (path / "coco-val2017-sample").is_dir():
        pytest.skip(f"shared test data not found at {path} (set VLMBENCH_SHARED)")
    return path


@pytest.fixture(scope="session")
def coco_sample(shared):
    return shared / "coco-val2017-sample"


@pytest.fixture(scope="session")
def qwen_files(shared):
    return shared / "models" / "qwen2_5_vl_3b"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Random-weight models, synthetic samples and image downloads go to one temporary cache."""
    cache = tmp_path_factory.mktemp("vlmbench-cache")
    old = os.environ.get("VLMBENCH_CACHE")
    os.environ["VLMBENCH_CACHE"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("VLMBENCH_CACHE", None)
    else:
        os.environ["VLMBENCH_CACHE"] = old


TINY = {
    "experiment_name": "test",
    "dataset": {"synthetic_images": 8, "limit": 4},
    "inference": {"max_new_tokens": 4, "img_size": 56, "batch_size": 2, "micro_batch_size": 2},
    "variants": ["fp16"],
    "model": {"weights": "random", "tiny": True, "processor": "builtin"},
    "measure": {"latency_images": 1, "model_size": False},
}


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


@pytest.fixture
def write_config(tmp_path):
    """Writes a tiny experiment YAML (TINY merged with overrides) and returns its path."""
    def write(extra: dict | None = None, name: str = "exp.yaml") -> Path:
        data = merge(TINY, extra or {})
        data.setdefault("results_dir", str(tmp_path / "results"))
        path = tmp_path / name
        path.write_text(yaml.safe_dump(data))
        return path
    return write


@pytest.fixture
def fifo_watchdog(tmp_path):
    """Fails (instead of hanging forever) a test in which vlmbench opens a FIFO under tmp_path for reading.

    A thread keeps opening each FIFO for writing without blocking: that succeeds only while some reader
    has it open, which vlmbench must never do. The open also releases a reader stuck in open(), so the
    test runs on and fails at teardown; an alarm signal could not, landing in another thread."""
    import threading
    opened, stop = [], threading.Event()

    def watch():
        while not stop.wait(0.05):
            for path in tmp_path.rglob("*"):
                try:
                    if stat.S_ISFIFO(path.lstat().st_mode):
                        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                        opened.append(path.name)
                except OSError:  # ENXIO: no reader, as it should be
                    pass
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()
    assert not opened, f"vlmbench opened FIFO(s) for reading: {sorted(set(opened))}"
