"""Speed bookkeeping on CPU with made-up numbers: micro-batch sizing, the idle share, live progress,
and that pytest-benchmark times the captioning pass alone."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from vlmbench.engines.batch_size import (BNB_INT8_CAP, DEFAULT_CAP, MIB_PER_PREFILL_TOKEN, choose_micro_batch,
                                         image_tokens, size_from_memory)
from vlmbench.run.measure import cpu_threads, idle_share, set_cpu_threads
from vlmbench.run.progress import ChunkProgress, SweepProgress, progress_line
from vlmbench.results.summary import variant_idle_share


# ---------------------------------------------------------------- micro-batch sizing
def test_image_tokens_match_the_processor_at_1024_px():
    assert image_tokens(1024) == 1369 and image_tokens(224) == 64


def test_size_from_memory_rounds_down_to_a_multiple_of_8_within_cap_and_chunk():
    assert size_from_memory(free_mib=10_000, mib_per_image=100, cap=128, images_per_chunk=1000) == 80
    assert size_from_memory(free_mib=10_500, mib_per_image=100, cap=128, images_per_chunk=1000) == 80  # 84 -> 80
    assert size_from_memory(free_mib=1e6, mib_per_image=100, cap=64, images_per_chunk=1000) == 64
    assert size_from_memory(free_mib=1e6, mib_per_image=100, cap=128, images_per_chunk=13) == 13
    assert size_from_memory(free_mib=500, mib_per_image=100, cap=128, images_per_chunk=1000) == 4
    assert size_from_memory(free_mib=10, mib_per_image=100, cap=128, images_per_chunk=1000) == 1
    with pytest.raises(ValueError, match="mib_per_image"):
        size_from_memory(1000, 0, 8, 8)


def test_choose_micro_batch_caps_bitsandbytes_and_keeps_a_configured_size():
    free = 135_000  # MiB, an H200 after loading the 3B model
    fp16 = choose_micro_batch(None, "cuda", free, 1398, quantized=False, images_per_chunk=1000)
    int8 = choose_micro_batch(None, "cuda", free, 1398, quantized=True, images_per_chunk=1000)
    assert (fp16.size, fp16.source) == (DEFAULT_CAP, "free memory")
    assert int8.size == BNB_INT8_CAP == 64  # bitsandbytes int8 crashed at 128 on an H100
    small = choose_micro_batch(None, "cuda", 10_000, 1398, quantized=False, images_per_chunk=1000)
    assert small.size == int(0.8 * 10_000 // (1398 * MIB_PER_PREFILL_TOKEN)) // 8 * 8 == 24
    assert choose_micro_batch(32, "cuda", free, 1398, False, 1000).size == 32
    cpu = choose_micro_batch(None, "cpu", 0, 1398, False, 1000)
    assert (cpu.size, cpu.source) == (8, "cpu default")


def test_micro_batches_are_sized_from_each_familys_own_prefill_length():
    """LLaVA-OneVision prefills 7371 image tokens per 1024 px image, Qwen2.5-VL 1369: the processor counts them,
    so the automatic micro-batch of the first is about five times smaller (it was sized by Qwen's rule)."""
    from vlmbench.engines.batch_size import prefill_tokens_per_image
    from vlmbench.models.tiny import llava_onevision, qwen2_5_vl
    prompt = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Caption:"}]}]
    tokens = {}
    for module in (qwen2_5_vl, llava_onevision):
        processor = module.build_processor()
        text = processor.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        tokens[module.__name__.rsplit(".", 1)[1]] = prefill_tokens_per_image(processor, text, 1024)
    assert 1369 < tokens["qwen2_5_vl"] < 1369 + 100 and 7371 < tokens["llava_onevision"] < 7371 + 100
    sizes = {name: choose_micro_batch(None, "cuda", 60_000, n, False, 1000).size for name, n in tokens.items()}
    assert sizes == {"qwen2_5_vl": 128, "llava_onevision": 24}


# ---------------------------------------------------------------- idle share
def test_idle_share_is_the_wall_time_outside_generate():
    assert idle_share(8.76, 7.30).value == pytest.approx(0.1667, abs=1e-4)  # the H200 fp16 chunk of issue 9
    assert idle_share(10.0, 10.0).value == 0.0
    assert idle_share(0.0, 0.0).value is None and "empty" in idle_share(0.0, 0.0).reason
    assert idle_share(5.0, 6.0).value is None


def test_variant_idle_share_sums_chunks_before_dividing():
    chunks = [{"chunk_generate_s": "9.0"}, {"chunk_generate_s": "1.0"}]
    out = variant_idle_share(chunks, wall_s=12.5)  # walls 10 + 2.5
    assert out["idle_share"] == pytest.approx(2.5 / 12.5) and out["generate_s"] == 10.0
    missing = variant_idle_share([{"chunk_generate_s": ""}], wall_s=3.0)
    assert missing["idle_share"] is None and missing["idle_share_null_reason"]


# ---------------------------------------------------------------- live progress
def test_progress_lines_are_rate_limited_and_say_rate_and_time_left():
    now = [0.0]
    lines: list[str] = []
    progress = ChunkProgress("fp16 chunk 0", 100, interval_s=6, sink=lines.append, clock=lambda: now[0])
    for _ in range(10):  # 10 images every 2 s; the last update (100/100) prints nothing
        now[0] += 2.0
        progress.update(10)
    assert lines == ["fp16 chunk 0: 30/100 images, 5.0 img/s, 14 s left",
                     "fp16 chunk 0: 60/100 images, 5.0 img/s, 8 s left",
                     "fp16 chunk 0: 90/100 images, 5.0 img/s, 2 s left"]
    silent = ChunkProgress("x", 10, interval_s=0, sink=lines.append, clock=lambda: now[0] + 100)
    silent.update(5)
    assert len(lines) == 3
    assert progress_line("x", 0, 10, 0.0) == "x: 0/10 images"


def test_sweep_progress_says_cases_images_rate_and_time_left_after_each_case():
    now = [0.0]
    sweep = SweepProgress({("fp16", 0): 8, ("fp16", 1): 8, ("int8", 0): 8, ("int8", 1): 4}, clock=lambda: now[0])
    now[0] = 4.0
    assert sweep.case_finished(("fp16", 0)) == "sweep: 1/4 cases: 8/28 images, 2.0 img/s, 10 s left in the sweep"
    sweep.case_dropped(("fp16", 1))  # claimed by another process after collection
    now[0] = 8.0
    assert sweep.case_finished(("int8", 0)) == "sweep: 2/3 cases: 16/20 images, 2.0 img/s, 2 s left in the sweep"
    assert sweep.case_finished(("int8", 0)) is None and sweep.case_finished(("bf16", 0)) is None


# ---------------------------------------------------------------- what pytest-benchmark times
def _suite_test_function():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "test_caption.py"
    spec = importlib.util.spec_from_file_location("bench_test_caption", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.test_caption


class RecordingSession:
    """Stands in for BenchSession: records which steps ran inside the benchmark's timed call."""

    def __init__(self, benchmark):
        self.benchmark, self.events = benchmark, []
        self.cfg = type("Cfg", (), {"inference": type("Inf", (), {"max_new_tokens": 4})})()
        self.chunks = [[type("Row", (), {"image_id": 1})()]]

    def _event(self, name):
        self.events.append((name, self.benchmark.timing))

    def warm_up(self, loaded, chunk_id):
        self._event("warm_up")

    def caption_chunk(self, loaded, chunk_id):
        self._event("caption_chunk")
        return "result"

    def finish_chunk(self, loaded, chunk_id, result):
        self._event("latency_and_csv")
        return [{"image_id": 1, "status": "ok", "generated_tokens": 4, "error": "", "chunk_images_ok": 1,
                 "chunk_throughput_img_s": 1.0, "chunk_energy_j_per_image": None, "chunk_peak_alloc_mib": None,
                 "chunk_idle_share": 0.1, "engine": "stock"}]

    def run_chunk(self, loaded, chunk_id):  # what the old suite timed: warm-up, captioning and latency
        self.warm_up(loaded, chunk_id)
        return self.finish_chunk(loaded, chunk_id, self.caption_chunk(loaded, chunk_id))


class RecordingBenchmark:
    def __init__(self):
        self.timing, self.extra_info = False, {}

    def pedantic(self, fn, args=(), rounds=1, iterations=1):
        self.timing = True
        try:
            return fn(*args)
        finally:
            self.timing = False


def test_benchmark_times_the_captioning_pass_alone():
    benchmark = RecordingBenchmark()
    session = RecordingSession(benchmark)
    _suite_test_function()(session, "loaded", 0, benchmark)
    assert session.events == [("warm_up", False), ("caption_chunk", True), ("latency_and_csv", False)]
    assert benchmark.extra_info["chunk_idle_share"] == 0.1


# ---------------------------------------------------------------- gpu_benchmark.sh tables
def test_coefficient_of_variation_and_the_compare_table(tmp_path):
    import json
    from vlmbench.results.perf_table import coefficient_of_variation, main
    assert coefficient_of_variation([10.0, 10.0, 10.0]) == 0.0
    assert coefficient_of_variation([9.0, 10.0, 11.0]) == pytest.approx(0.1)
    assert coefficient_of_variation([10.0, None]) is None
    for run, rate, p50 in (("stock", 3.5, 1.9), ("fast", 14.0, 0.38)):
        (tmp_path / run).mkdir()
        (tmp_path / run / "summary_1.json").write_text(json.dumps({"variants": {"fp16": {
            "throughput_img_s": rate, "latency_s_p50": p50, "idle_share": 0.02}}}))
    lines = []
    import contextlib
    import io
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        assert main(["compare", str(tmp_path), "stock", "fast"]) == 0
    lines = buffer.getvalue().splitlines()
    assert lines[-1] == "| fp16 | 3.50 | 14.00 | 4.00x | 1.900 | 0.380 | 5.00x | 2.0% / 2.0% |"


def test_idle_share_is_shown_in_percent_wherever_it_is_shown():
    """The summary keeps a fraction (README: 'a fraction from 0 to 1, shown in % in tables'); a reader sees %."""
    from vlmbench.results.labels import label
    from vlmbench.results.perf_table import runs_table
    entry = {"engine": {"engine": "fast"}, "micro_batch_size": 8, "throughput_img_s": 12.76, "idle_share": 0.0353}
    assert "| 3.5% |" in runs_table({"run": {"variants": {"fp16": entry}}}).splitlines()[2]
    assert label("idle_share") == "idle share (%)"  # its n/a line (report.null_lines) says the unit too


def test_vision_table_sets_compiled_against_eager_and_shows_both_warm_ups(tmp_path, capsys):
    import json
    from vlmbench.results.perf_table import main
    runs = {"stock": (5.0, None, None), "off": (11.0, 20.0, None), "on": (16.5, 41.0, "cold"), "again": (16.0, 9.5, "warm")}
    for run, (rate, warmup, state) in runs.items():
        (tmp_path / run).mkdir()
        entry = {"throughput_img_s": rate, "engine": {"vision_compiled": run in ("on", "again")}, "warmup_s": warmup,
                 "compile_cache": {"state": state, "graph_breaks": 0} if state else None}
        (tmp_path / run / "summary_1.json").write_text(json.dumps({"variants": {"fp16": entry}}))
    assert main(["vision", str(tmp_path), "stock", "off", "on", "again"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == ("| fp16 | 5.00 | 11.00 | 16.50 | 1.50x | 3.30x | True | "
                                                        "41.0 s (cold, 0 graph breaks) | 9.5 s (warm, 0 graph breaks) | 16.00 |")


def test_cpu_threads_are_set_deliberately_half_the_usable_cores_unless_configured():
    assert cpu_threads(None, usable_cores=2) == (1, "default")
    assert cpu_threads(None, usable_cores=1) == (1, "default")
    assert cpu_threads(None, usable_cores=16) == (8, "default")
    assert cpu_threads(3, usable_cores=2) == (3, "config")
    import torch
    before = torch.get_num_threads()
    try:
        assert set_cpu_threads(1) == {"cpu_threads": 1, "cpu_threads_source": "config"}
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
