"""The benchmark suite as a user runs it: pytest over benchmarks/, resumed, filtered, broken on purpose.

Each test runs the real plugin on a tiny random Qwen2.5-VL (CPU) in a sandbox folder, inside the test
process (tests/inprocess.py: the imports are paid once per session, not once per run).
"""
import json
import os
import re
import shutil

import pytest

from tests.conftest import ROOT
from tests.inprocess import run_pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def suite(tmp_path, write_config):
    """Runs `pytest benchmarks` with a tiny config; returns (run, results_dir)."""
    sandbox = tmp_path / "sandbox"
    shutil.copytree(ROOT / "benchmarks", sandbox / "benchmarks")
    results = sandbox / "results"

    def run(extra=None, *args):
        config = write_config({"results_dir": str(results), **(extra or {})})
        return run_pytest(sandbox, "benchmarks", "--vlm-config", str(config), "-p", "no:cacheprovider", "-rs", *args)
    return run, results


def _csvs(results):
    return sorted(p.name for p in results.glob("*_batch_*.csv"))


def test_run_resume_and_recompute_one_chunk(suite):
    run, results = suite
    three = {"variants": ["fp16", "int8", "int8_vit"]}
    first = run(three, "-v")
    first.assert_outcomes(passed=6)
    # each variant's cases run together, so one model is loaded at a time
    first.stdout.fnmatch_lines([f"*test_caption[[]{v}-batch{i}[]] PASSED*" for v in ("fp16", "int8", "int8_vit")
                                for i in (0, 1)])
    assert _csvs(results) == [f"{v}_batch_{i}.csv" for v in ("fp16", "int8", "int8_vit") for i in (0, 1)]
    summary = json.loads(sorted(results.glob("summary_*.json"))[-1].read_text())
    assert set(summary["variants"]) == {"fp16", "int8", "int8_vit"}
    assert summary["variants"]["int8_vit"]["census"]["language_model"]["quantized"] == 0
    # set deliberately (half the usable cores, vlmbench.run.measure.cpu_threads) and recorded; computed here
    # without importing torch, which pytester would unload after the test (numpy cannot be loaded twice)
    assert summary["variants"]["fp16"]["cpu_threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
    assert summary["cider_scoring"]["common_images"] == 4
    # 4 images are too few for CIDEr-D (vlmbench.scoring.metrics.MIN_CIDER_IMAGES): null with the reason, no CIDEr plot
    assert summary["variants"]["fp16"]["cider"] is None and "CIDEr-D needs at least" in summary["variants"]["fp16"][
        "cider_null_reason"]
    assert (results / "plots" / "throughput_img_s.png").is_file() and (results / "references.json").is_file()
    assert list(results.glob("experiment_config_*.yaml"))
    page = (results / "report.html").read_text()  # written at the session's end, beside the summary
    assert "Variants against fp16" in page and "CIDEr-D needs at least" in page and 'class="card"' in page
    first.stdout.fnmatch_lines([f"report: {results / 'report.html'}"])
    first.stdout.fnmatch_lines(["*vlmbench summary*", "| variant | CIDEr-D |*", "| variant | CIDEr-D [[]95% CI[]]*"])
    assert summary["quality"]["baseline"] == "fp16" and summary["variants"]["int8"]["drift"]["images"] == 4
    assert summary["variants"]["fp16"]["degenerate"]["captioned"] == 4  # no interval plot: CIDEr is null on 4 images

    again = run(three, "--benchmark-json", str(results.parent / "bench.json"))
    again.assert_outcomes(skipped=6)
    again.stdout.fnmatch_lines(["note: --benchmark-json: pytest-benchmark timed nothing, because every selected chunk "
                                "was finished before and skipped; to time them, delete their CSVs in * or pass a "
                                "fresh --vlm-results DIR", "*int8_vit_batch_1.csv is complete for this experiment*"])

    before = (results / "fp16_batch_0.csv").stat().st_mtime_ns
    (results / "int8_batch_1.csv").unlink()
    third = run(three)
    third.assert_outcomes(passed=1, skipped=5)
    assert (results / "int8_batch_1.csv").is_file()
    assert (results / "fp16_batch_0.csv").stat().st_mtime_ns == before


def test_k_selects_one_variant_and_pytest_benchmark_records_it(suite, tmp_path):
    run, results = suite
    report = tmp_path / "bench.json"
    result = run({"variants": ["fp16", "int8_vit"]}, "-k", "int8_vit", "-v", f"--benchmark-json={report}")
    result.assert_outcomes(passed=2, deselected=2)
    result.stdout.fnmatch_lines(["*test_caption[[]int8_vit-batch0[]] PASSED*"])
    assert _csvs(results) == ["int8_vit_batch_0.csv", "int8_vit_batch_1.csv"]
    benchmarks = json.loads(report.read_text())["benchmarks"]
    assert [b["param"] for b in benchmarks] == ["int8_vit-batch0", "int8_vit-batch1"]
    assert benchmarks[0]["extra_info"]["chunk_images_ok"] == 2 and benchmarks[0]["stats"]["rounds"] == 1


def test_different_experiment_in_the_same_folder_is_refused(suite):
    run, results = suite
    run().assert_outcomes(passed=2)
    before = _folder(results)
    result = run({"seed": 7})
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*was made by a different experiment*differing fields: seed: 42 -> 7*--vlm-results*"])
    assert _folder(results) == before  # no snapshot added, references.json untouched, no lock file left
    from vlmbench.cli import main
    snapshot = sorted(results.glob("experiment_config_*.yaml"))[-1]
    assert main([str(results), "--config", str(snapshot), "--tokenizer", "nltk-treebank"]) == 0


def _folder(results):
    """Every file under the folder with its bytes (summaries aside, which a report may rewrite)."""
    return {str(p.relative_to(results)): p.read_bytes() for p in sorted(results.rglob("*")) if p.is_file()}


def test_a_held_folder_or_a_file_as_folder_stops_at_once_in_one_line(suite, tmp_path):
    import subprocess
    import sys
    run, results = suite
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom vlmbench.results.lock import FolderLock\n"
                               "FolderLock(sys.argv[1], 'f' * 16).acquire()\nprint('held', flush=True)\n"
                               "time.sleep(120)", str(results)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _folder(results)
        result = run()
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines([f"*results folder {results} is in use by another experiment: pid {holder.pid} "
                                     "on host * since *--vlm-results*"])
        assert _folder(results) == before
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = run({"results_dir": str(afile)})
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "INTERNALERROR" not in result.stderr.str()
    result.stderr.fnmatch_lines([f"*results folder {afile} is a file, not a folder*"])


def test_a_full_disk_fails_in_one_line_and_keeps_finished_chunks(suite):
    run, results = suite
    full_disk = results.parent / "conftest.py"  # ENOSPC when the CSV of fp16 chunk 1 is flushed
    full_disk.write_text("import errno, os\nimport pytest\n\n@pytest.fixture(autouse=True)\n"
                         "def full_disk(monkeypatch):\n    real = os.fsync\n\n    def fsync(fd):\n"
                         "        if '.fp16_batch_1.csv.' in os.readlink(f'/proc/self/fd/{fd}'):\n"
                         "            raise OSError(errno.ENOSPC, 'No space left on device')\n"
                         "        real(fd)\n    monkeypatch.setattr(os, 'fsync', fsync)\n")
    result = run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"*vlmbench: could not write fp16_batch_1.csv in {results}: No space left on device; "
                                 "finished chunks are kept*"])
    assert "Traceback" not in result.stdout.str() and "INTERNALERROR" not in result.stdout.str()
    assert _csvs(results) == ["fp16_batch_0.csv"] and list(results.glob("summary_*.json"))
    assert not [p for p in results.rglob("*") if p.name.endswith(".tmp")]
    full_disk.unlink()
    run().assert_outcomes(passed=1, skipped=1)


def test_damaged_csv_is_set_aside_and_recomputed(suite):
    run, results = suite
    run().assert_outcomes(passed=2)
    path = results / "fp16_batch_1.csv"
    path.write_text(path.read_text()[:-30])
    result = run()
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*fp16_batch_1.csv was damaged*recomputed*"])
    assert len(list(results.glob("fp16_batch_1.csv.damaged-*"))) == 1
    assert len((path.read_text().strip().splitlines())) == 3


def test_a_corrupt_image_is_recorded_and_the_run_goes_on(suite, tmp_path):
    from vlmbench.data.sample import write_sample
    coco = tmp_path / "coco"
    write_sample(coco, 4, seed=1)
    (coco / "val2017" / "000000000002.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    run, results = suite
    run({"dataset": {"synthetic_images": None, "coco_dir": str(coco)}}).assert_outcomes(passed=2)
    import csv
    with open(results / "fp16_batch_0.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["status"] for r in rows] == ["ok", "failed"]
    assert rows[1]["error"] == "undecodable: OSError: Truncated File Read" and rows[1]["caption"] == ""
    summary = json.loads(sorted(results.glob("summary_*.json"))[-1].read_text())
    assert summary["variants"]["fp16"]["images_failed"] == 1
    assert summary["variants"]["fp16"]["cider_excluded_reasons"]["failed in this variant"] == 1


def test_missing_images_stop_before_any_model_loads(suite, tmp_path):
    from vlmbench.data.sample import write_sample
    coco = tmp_path / "coco"
    write_sample(coco, 4, seed=1)
    (coco / "val2017" / "000000000003.jpg").unlink()
    run, results = suite
    result = run({"dataset": {"synthetic_images": None, "coco_dir": str(coco)}})
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*1 of 4 images cannot be had (000000000003.jpg); first reason: file not found*allow_missing_images*"])
    assert not list(results.glob("variant_*.json"))
    allowed = run({"dataset": {"synthetic_images": None, "coco_dir": str(coco), "allow_missing_images": True}})
    allowed.assert_outcomes(passed=2)


def test_bad_config_stops_before_any_model_loads(suite):
    run, results = suite
    result = run({"variants": ["fp16", "int4"]})
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown variant 'int4'*Known variants: fp16, int8, int8_vit*"])
    assert not results.exists() or not list(results.iterdir())


def test_rescoring_after_removing_a_variants_chunk_keeps_one_image_set(suite):
    run, results = suite
    run({"variants": ["fp16", "int8_vit"]}).assert_outcomes(passed=4)
    (results / "int8_vit_batch_0.csv").unlink()
    from vlmbench.cli import main
    assert main([str(results), "--tokenizer", "nltk-treebank"]) == 0
    summary = json.loads(sorted(results.glob("summary_*.json"))[-1].read_text())
    assert summary["cider_scoring"]["common_images"] == 2
    for variant in ("fp16", "int8_vit"):
        assert summary["variants"][variant]["cider_images"] == 2
    assert summary["variants"]["int8_vit"]["missing_chunks"] == [0]
    assert summary["variants"]["fp16"]["cider_excluded_reasons"]["failed or missing in another variant"] == 2


def test_baseline_gate_fails_the_session(suite, tmp_path):
    run, results = suite
    run().assert_outcomes(passed=2)
    baseline = json.loads(sorted(results.glob("summary_*.json"))[-1].read_text())
    baseline["variants"]["fp16"]["throughput_img_s"] *= 1000
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps(baseline))
    result = run({"thresholds": {"default": {"throughput_drop_pct": 50}}}, "--vlm-baseline", str(path))
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*regression gate FAILED (1 of 1 checks breached)*",
                                 "*fp16: throughput_img_s =*threshold throughput_drop_pct = 50.0*"])
    # pytest's own last line says it (a fresh environment may add ", 2 warnings" between the counts)
    assert re.search(r"\b2 skipped, (\d+ warnings?, )?1 vlmbench gate failed in", result.stdout.lines[-1])
    unchecked = run(None, "--vlm-baseline", str(path))  # no threshold set: nothing checked, never "passed"
    assert unchecked.ret == pytest.ExitCode.OK
    unchecked.stdout.fnmatch_lines(["*regression gate: nothing checked against*(0 checks): no threshold is set*"])
    assert "passed" not in unchecked.stdout.str().split("vlmbench summary")[-1]


def _statuses(path):
    import csv
    with open(path) as handle:
        return [(r["status"], r["error"].split(":", 1)[0]) for r in csv.DictReader(handle)]


def test_rows_of_unavailable_images_are_retried_once_the_images_are_back(suite, tmp_path):
    from vlmbench.data.sample import write_sample
    coco = tmp_path / "coco"
    write_sample(coco, 4, seed=1)
    missing = coco / "val2017" / "000000000003.jpg"
    kept = missing.read_bytes()
    missing.unlink()
    (coco / "val2017" / "000000000002.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    run, results = suite
    dataset = {"synthetic_images": None, "coco_dir": str(coco), "allow_missing_images": True}
    run({"dataset": dataset}).assert_outcomes(passed=2)
    assert _statuses(results / "fp16_batch_1.csv") == [("failed", "unavailable"), ("ok", "")]

    still_missing = run({"dataset": dataset})
    still_missing.assert_outcomes(skipped=2)
    still_missing.stdout.fnmatch_lines([
        "*fp16_batch_0.csv is complete for this experiment, with 1 failed row (undecodable: 1) (delete*",
        "*fp16_batch_1.csv is complete for this experiment, with 1 failed row (unavailable: 1); "
        "1 unavailable: their images are still unavailable*"])

    missing.write_bytes(kept)
    keep = run({"dataset": {**dataset, "retry_unavailable_images": False}})
    keep.assert_outcomes(skipped=2)
    keep.stdout.fnmatch_lines(["*fp16_batch_1.csv*kept: dataset.retry_unavailable_images is false*"])

    retried = run({"dataset": dataset}, "-v")
    retried.assert_outcomes(passed=1, skipped=1)  # the corrupt image's chunk is kept as it is
    retried.stdout.fnmatch_lines(["*fp16_batch_1.csv: 1 of its 1 rows that failed because the image was unavailable "
                                  "can now be had; the chunk is recomputed*", "*fp16-batch1*PASSED*"])
    assert _statuses(results / "fp16_batch_1.csv") == [("ok", ""), ("ok", "")]
    assert _statuses(results / "fp16_batch_0.csv") == [("ok", ""), ("failed", "undecodable")]


def test_live_progress_reaches_the_terminal_through_pytest_capture(suite):
    run, results = suite
    result = run({"dataset": {"limit": 4}, "inference": {"batch_size": 4, "micro_batch_size": 1,
                                                         "progress_interval_s": 1e-9},
                  "measure": {"latency_images": 0}})
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["vlmbench: fp16 chunk 0: 1/4 images, * img/s, * s left",
                                 "vlmbench: sweep: 1/1 cases: 4/4 images, * img/s, 0 s left in the sweep"])


def test_a_sigint_in_the_latency_runs_keeps_the_chunk_and_the_run_still_reports(suite, tmp_path, monkeypatch):
    """The H200 case of 2026-12-02: the window's SIGINT came during the batch-1 runs after the captioning pass.
    The chunk's CSV is written (latency empty, and why), the run stops there, and the session finish writes
    pytest-benchmark's JSON (the timed pass had its round) and vlmbench's summary, whose reason says so."""
    from vlmbench.run.runner import Captioner

    def interrupted(self, rows, count):
        raise KeyboardInterrupt  # as a SIGINT during the first (compiling) single-image call
        yield
    monkeypatch.setattr(Captioner, "timed_alone", interrupted)
    run, results = suite
    result = run({}, "--benchmark-json", str(tmp_path / "bench.json"))
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert _csvs(results) == ["fp16_batch_0.csv"]  # the run stopped as asked: chunk 1 never started
    from vlmbench.results.records import read_chunk_csv
    rows = read_chunk_csv(results / "fp16_batch_0.csv")
    assert [r["status"] for r in rows] == ["ok", "ok"] and all(r["latency_s"] in ("", None) for r in rows)
    why = "latency runs interrupted after 0 of 1 images: KeyboardInterrupt"
    assert json.loads(rows[0]["measure_notes"])["latency_runs"] == why
    [bench] = json.loads((tmp_path / "bench.json").read_text())["benchmarks"]
    assert bench["param"] == "fp16-batch0" and bench["stats"]["rounds"] == 1
    fp16 = json.loads((results / "summary_latest.json").read_text())["variants"]["fp16"]
    assert fp16["latency_s_p50"] is None and fp16["latency_s_p50_null_reason"] == f"chunk 0: {why}"
    assert fp16["missing_chunks"] == [1]


def test_a_sigint_in_the_timed_pass_leaves_pytest_benchmark_nothing_to_crash_on(suite, tmp_path, monkeypatch):
    """A case interrupted inside pytest-benchmark's timed call holds a benchmark with no round; pytest-benchmark's
    session finish raised ValueError on it (min() of nothing) with --benchmark-json, before vlmbench's summary."""
    from vlmbench.run.session import BenchSession
    real = BenchSession.caption_chunk

    def caption_chunk(self, loaded, chunk_id):
        if chunk_id == 1:
            raise KeyboardInterrupt
        return real(self, loaded, chunk_id)
    monkeypatch.setattr(BenchSession, "caption_chunk", caption_chunk)
    run, results = suite
    result = run({}, "--benchmark-json", str(tmp_path / "bench.json"))
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "INTERNALERROR" not in result.stdout.str() and "ValueError" not in result.stdout.str()
    benchmarks = json.loads((tmp_path / "bench.json").read_text())["benchmarks"]
    assert [b["param"] for b in benchmarks] == ["fp16-batch0"]  # the interrupted one is left out
    summary = json.loads((results / "summary_latest.json").read_text())
    assert summary["variants"]["fp16"]["missing_chunks"] == [1] and (results / "report.html").is_file()
    assert not list((results / "claims").glob("*.claim"))  # the interrupted case's claim is given back


def test_a_variant_that_fails_to_load_is_named_at_once_not_only_in_the_final_summary(suite, monkeypatch):
    """The GPU benchmark stops a part with SIGINT after its time; an error reported only in pytest's last summary
    was lost that way (fp8 and w4a16 on 2026-12-02), so the fixture writes it to the terminal when it happens."""
    from vlmbench.models import loading

    def broken(*args, **kwargs):
        raise RuntimeError("kernel not built for this GPU")
    monkeypatch.setattr(loading, "load_variant_model", broken)
    run, _ = suite
    result = run()
    setup_errors = [i for i, line in enumerate(result.outlines) if line.startswith("ERROR") or "= ERRORS =" in line]
    said = [i for i, line in enumerate(result.outlines)
            if line == "vlmbench: variant fp16 failed to load: RuntimeError: kernel not built for this GPU"]
    assert said and setup_errors and said[0] < setup_errors[0]


def test_collect_only_lists_the_cases_and_writes_nothing(suite):
    run, results = suite
    listed = run(None, "--collect-only", "-q")
    assert listed.ret == 0 and any("test_caption[fp16-batch0]" in line for line in listed.outlines)
    assert not results.exists()
