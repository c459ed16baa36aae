"""Per-chunk claim files: one holder per chunk, stale claims of dead holders taken over."""
import json
import os
import subprocess
import sys
import time

from vlmbench.results.claims import claim_path, live_claims, read_holder, remove_stale_claims, stale_reason, try_claim


def test_one_holder_per_chunk_until_released(tmp_path):
    first, why = try_claim(tmp_path, "fp16", 0, worker="gw0")
    assert first is not None and why == ""
    second, why = try_claim(tmp_path, "fp16", 0)
    assert second is None and "fp16_batch_0.claim is held by gw0 pid" in why
    assert try_claim(tmp_path, "fp16", 1)[0] is not None  # another chunk is free
    first.release()
    assert not claim_path(tmp_path, "fp16", 0).exists()
    assert try_claim(tmp_path, "fp16", 0)[0] is not None


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_claim(tmp_path, host: str, pid: int, age_s: float = 0.0):
    path = claim_path(tmp_path, "int8", 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": host, "pid": pid, "started": None}))
    os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def test_a_claim_of_a_dead_process_on_this_host_is_taken_over(tmp_path):
    import socket
    path = _write_claim(tmp_path, socket.gethostname(), _dead_pid())
    assert "is gone" in stale_reason(path)
    claim, _ = try_claim(tmp_path, "int8", 2)
    assert claim is not None and read_holder(path).pid == os.getpid()


def test_another_hosts_claim_is_stale_only_after_its_heartbeat_stops(tmp_path):
    path = _write_claim(tmp_path, "node-17", 1234, age_s=30)
    assert stale_reason(path, stale_after_s=600) is None
    assert live_claims(tmp_path) == ["int8_batch_2.claim"]
    assert try_claim(tmp_path, "int8", 2, stale_after_s=600)[0] is None
    os.utime(path, (time.time() - 700, time.time() - 700))
    assert "no heartbeat for 70" in stale_reason(path, stale_after_s=600)
    assert remove_stale_claims(tmp_path, stale_after_s=600)[0].startswith("stale claim int8_batch_2.claim removed")
    assert not path.exists()


def test_heartbeat_keeps_a_claim_fresh(tmp_path):
    claim, _ = try_claim(tmp_path, "fp16", 3)
    os.utime(claim.path, (time.time() - 100, time.time() - 100))
    claim.heartbeat_s = 0.05
    claim.start_heartbeat()
    time.sleep(0.3)
    assert time.time() - claim.path.stat().st_mtime < 5
    claim.release()


def test_report_warns_about_chunks_still_being_computed(tmp_path, capsys):
    from vlmbench.cli import _warn_running_chunks
    claim, _ = try_claim(tmp_path, "int8", 4)
    _warn_running_chunks(tmp_path)
    assert "1 chunk(s) are being computed right now (int8_batch_4.claim)" in capsys.readouterr().err
    claim.release()
    _warn_running_chunks(tmp_path)
    assert capsys.readouterr().err == ""


def test_a_claim_stamped_in_the_future_goes_stale_after_the_timeout_from_first_sight(tmp_path):
    """Another host's clock a day ahead: the claim's age was negative forever and the chunk never ran."""
    path = _write_claim(tmp_path, "node-17", 1234, age_s=-86_400)
    seen = time.time()
    assert stale_reason(path, now=seen, stale_after_s=600) is None
    assert stale_reason(path, now=seen + 599, stale_after_s=600) is None
    why = stale_reason(path, now=seen + 601, stale_after_s=600)
    assert why is not None and "no heartbeat for 601 s" in why and "in the future (clock skew)" in why
    os.utime(path, (time.time() + 90_000, time.time() + 90_000))  # a live holder's heartbeat, on its own clock
    assert stale_reason(path, now=seen + 700, stale_after_s=600) is None  # counted again from this time stamp
    assert stale_reason(path, now=seen + 1301, stale_after_s=600) is not None


def test_a_fifo_under_a_claim_name_is_stale_and_never_opened(tmp_path, fifo_watchdog):
    path = claim_path(tmp_path, "fp16", 0)
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    assert "a FIFO (named pipe), not a claim file" in stale_reason(path)
    claim, why = try_claim(tmp_path, "fp16", 0)
    assert claim is not None and read_holder(path).pid == os.getpid()
    claim.release()
