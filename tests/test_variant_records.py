"""`variant_<name>.json` keeps every writer's record (xdist workers, shards); the summary combines them.

Fast: records and chunk CSVs are written by hand (tests/results_factory.py); the end-to-end runs with
`-n 2` and shards are in tests/test_scaleout.py.
"""
import json
import os
import subprocess
import sys
import time

from tests.results_factory import tiny_config, write_results
from vlmbench.results.report import report
from vlmbench.results.variant_records import merge_variant_record, read_variant_records


def _record(cfg, worker, gpu, **fields):
    return {"variant": "fp16", "worker": worker, "gpu_uuid": gpu, "config_fingerprint": cfg.fingerprint,
            "census": {"vision": {"linear": 4, "int8": 0}}, "dtype": "fp16", "engine": {"kernel": "sdpa"},
            "micro_batch_size": 2, "micro_batch_size_source": "config", "model_size_mb": 1.5, "load_s": 1.0,
            "gpu_name": "Fake GPU", "driver": "550.1", **fields}


def _split_folder(tmp_path):
    """fp16's chunk 0 made by gw0 on GPU-a, chunk 1 by gw1 on GPU-b; int8's both by main on GPU-a."""
    cfg = tiny_config(tmp_path, 12, chunks=2)
    who = {("fp16", 0): ("gw0", "GPU-a"), ("fp16", 1): ("gw1", "GPU-b"), ("int8", 0): ("main", "GPU-a"),
           ("int8", 1): ("main", "GPU-a")}
    write_results(cfg, tmp_path, chunk_cells={k: {"worker": w, "gpu_uuid": g} for k, (w, g) in who.items()})
    return cfg


def _summary_and_table(tmp_path, cfg):
    summary, _ = report(tmp_path, cfg, time.time(), None, "nltk-treebank")
    return summary, (tmp_path / "summary_latest.md").read_text()


def test_two_writers_of_one_variant_are_both_kept_and_their_differences_shown(tmp_path):
    cfg = _split_folder(tmp_path)
    merge_variant_record(tmp_path, _record(cfg, "gw0", "GPU-a", micro_batch_size=8, load_s=2.0))
    merge_variant_record(tmp_path, _record(cfg, "gw1", "GPU-b", micro_batch_size=16, load_s=3.0))
    merge_variant_record(tmp_path, _record(cfg, "gw2", "GPU-c", micro_batch_size=4))  # made none of the chunks
    merge_variant_record(tmp_path, {**_record(cfg, "main", "GPU-a"), "variant": "int8", "dtype": "int8"})
    assert sorted(read_variant_records(tmp_path, "fp16")) == ["gw0 on GPU-a", "gw1 on GPU-b", "gw2 on GPU-c"]
    summary, table = _summary_and_table(tmp_path, cfg)
    fp16 = summary["variants"]["fp16"]
    assert fp16["writers"] == ["gw0 on GPU-a", "gw1 on GPU-b"]  # gw2's record describes no chunk here
    assert fp16["census"] == {"vision": {"linear": 4, "int8": 0}} and fp16["engine"] == {"kernel": "sdpa"}  # agreed
    assert fp16["writers_differ"] == ["micro_batch_size", "load_s"]
    assert fp16["micro_batch_size"] is None and fp16["load_s"] is None
    assert fp16["micro_batch_size_null_reason"] == ("differs between the processes that made the chunks "
                                                    "(gw0 on GPU-a: 8; gw1 on GPU-b: 16)")
    assert "WARNING fp16: the 2 processes that made its chunks differed in micro-batch size (values in the n/a lines)" in table
    assert "n/a micro-batch size of fp16: differs between the processes that made the chunks (gw0 on GPU-a: 8" in table
    int8 = summary["variants"]["int8"]
    assert int8["writers"] == ["main on GPU-a"] and int8["writers_differ"] == [] and int8["dtype"] == "int8"
    assert "WARNING int8" not in table and summary["environment"]["gpu_name"] == "Fake GPU"


def test_a_record_of_an_older_vlmbench_is_read_as_one_writer_and_kept_when_merged(tmp_path):
    cfg = _split_folder(tmp_path)
    old = {k: v for k, v in _record(cfg, None, None, micro_batch_size=8).items() if k not in ("worker", "gpu_uuid")}
    (tmp_path / "variant_fp16.json").write_text(json.dumps(old))  # a flat record: one writer, no worker named
    summary, _ = _summary_and_table(tmp_path, cfg)
    assert summary["variants"]["fp16"]["micro_batch_size"] == 8
    assert summary["variants"]["fp16"]["writers"] == ["main on CPU"]
    merge_variant_record(tmp_path, _record(cfg, "gw1", "GPU-b"))
    assert sorted(read_variant_records(tmp_path, "fp16")) == ["gw1 on GPU-b", "main on CPU"]


def test_records_of_another_experiment_are_dropped_on_merge_and_ignored_on_read(tmp_path):
    cfg = _split_folder(tmp_path)
    merge_variant_record(tmp_path, {**_record(cfg, "gw0", "GPU-a"), "config_fingerprint": "0" * 16})
    summary, _ = _summary_and_table(tmp_path, cfg)
    assert summary["variants"]["fp16"]["model_size_mb"] is None
    assert "holds records of another experiment only" in summary["variants"]["fp16"]["model_size_mb_null_reason"]
    merge_variant_record(tmp_path, _record(cfg, "gw1", "GPU-b"))
    assert list(read_variant_records(tmp_path, "fp16")) == ["gw1 on GPU-b"]


MERGER = """
import sys, time
from vlmbench.results.variant_records import merge_variant_record
folder, worker, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
time.sleep(max(0.0, start - time.time()))
for n in range(25):
    merge_variant_record(folder, {"variant": "fp16", "worker": worker, "gpu_uuid": None, "n": n,
                                  "config_fingerprint": "f" * 16})
"""


def test_writers_merging_at_the_same_time_lose_no_record(tmp_path):
    start = time.time() + 2.0  # every process is up before the first merge
    procs = [subprocess.Popen([sys.executable, "-c", MERGER, str(tmp_path), f"gw{i}", str(start)], env={**os.environ})
             for i in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    records = read_variant_records(tmp_path, "fp16")
    assert sorted(records) == [f"gw{i} on CPU" for i in range(4)]
    assert {r["n"] for r in records.values()} == {24}


def test_a_finishing_shard_reads_each_chunk_csv_and_variant_record_once(tmp_path, monkeypatch):
    """The shard's check that the experiment is complete reads every CSV; the report uses those rows."""
    import builtins
    import io
    from collections import Counter
    from pathlib import Path

    from vlmbench.plugin import _read_experiment_chunks
    from vlmbench.results.report import finish_run
    from vlmbench.run.session import BenchSession
    cfg = _split_folder(tmp_path)
    merge_variant_record(tmp_path, _record(cfg, "gw0", "GPU-a"))
    merge_variant_record(tmp_path, {**_record(cfg, "main", "GPU-a"), "variant": "int8"})
    bench = BenchSession(cfg, tmp_path)
    assert len(bench.chunks) == 2  # the experiment's rows resolved before counting
    reads, real_open = Counter(), io.open

    def counting_open(file, mode="r", *args, **kwargs):
        if str(file).startswith(str(tmp_path)) and mode.startswith("r"):
            reads[Path(file).name] += 1
        return real_open(file, mode, *args, **kwargs)
    monkeypatch.setattr(io, "open", counting_open)
    monkeypatch.setattr(builtins, "open", counting_open)
    unfinished, known_rows = _read_experiment_chunks(bench)
    verdict = finish_run(bench, None, known_rows)
    monkeypatch.undo()
    assert unfinished == [] and not verdict.failed, verdict.text
    assert {name: n for name, n in reads.items() if name.endswith((".csv", ".json"))} == {
        "fp16_batch_0.csv": 1, "fp16_batch_1.csv": 1, "int8_batch_0.csv": 1, "int8_batch_1.csv": 1,
        "variant_fp16.json": 1, "variant_int8.json": 1, "references.json": 1}


def test_the_summary_takes_the_speed_settings_that_made_the_chunks_and_flags_a_difference():
    """decode_workers and prefetch_batches are outside the fingerprint: the summary shows the values the
    chunks' processes ran with (not the reporting run's config), and a difference between them."""
    from vlmbench.results.variant_records import combined_record
    record = {"config_fingerprint": "f", "decode_workers": 8, "prefetch_batches": 2}
    same = combined_record({"gw0 on A": record, "gw1 on B": dict(record)}, {"gw0 on A", "gw1 on B"}, "f", "fp16")
    assert (same["decode_workers"], same["prefetch_batches"], same["writers_differ"]) == (8, 2, [])
    other = combined_record({"gw0 on A": record, "gw1 on B": {**record, "decode_workers": 1}},
                            {"gw0 on A", "gw1 on B"}, "f", "fp16")
    assert other["decode_workers"] is None and other["writers_differ"] == ["decode_workers"]
    assert "gw0 on A: 8; gw1 on B: 1" in other["decode_workers_null_reason"]


def test_a_cpu_writer_is_named_on_cpu_also_in_files_written_with_the_old_label(tmp_path):
    """'main on no GPU UUID' read as a label was wrong; records keyed so by an older vlmbench are keyed again."""
    cfg = tiny_config(tmp_path, 12)
    record = _record(cfg, "main", None)
    (tmp_path / "variant_fp16.json").write_text(json.dumps({"schema": "vlmbench.variant_record/2", "variant": "fp16",
                                                            "writers": {"main on no GPU UUID": record}}))
    assert list(read_variant_records(tmp_path, "fp16")) == ["main on CPU"]
    merge_variant_record(tmp_path, _record(cfg, "main", None, micro_batch_size=4))  # a rerun replaces its record
    assert list(read_variant_records(tmp_path, "fp16")) == ["main on CPU"]
