"""kill -9 at random moments: no half-written CSV is ever taken as finished, nothing is left behind,
and a rerun completes (the promise of atomic writes, the stale-lock takeover and the leftover sweep).

Bounded in time: a tiny 4-chunk experiment, three kills at seeded random moments, one final run
(about 30-60 s on two CPU cores).
"""
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import ROOT, TINY, merge

pytestmark = pytest.mark.slow


def _start(workdir, config, env):
    return subprocess.Popen([sys.executable, "-m", "pytest", "benchmarks", "--vlm-config", str(config), "-q",
                             "-p", "no:cacheprovider", "-p", "no:randomly"], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _kill_at_a_random_moment(proc, results, rng):
    """SIGKILL once a moment chosen at random has come: after collection took the lock, or after a CSV."""
    wait_for = rng.choice(["lock", "csv", "time"])
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if wait_for == "lock" and (results / ".vlmbench.lock").exists():
            break
        if wait_for == "csv" and list(results.glob("*_batch_*.csv")):
            break
        if wait_for == "time":
            time.sleep(rng.uniform(1.0, 6.0))
            break
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def _assert_every_csv_is_whole(results, chunks, fingerprint):
    from vlmbench.results.records import chunk_csv_path, inspect_chunk
    for chunk_id, rows in enumerate(chunks):
        path = chunk_csv_path(results, "fp16", chunk_id)
        state = inspect_chunk(path, [r.image_id for r in rows], fingerprint)
        assert state.status in ("missing", "complete"), f"{path.name}: {state}"


def _leftovers(*folders):
    return [p for folder in folders if folder.exists() for p in folder.rglob("*")
            if p.name.endswith(".tmp") or p.name.startswith((".staging-", ".size-"))]


def test_kill_minus_nine_at_random_moments_then_a_rerun_completes(tmp_path, monkeypatch):
    from vlmbench.config import load_config
    from vlmbench.data.sources import load_rows, make_chunks
    shutil.copytree(ROOT / "benchmarks", tmp_path / "benchmarks")
    results, cache = tmp_path / "results", tmp_path / "cache"
    config = tmp_path / "kill.yaml"
    config.write_text(yaml.safe_dump(merge(TINY, {"dataset": {"synthetic_images": 8, "limit": 8},
                                                  "measure": {"model_size": True}, "results_dir": str(results)})))
    env = {**os.environ, "VLMBENCH_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    monkeypatch.setenv("VLMBENCH_CACHE", str(cache))
    cfg = load_config(config).with_engine("cpu")  # as the run resolves engine: auto on a CPU
    chunks = make_chunks(load_rows(cfg), cfg.inference.batch_size)
    rng = random.Random(int(os.environ.get("VLMBENCH_KILL_SEED", "13")))
    for _ in range(3):
        _kill_at_a_random_moment(_start(tmp_path, config, env), results, rng)
        _assert_every_csv_is_whole(results, chunks, cfg.fingerprint)
    final = _start(tmp_path, config, env)
    assert final.wait(timeout=300) == 0
    _assert_every_csv_is_whole(results, chunks, cfg.fingerprint)
    assert len(list(results.glob("fp16_batch_*.csv"))) == len(chunks) == 4
    assert list(results.glob("summary_*.json")) and not (results / ".vlmbench.lock").exists()
    assert _leftovers(results, cache) == []
