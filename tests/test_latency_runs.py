"""Batch-1 latency runs: their first (compiling) call belongs to the warm-up, and an interrupted or failing
run still leaves the chunk's CSV, whole and saying what was not timed, before the interruption goes on."""
import json
import time

import pytest

from tests.conftest import TINY, merge
from vlmbench.config import ExperimentConfig, build
from vlmbench.results.records import chunk_csv_path, inspect_chunk, read_chunk_csv
from vlmbench.results.summary import latency_stats
from vlmbench.run.session import BenchSession


def _session(tmp_path, **measure) -> BenchSession:
    """A tiny run of one chunk of 4 images in micro-batches of 2, with `measure` overrides."""
    extra = {"inference": {"batch_size": 4}, "measure": measure, "results_dir": str(tmp_path)}
    session = BenchSession(build(ExperimentConfig, merge(TINY, extra)), tmp_path)
    session.start()
    return session


def _record_sizes(captioner, monkeypatch, slow_single_s=0.0, fail_at=None):
    """Records the micro-batch size of each generate call; a single image takes `slow_single_s` more, and
    the call numbered `fail_at` (0-based, counting single-image calls) raises it instead."""
    sizes, original = [], captioner.generate

    def generate(batch):
        size = len(batch.ok) + batch.padding
        if size == 1 and fail_at is not None and sizes.count(1) == fail_at[0]:
            raise fail_at[1]
        sizes.append(size)
        time.sleep(slow_single_s if size == 1 else 0.0)
        return original(batch)
    monkeypatch.setattr(captioner, "generate", generate)
    return sizes


def test_the_warm_up_compiles_batch_1_and_the_latency_runs_do_not_repeat_it(tmp_path, monkeypatch):
    session = _session(tmp_path, latency_images=2)
    loaded = session.load_variant("fp16")
    sizes = _record_sizes(loaded.captioner, monkeypatch, slow_single_s=0.3)
    session.warm_up(loaded, 0)
    assert sizes == [2, 1]  # measure.warmup_batches (1) micro-batch of 2, then one image alone
    assert loaded.record["warmup_s"] >= 0.3  # the single image's call is counted in warmup_s
    result = session.caption_chunk(loaded, 0)
    sizes.clear()
    session.finish_chunk(loaded, 0, result)
    assert sizes == [1, 1]  # the two timed images only: no untimed first call any more
    rows = read_chunk_csv(tmp_path / "fp16_batch_0.csv")
    assert [r["latency_s"] not in ("", None) for r in rows] == [True, True, False, False]
    assert "latency_runs" not in json.loads(rows[0]["measure_notes"])


def test_batch_1_is_warmed_up_once_without_warm_up_batches_or_without_any_warm_up(tmp_path, monkeypatch):
    session = _session(tmp_path, latency_images=1, warmup_batches=0)
    loaded = session.load_variant("fp16")
    captioner, rows = loaded.captioner, session.chunks[0]
    sizes = _record_sizes(captioner, monkeypatch)
    session.warm_up(loaded, 0)
    assert sizes == [1]  # no micro-batch asked, but batch 1 is still compiled here
    captioner.warm_up(rows, 1, latency_images=1)  # a second warm-up: batch 1 is not warmed up twice
    assert sizes == [1, 2]
    captioner.latency_warmed_up = False  # as a Captioner whose warm_up never ran (scripts/gpu_check_fast.py)
    sizes.clear()
    assert len(captioner.measure_latency(rows, 1)) == 1 and sizes == [1, 1]  # untimed first call, then the timed one
    sizes.clear()
    assert len(captioner.measure_latency(rows, 1)) == 1 and sizes == [1]  # once per variant
    captioner.latency_warmed_up = False
    sizes.clear()
    captioner.warm_up(rows, 1, latency_images=0)
    assert sizes == [2]  # no latency run asked: no single-image call


def test_an_interrupt_during_the_latency_runs_leaves_a_complete_honest_csv_and_goes_on(tmp_path, monkeypatch):
    session = _session(tmp_path, latency_images=3)
    loaded = session.load_variant("fp16")
    session.warm_up(loaded, 0)
    result = session.caption_chunk(loaded, 0)
    _record_sizes(loaded.captioner, monkeypatch, fail_at=(1, KeyboardInterrupt()))  # the 2nd timed image
    with pytest.raises(KeyboardInterrupt):
        session.finish_chunk(loaded, 0, result)
    path = chunk_csv_path(tmp_path, "fp16", 0)
    state = inspect_chunk(path, [r.image_id for r in session.chunks[0]], session.cfg.variant_fingerprint("fp16"))
    assert state.status == "complete"  # a rerun keeps the measured captioning pass
    rows = read_chunk_csv(path)
    assert [r["status"] for r in rows] == ["ok"] * 4 and rows[0]["caption"] == result.rows[0]["caption"]
    assert [r["latency_s"] not in ("", None) for r in rows] == [True, False, False, False]
    notes = json.loads(rows[0]["measure_notes"])
    assert notes["latency_runs"] == "latency runs interrupted after 1 of 3 images: KeyboardInterrupt"
    assert notes["latency_s"].startswith("timed alone (micro-batch 1) for the first 1 readable image(s)")
    stats = latency_stats(rows, 3)
    assert stats["latency_images"] == 1  # the one image timed still counts, and the stop is said, not hidden:
    assert stats["latency_runs_stopped"] == ["chunk 0: latency runs interrupted after 1 of 3 images: KeyboardInterrupt"]
    from vlmbench.results.report import completeness_lines
    assert completeness_lines({"variants": {"fp16": stats}}) == [
        "fp16: batch-1 latency runs stopped early (chunk 0: latency runs interrupted after 1 of 3 images: "
        "KeyboardInterrupt); its latency covers 1 image(s): delete the chunk's CSV to time them again"]
    assert session.skip_reason("fp16", 0).startswith(
        "fp16_batch_0.csv is complete for this experiment; latency runs interrupted after 1 of 3 images")
    assert not list(tmp_path.glob("*.tmp*")) and not list(tmp_path.glob(".*tmp*"))  # written atomically


def test_latency_runs_that_fail_before_any_image_say_so_in_the_summary(tmp_path, monkeypatch):
    session = _session(tmp_path, latency_images=3)
    loaded = session.load_variant("fp16")
    session.warm_up(loaded, 0)
    result = session.caption_chunk(loaded, 0)
    _record_sizes(loaded.captioner, monkeypatch, fail_at=(0, RuntimeError("CUDA error: out of memory\ndetails")))
    with pytest.raises(RuntimeError, match="out of memory"):
        session.finish_chunk(loaded, 0, result)
    rows = read_chunk_csv(chunk_csv_path(tmp_path, "fp16", 0))
    assert all(r["latency_s"] in ("", None) for r in rows)
    stats = latency_stats(rows, 3)
    assert stats["latency_s_p50"] is None and stats["latency_images"] == 0
    assert stats["latency_s_p50_null_reason"] == ("chunk 0: latency runs failed after 0 of 3 images: RuntimeError: "
                                                  "CUDA error: out of memory")


def test_a_null_latency_states_the_configured_zero_instead_of_guessing():
    rows = [{"chunk_id": "0", "latency_s": "", "measure_notes": json.dumps({"latency_s": "timed alone ..."})}]
    assert latency_stats(rows, 0)["latency_s_p50_null_reason"] == "measure.latency_images is 0: no image timed alone"
    assert latency_stats(rows, 2)["latency_s_mean_null_reason"] == (
        "no readable image to time alone (measure.latency_images: 2)")
