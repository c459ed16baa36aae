"""What is in a results folder, through the public entry points (pytest benchmarks, vlmbench-report):
file systems without flock, FIFOs under vlmbench's file names, damaged snapshots and summaries, edited CSVs.

The pytest runs use the suite's real plugin with a case that loads no model (its collection, folder
checks and end-of-session report are the real ones), so each takes about a second.
"""
import errno
import fcntl
import os
import stat

import pytest

from tests.results_factory import tiny_config, write_results
from tests.test_model_identity import CASES_WITHOUT_A_MODEL
from vlmbench.cli import main as report_main
from vlmbench.config import load_config
from vlmbench.results.records import chunk_csv_path, write_chunk_csv
from vlmbench.run.session import BenchSession

OTHER = "fedcba9876543210"


@pytest.fixture
def run_plugin(pytester, write_config, tmp_path):
    """`pytest --vlm-config <tiny>` in process with the real plugin and a model-free case; returns (run, results)."""
    results = tmp_path / "results"
    config = write_config({"results_dir": str(results)})
    pytester.makepyfile(test_cases=CASES_WITHOUT_A_MODEL)

    def run(*args):
        return pytester.runpytest_inprocess("--vlm-config", str(config), "-p", "no:xdist", "-p", "no:randomly",
                                            "-p", "no:cacheprovider", "-rs", *args)
    return run, results, load_config(config)


def _chunk_rows(cfg, results, chunk_id, fingerprint=None):
    session = BenchSession(cfg, results)
    return [{"image_id": r.image_id, "file_name": r.file_name, "variant": "fp16", "chunk_id": chunk_id,
             "status": "ok", "error": "", "caption": "a cat", "generated_tokens": 2, "micro_batch_index": 0,
             "micro_batch_size": 2, "chunk_wall_s": 1.0, "chunk_images_ok": 2, "measure_notes": "{}",
             "config_fingerprint": fingerprint or session.cfg.fingerprint} for r in session.chunks[chunk_id]]


# ---------------------------------------------------------------- a file system without flock
@pytest.fixture
def no_flock(monkeypatch):
    """fcntl.flock answers ENOSYS, as on Lustre mounted without -o flock and some FUSE file systems."""
    def unsupported(fd, operation):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    monkeypatch.setattr(fcntl, "flock", unsupported)


def test_a_run_without_flock_names_the_problem_and_runs_with_the_lock_turned_off(run_plugin, no_flock):
    run, results, _ = run_plugin
    refused = run()
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines([f"*results folder {results}: its file system does not support flock*"
                                  ".vlmbench.lock: [[]Errno 38[]] Function not implemented*-o flock*"
                                  "--vlm-no-folder-lock*only run writing the folder*"])
    assert "Traceback" not in refused.stderr.str() and not results.exists()
    unlocked = run("--vlm-no-folder-lock")
    unlocked.assert_outcomes(passed=2)
    unlocked.stdout.fnmatch_lines([f"*vlmbench: results folder {results} is not locked (--vlm-no-folder-lock)*"])
    assert list(results.glob("experiment_config_*.yaml")) and not (results / ".vlmbench.lock").exists()


def test_a_report_without_flock_names_the_problem_and_reports_with_the_lock_turned_off(tmp_path, no_flock, capsys):
    cfg = tiny_config(tmp_path, 4)
    write_results(cfg, tmp_path)
    assert report_main([str(tmp_path), "--tokenizer", "ptb-python"]) == 2
    err = capsys.readouterr().err
    assert "does not support flock" in err and "--no-folder-lock" in err and "Traceback" not in err
    assert not list(tmp_path.glob("summary_*.json")) and not (tmp_path / ".vlmbench.lock").exists()
    assert report_main([str(tmp_path), "--tokenizer", "ptb-python", "--no-folder-lock"]) == 0
    assert "is not locked (--no-folder-lock)" in capsys.readouterr().err
    assert list(tmp_path.glob("summary_*.json"))


def test_variant_records_merge_one_at_a_time_without_flock(tmp_path, no_flock):
    from vlmbench.results.variant_records import merge_variant_record, read_variant_records
    for worker in ("gw0", "gw1"):
        merge_variant_record(tmp_path, {"variant": "fp16", "worker": worker, "gpu_uuid": "GPU-a",
                                        "config_fingerprint": OTHER})
    assert sorted(read_variant_records(tmp_path, "fp16")) == ["gw0 on GPU-a", "gw1 on GPU-a"]
    assert not (tmp_path / ".vlmbench.guard").exists()


# ---------------------------------------------------------------- FIFOs and other non-files under vlmbench's names
def test_a_fifo_chunk_csv_is_moved_aside_unopened_and_the_chunk_runs(run_plugin, fifo_watchdog):
    run, results, _ = run_plugin
    results.mkdir()
    fifo = chunk_csv_path(results, "fp16", 0)
    os.mkfifo(fifo)
    result = run()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*fp16_batch_0.csv was damaged (fp16_batch_0.csv in * is a FIFO (named pipe), not a "
                                 "regular file*); moved to fp16_batch_0.csv.damaged-* and recomputed*"])
    assert not os.path.lexists(fifo)
    assert [stat.S_ISFIFO(p.lstat().st_mode) for p in results.glob("fp16_batch_0.csv.damaged-*")] == [True]


def test_a_report_never_opens_fifos_in_the_folder(tmp_path, fifo_watchdog, capsys):
    cfg = tiny_config(tmp_path, 4)
    write_results(cfg, tmp_path)
    os.mkfifo(tmp_path / "experiment_config_20990101T000000.yaml")  # the newest snapshot by name
    os.mkfifo(tmp_path / "int8_vit_batch_0.csv")  # a CSV the report does not use
    (tmp_path / "claims").mkdir()
    os.mkfifo(tmp_path / "claims" / "fp16_batch_0.claim")
    assert report_main([str(tmp_path), "--tokenizer", "ptb-python"]) == 0
    err = capsys.readouterr().err
    assert "skipped a damaged config snapshot: experiment_config_20990101T000000.yaml is unreadable" in err
    assert "being computed" not in err  # a FIFO is no live claim
    os.mkfifo(tmp_path / "variant_int8.json")
    os.unlink(chunk_csv_path(tmp_path, "fp16", 0))
    os.mkfifo(chunk_csv_path(tmp_path, "fp16", 0))
    assert report_main([str(tmp_path), "--tokenizer", "ptb-python"]) == 2
    assert "is a FIFO (named pipe), not a regular file" in capsys.readouterr().err


# ---------------------------------------------------------------- damaged snapshots and summaries
def test_a_foreign_csv_beside_a_damaged_snapshot_is_refused_as_a_different_experiment(run_plugin):
    run, results, cfg = run_plugin
    results.mkdir()
    write_chunk_csv(chunk_csv_path(results, "fp16", 0), _chunk_rows(cfg, results, 0, OTHER))
    (results / "experiment_config_20260101T000000.yaml").write_text("model_id: [unclosed\n  seed: {")
    result = run()
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([f"*was made by a different experiment (fingerprint {OTHER}*damaged snapshot(s) "
                                 "skipped: experiment_config_20260101T000000.yaml is unreadable (*--vlm-results*"])


def test_a_report_skips_an_empty_newest_snapshot_and_never_takes_the_default_config(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the default config's Hub model must not be looked up
    cfg = tiny_config(tmp_path, 4)
    write_results(cfg, tmp_path)
    (tmp_path / "experiment_config_20990101T000000.yaml").write_text("")  # left by a killed older vlmbench
    assert report_main([str(tmp_path), "--tokenizer", "ptb-python"]) == 0
    err = capsys.readouterr().err
    assert "skipped a damaged config snapshot: experiment_config_20990101T000000.yaml is empty" in err
    summary = max(tmp_path.glob("summary_*.json")).read_text()
    assert cfg.fingerprint in summary
    (tmp_path / "experiment_config_20260101T000000.yaml").write_text("")
    assert report_main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds no readable experiment_config_*.yaml (experiment_config_20990101T000000.yaml is empty" in err


def test_perf_table_skips_an_empty_newest_summary(tmp_path, capsys):
    from vlmbench.results.perf_table import latest_summary
    (tmp_path / "summary_20260101T000000.json").write_text('{"variants": {"fp16": {}}}')
    (tmp_path / "summary_20260101T000001.json").write_text("")
    assert latest_summary(tmp_path) == {"variants": {"fp16": {}}}
    assert "skipped damaged summary " in (err := capsys.readouterr().err) and "summary_20260101T000001.json (empty)" in err


# ---------------------------------------------------------------- an edited finished CSV
def test_an_edited_finished_csv_is_set_aside_and_recomputed_and_the_report_refuses_it(run_plugin, tmp_path, capsys):
    run, results, cfg = run_plugin
    results.mkdir()
    path = chunk_csv_path(results, "fp16", 0)
    write_chunk_csv(path, _chunk_rows(cfg, results, 0))
    path.write_bytes(path.read_bytes().replace(b"a cat", b"a dog", 1))
    result = run()
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*fp16_batch_0.csv was damaged (its rows do not match their chunk_sha256 (edited or "
                                 "corrupted after it was written)); moved to fp16_batch_0.csv.damaged-*"])
    report_cfg = tiny_config(tmp_path / "report", 4)
    write_results(report_cfg, tmp_path / "report")
    edited = chunk_csv_path(tmp_path / "report", "int8", 0)
    edited.write_bytes(edited.read_bytes().replace(b",0.3,", b",0.1,", 1))
    assert report_main([str(tmp_path / "report"), "--tokenizer", "ptb-python"]) == 2
    err = capsys.readouterr().err
    assert "int8_batch_0.csv: its rows do not match their chunk_sha256" in err and "pytest benchmarks" in err


def test_the_flockless_guard_is_taken_over_by_its_age_not_by_how_long_a_waiter_waited(tmp_path, monkeypatch):
    """A waiter used to delete the guard once it had itself waited GUARD_TAKEOVER_S, so a waiter queued
    behind live holders stole a live guard. Now only a guard file older than that is taken over."""
    import os
    import threading
    import time
    from vlmbench.results import lock
    monkeypatch.setattr(lock, "GUARD_TAKEOVER_S", 0.2)
    guard = tmp_path / lock.GUARD_NAME
    guard.touch()
    entered = threading.Event()

    def waiter():
        with lock._guard_file(tmp_path):
            entered.set()
    thread = threading.Thread(target=waiter, daemon=True)
    thread.start()
    for _ in range(10):  # a live holder: its guard stays young for 0.5 s, longer than the takeover age
        os.utime(guard)
        time.sleep(0.05)
    assert not entered.is_set()
    os.utime(guard, (time.time() - 10, time.time() - 10))  # now a killed holder's: old by its time stamp
    assert entered.wait(5) and not list(tmp_path.glob(".vlmbench.guard.stale-*"))
    thread.join(5)
