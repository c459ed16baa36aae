"""Scale-out end to end: `-n 2`, shards in turn and at once, a killed worker (CPU, tiny model).

Each test runs `pytest benchmarks` on a tiny random Qwen2.5-VL: 2 variants x 2 chunks. Runs with
pytest-xdist workers, concurrent shards and the killed worker are real subprocesses (`run`, `start`);
single runs and shards one after the other run in this process (`run_here`, tests/inprocess.py),
which saves a fresh interpreter's imports per run.
"""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT, TINY, merge
from tests.inprocess import run_pytest

pytestmark = pytest.mark.slow
SAME_IN_EVERY_RUN = ("image_id", "file_name", "variant", "chunk_id", "status", "error", "caption", "generated_tokens",
                     "micro_batch_index", "micro_batch_size", "config_fingerprint")
KILLER = '''
import os, signal
def pytest_runtest_teardown(item):
    flag = os.environ["KILL_FLAG"]
    if os.environ.get("PYTEST_XDIST_WORKER") == "gw0" and not os.path.exists(flag):
        open(flag, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)  # after gw0's first chunk CSV is in place
'''


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("scaleout") / "exp.yaml"
    path.write_text(yaml.safe_dump(merge(TINY, {"variants": ["fp16", "int8_vit"]})))
    return path


def start(config, results, *args, env=None):
    command = [sys.executable, "-m", "pytest", "benchmarks", "--vlm-config", str(config), "--vlm-results",
               str(results), "-p", "no:cacheprovider", "-p", "no:randomly", "-rs", *args]
    return subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def run(config, results, *args, env=None) -> tuple[int, str]:
    proc = start(config, results, *args, env=env)
    out, _ = proc.communicate(timeout=900)
    return proc.returncode, out


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """The folder where in-process runs start: a copy of benchmarks/."""
    folder = tmp_path_factory.mktemp("sandbox")
    shutil.copytree(ROOT / "benchmarks", folder / "benchmarks")
    return folder


def run_here(sandbox, config, results, *args) -> tuple[int, str]:
    """`run` in this process, for runs that need no process of their own; stdout and stderr together."""
    result = run_pytest(sandbox, "benchmarks", "--vlm-config", str(config), "--vlm-results", str(results),
                        "-p", "no:cacheprovider", "-p", "no:randomly", "-rs", *args)
    return result.ret, "\n".join(result.outlines + result.errlines)


def rows(results) -> dict[str, list[dict]]:
    """File name -> rows, the columns that must not depend on how the run was spread."""
    out = {}
    for path in sorted(results.glob("*_batch_*.csv")):
        with open(path, newline="") as handle:
            out[path.name] = [{k: r[k] for k in SAME_IN_EVERY_RUN} for r in csv.DictReader(handle)]
    return out


def workers(results) -> dict[str, str]:
    out = {}
    for path in sorted(results.glob("*_batch_*.csv")):
        with open(path, newline="") as handle:
            out[path.name] = {r["worker"] for r in csv.DictReader(handle)}.pop()
    return out


def summary(results) -> dict:
    return json.loads(sorted(results.glob("summary_*.json"))[-1].read_text())


@pytest.fixture(scope="module")
def unsharded(config, sandbox, tmp_path_factory):
    results = tmp_path_factory.mktemp("n0") / "results"
    code, out = run_here(sandbox, config, results)
    assert code == 0, out
    return results


def test_two_workers_give_the_rows_and_summary_of_one_process(config, unsharded, tmp_path):
    results = tmp_path / "n2"
    code, out = run(config, results, "-n", "2")
    assert code == 0, out
    assert "vlmbench summary" in out and out.count("preflight:") == 1  # the controller checked once
    # the header has a line of its own, not the end of xdist's line of progress dots
    assert [line for line in out.splitlines() if "vlmbench summary" in line][0].startswith("=")
    assert rows(results) == rows(unsharded) and len(rows(results)) == 4
    # one contiguous slice per worker: each worker loaded one variant
    assert sorted(set(workers(results).values())) == ["gw0", "gw1"]
    assert workers(results)["fp16_batch_0.csv"] == workers(results)["fp16_batch_1.csv"]
    one, two = summary(unsharded), summary(results)
    assert one.keys() == two.keys() and one["variants"].keys() == two["variants"].keys()
    for variant, entry in one["variants"].items():
        assert entry.keys() == two["variants"][variant].keys()
        for key in ("cider", "images_captioned", "images_failed", "census", "missing_chunks",
                    "generated_tokens_mean", "cider_images"):
            assert entry[key] == two["variants"][variant][key], key
    assert len(list(results.glob("summary_2*.json"))) == 1

    other = config.with_name("other.yaml")
    other.write_text(yaml.safe_dump({**yaml.safe_load(config.read_text()), "seed": 7}))
    before = {p.name: p.read_bytes() for p in results.glob("*.csv")}
    code, out = run(other, results, "-n", "2")  # the controller refuses once, before any case is sent
    assert code == pytest.ExitCode.USAGE_ERROR and "was made by a different experiment" in out, out
    assert {p.name: p.read_bytes() for p in results.glob("*.csv")} == before


def test_shards_in_turn_and_at_once_produce_exactly_the_unsharded_set(config, unsharded, sandbox, tmp_path):
    in_turn = tmp_path / "in_turn"
    code, out = run_here(sandbox, config, in_turn, "--vlm-shard", "0/2")
    assert code == 0 and "finished its share; 2 chunk(s) of the experiment are not in" in out, out
    assert not list(in_turn.glob("summary_*.json"))
    code, out = run_here(sandbox, config, in_turn, "--vlm-shard", "1/2")
    assert code == 0 and "vlmbench summary" in out, out  # the last shard reports the whole folder
    assert rows(in_turn) == rows(unsharded)
    assert summary(in_turn)["variants"]["int8_vit"]["missing_chunks"] == []

    at_once = tmp_path / "at_once"
    procs = [start(config, at_once, "--vlm-shard", f"{k}/2") for k in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert rows(at_once) == rows(unsharded)
    assert workers(at_once) == {"fp16_batch_0.csv": "shard 0/2", "fp16_batch_1.csv": "shard 0/2",
                                "int8_vit_batch_0.csv": "shard 1/2", "int8_vit_batch_1.csv": "shard 1/2"}
    assert not list((at_once / "claims").glob("*.claim"))


def test_a_shard_with_an_empty_share_succeeds_and_writes_nothing(config, sandbox, tmp_path):
    """A Slurm array with more tasks than chunk cases: the extra task exits 0 (pytest's 5 reads as failed)."""
    results = tmp_path / "empty_share"
    code, out = run_here(sandbox, config, results, "--vlm-shard", "5/6")
    assert code == 0, out
    assert "shard 5/6: its share is empty (4 selected chunk case(s) over 6 shards); nothing to do" in out, out
    assert not results.exists() or not any(results.iterdir())


def test_a_killed_worker_loses_no_finished_chunk(config, sandbox, tmp_path):
    (tmp_path / "killer.py").write_text(KILLER)
    results = tmp_path / "killed"
    env = {"KILL_FLAG": str(tmp_path / "killed-once"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    code, out = run(config, results, "-n", "2", "-p", "killer", env=env)
    assert (tmp_path / "killed-once").exists() and "crashed" in out, out
    by_worker = workers(results)
    killed = [name for name, worker in by_worker.items() if worker == "gw0"]
    assert len(killed) == 1 and len(by_worker) == 4, by_worker  # gw0's chunk kept; the rest finished elsewhere
    before = {p.name: p.stat().st_mtime_ns for p in results.glob("*_batch_*.csv")}
    code, out = run_here(sandbox, config, results)
    assert code == 0 and "4 skipped" in out, out
    assert not list((results / "claims").glob("*.claim"))  # the dead worker's claim was found stale and removed
    assert {p.name: p.stat().st_mtime_ns for p in results.glob("*_batch_*.csv")} == before


def test_a_variant_split_over_two_workers_keeps_both_records(sandbox, tmp_path):
    """fp16's two chunks on gw0 and gw1 (and on two shards): variant_fp16.json keeps both loads, the summary
    says what held for both and where they differed."""
    from vlmbench.results.variant_records import read_variant_records
    config = tmp_path / "one_variant.yaml"
    config.write_text(yaml.safe_dump(TINY))  # 1 variant x 2 chunks: one chunk per worker
    results = tmp_path / "split"
    code, out = run(config, results, "-n", "2")
    assert code == 0, out
    assert sorted(workers(results).values()) == ["gw0", "gw1"]
    records = read_variant_records(results, "fp16")
    assert sorted(records) == ["gw0 on CPU", "gw1 on CPU"]
    entry = summary(results)["variants"]["fp16"]
    assert entry["writers"] == sorted(records) and entry["micro_batch_size"] == 2 and entry["dtype"] == "fp16"
    assert entry["census"] == records["gw0 on CPU"]["census"] == records["gw1 on CPU"]["census"]
    assert "load_s" in entry["writers_differ"] and entry["load_s"] is None  # each worker timed its own load
    assert "gw0 on CPU: " in entry["load_s_null_reason"] and "gw1 on CPU: " in entry["load_s_null_reason"]

    sharded = tmp_path / "sharded"
    for k in range(2):
        assert run_here(sandbox, config, sharded, "--vlm-shard", f"{k}/2")[0] == 0
    assert sorted(read_variant_records(sharded, "fp16")) == ["shard 0/2 on CPU", "shard 1/2 on CPU"]
    assert summary(sharded)["variants"]["fp16"]["writers"] == ["shard 0/2 on CPU", "shard 1/2 on CPU"]
