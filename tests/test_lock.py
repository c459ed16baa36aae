"""The results-folder lock: one experiment per folder, shared by shards of one experiment, stale after kill -9."""
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

import pytest

from vlmbench.results.lock import LOCK_NAME, FolderBusy, FolderLock, FolderUnusable, read_holder
from vlmbench.paths import owned_temp_dir, owner_is_gone, owner_tag, sweep_leftovers

FP_A, FP_B = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"
HOLDER = """
import sys, time
from vlmbench.results.lock import FolderLock
lock = FolderLock(sys.argv[1], sys.argv[2], shared=sys.argv[3] == "shared").acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Starts another process holding the lock on a folder; yields a starter; kills them all at the end."""
    started = []

    def start(folder, fingerprint=FP_A, mode="exclusive"):
        proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder), fingerprint, mode],
                                stdout=subprocess.PIPE, text=True, env={**os.environ})
        started.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc
    yield start
    for proc in started:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def test_a_second_run_is_refused_naming_the_holder(tmp_path, holder):
    proc = holder(tmp_path)
    with pytest.raises(FolderBusy) as refused:
        FolderLock(tmp_path, FP_A).acquire()
    message = str(refused.value)
    assert f"pid {proc.pid} on host " in message and " since " in message and "--vlm-results" in message
    assert "\n" not in message
    with pytest.raises(FolderBusy, match="another experiment"):
        FolderLock(tmp_path, FP_B, shared=True).acquire()


def test_shards_of_one_experiment_share_the_folder_and_others_are_refused(tmp_path, holder):
    holder(tmp_path, FP_A, "shared")
    with FolderLock(tmp_path, FP_A, shared=True) as joined:
        assert joined.held and not joined.first
        with pytest.raises(FolderBusy, match="another experiment"):
            FolderLock(tmp_path, FP_B, shared=True).acquire()
        with pytest.raises(FolderBusy):
            FolderLock(tmp_path, FP_A, shared=False).acquire()  # an exclusive run waits for the shards
    assert (tmp_path / LOCK_NAME).exists()  # the other shard still holds it


def test_release_removes_the_lock_file_and_the_folder_is_free_again(tmp_path):
    with FolderLock(tmp_path, FP_A) as lock:
        assert lock.first and read_holder(tmp_path)["pid"] == os.getpid()
        assert read_holder(tmp_path)["mode"] == "exclusive"
    assert not (tmp_path / LOCK_NAME).exists()
    with FolderLock(tmp_path, FP_B) as again:
        assert again.notes == []


def test_a_lock_of_a_killed_holder_is_stale_and_taken_over(tmp_path, holder):
    proc = holder(tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_holder(tmp_path)["pid"] == proc.pid  # the file is still there: kill -9 ran no cleanup
    with FolderLock(tmp_path, FP_B) as lock:
        assert lock.first and len(lock.notes) == 1
        assert "stale lock" in lock.notes[0] and f"pid {proc.pid}" in lock.notes[0]
        assert read_holder(tmp_path)["pid"] == os.getpid()


def test_a_folder_that_is_a_file_or_read_only_is_refused_in_one_line(tmp_path, monkeypatch):
    afile = tmp_path / "results"
    afile.write_text("not a folder")
    with pytest.raises(FolderUnusable, match=f"results folder {afile} is a file, not a folder"):
        FolderLock(afile, FP_A).acquire()
    with pytest.raises(FolderUnusable, match="cannot be created"):
        FolderLock(afile / "sub", FP_A).acquire()
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o555)
    if os.geteuid() == 0:  # root ignores permission bits: make the permission check see what a user would
        monkeypatch.setattr("vlmbench.results.lock.os.access", lambda path, mode: False)
    with pytest.raises(FolderUnusable, match=f"results folder {readonly} is read-only"):
        FolderLock(readonly, FP_A).acquire()
    assert list(readonly.iterdir()) == []


def test_leftovers_of_dead_owners_are_swept_and_live_ones_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tag = owner_tag()
    dead_tag = tag.replace(f"pid{os.getpid()}@", f"pid{dead.pid}@")
    (tmp_path / f".fp16_batch_0.csv.{dead_tag}x1.tmp").write_text("half")
    (tmp_path / f".staging-{dead_tag}y2").mkdir()
    (tmp_path / f".staging-{dead_tag}y2" / "model.safetensors").write_text("half")
    mine = owned_temp_dir(tmp_path, ".staging-")
    other_host = tmp_path / f".x.pid{dead.pid}@elsewhere-z.tmp"
    other_host.write_text("")
    shard = tmp_path / "ab"
    shard.mkdir()
    (shard / f".img.jpg.{dead_tag}q.tmp").write_text("")
    assert owner_is_gone(f".a.{dead_tag}b.tmp") and not owner_is_gone(mine.name)
    removed = sweep_leftovers(tmp_path)
    assert sorted(removed) == sorted([f".fp16_batch_0.csv.{dead_tag}x1.tmp", f".staging-{dead_tag}y2"])
    assert mine.exists() and other_host.exists() and (shard / f".img.jpg.{dead_tag}q.tmp").exists()
    assert sweep_leftovers(tmp_path, depth=2) == [f".img.jpg.{dead_tag}q.tmp"]


def test_two_processes_racing_for_one_folder_one_wins(tmp_path):
    """Both start at once with different experiments: exactly one holds the folder."""
    racer = """
import sys, time, pathlib
from vlmbench.results.lock import FolderLock, FolderBusy
folder, marks = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[3])
try:
    FolderLock(folder, sys.argv[2]).acquire()
    outcome = "won"
except FolderBusy:
    outcome = "refused"
(marks / sys.argv[2]).write_text(outcome)
for _ in range(300):  # hold on until both have tried
    if len(list(marks.iterdir())) == 2:
        break
    time.sleep(0.1)
print(outcome, flush=True)
"""
    folder, marks = tmp_path / "results", tmp_path / "marks"
    marks.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", racer, str(folder), fp, str(marks)], stdout=subprocess.PIPE,
                              text=True) for fp in (FP_A, FP_B)]
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outcomes == ["refused", "won"]


def test_a_refused_run_moves_nothing_and_writes_nothing(tmp_path, write_config):
    """A damaged chunk 0 and a foreign chunk 1: the refusal comes before chunk 0 is moved aside."""
    from tests.test_records import OTHER, _rows
    from vlmbench.config import ConfigError, load_config
    from vlmbench.results.records import chunk_csv_path, write_chunk_csv
    from vlmbench.run.session import BenchSession
    cfg = load_config(write_config())
    results = tmp_path / "results"
    session = BenchSession(cfg, results)
    ids = [[r.image_id for r in chunk] for chunk in session.chunks]
    write_chunk_csv(chunk_csv_path(results, "fp16", 0), _rows(ids[0], fingerprint=cfg.fingerprint)[:1])
    write_chunk_csv(chunk_csv_path(results, "fp16", 1), _rows(ids[1], fingerprint=OTHER, chunk_id=1))
    before = {p.name: p.read_bytes() for p in results.iterdir()}
    session.claim_folder()
    with pytest.raises(ConfigError, match="different experiment"):
        session.check_chunks([("fp16", 0), ("fp16", 1)])
    session.release_folder(refused=True)
    assert {p.name: p.read_bytes() for p in results.iterdir()} == before


def test_a_refused_run_removes_the_folder_it_created(tmp_path, write_config):
    from vlmbench.config import load_config
    from vlmbench.run.session import BenchSession
    results = tmp_path / "new" / "results"
    session = BenchSession(load_config(write_config()), results)
    session.claim_folder()
    assert (results / LOCK_NAME).exists()
    session.release_folder(refused=True)
    assert not results.exists()


# ---------------------------------------------------------------- vlmbench-report holds the folder too
def _folder_files(folder):
    return {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_report_is_refused_while_a_run_holds_the_folder_and_the_run_is_undisturbed(tmp_path, holder, capsys):
    from tests.results_factory import tiny_config, write_results
    from vlmbench.cli import main
    cfg = tiny_config(tmp_path, 4)
    write_results(cfg, tmp_path)
    proc = holder(tmp_path, cfg.fingerprint, "shared")  # a shard of this experiment at work
    before = _folder_files(tmp_path)
    assert main([str(tmp_path), "--tokenizer", "nltk-treebank"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"in use by a run: pid {proc.pid} on host " in err and "run vlmbench-report again" in err
    assert "\n" not in err and "--vlm-results" not in err
    assert _folder_files(tmp_path) == before  # no summary, the holder's lock file as it was
    assert proc.poll() is None and read_holder(tmp_path)["pid"] == proc.pid
    with FolderLock(tmp_path, cfg.fingerprint, shared=True) as joined:  # the run's shared lock still stands
        assert not joined.first
    proc.kill()
    proc.wait()
    assert main([str(tmp_path), "--tokenizer", "nltk-treebank"]) == 0  # the run is over: the report goes ahead
    assert list(tmp_path.glob("summary_*.json")) and not (tmp_path / LOCK_NAME).exists()


def test_a_run_started_during_a_report_is_refused_naming_the_report(tmp_path, monkeypatch):
    from tests.results_factory import tiny_config, write_results
    from vlmbench import cli
    cfg = tiny_config(tmp_path, 4)
    write_results(cfg, tmp_path)
    refusals = []

    def report_while_a_run_starts(results_dir, *args):
        with pytest.raises(FolderBusy) as refused:
            FolderLock(results_dir, cfg.fingerprint, shared=True).acquire()
        refusals.append(str(refused.value))
        return {}, SimpleNamespace(text="reported", failed=False)
    monkeypatch.setattr(cli, "report", report_while_a_run_starts)
    assert cli.main([str(tmp_path)]) == 0
    assert f"in use by a report (vlmbench-report): pid {os.getpid()} on host " in refusals[0]
    assert "(vlmbench-report, exclusive, experiment" in refusals[0] and "--vlm-results" in refusals[0]
    assert not (tmp_path / LOCK_NAME).exists()  # released at the end of the report
