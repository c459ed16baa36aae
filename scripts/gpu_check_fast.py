"""One-call GPU check of the `fast` engine: does it run, is it correct, does it avoid timed recompiles.

Why it exists: the fast path (varlen vision attention, static KV cache + compiled decode, padded last
micro-batch, processor on the device) can only be checked on a CUDA machine; this script checks it
through vlmbench's own code path (BenchSession, Captioner, engines) in one device call of a few
minutes, and says whether a compiled decode step works for bitsandbytes int8. Not a measurement:
one run each, small sizes.

    python3 scripts/gpu_check_fast.py OUTDIR     (data: VLMBENCH_MODEL_DIR, VLMBENCH_COCO_DIR)

Writes OUTDIR/gpu_check_fast.json and prints a short table last.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import torch

from vlmbench.engines.vision_compile import eager_vision_blocks, vision_compiled

T0 = time.perf_counter()
RESULTS: dict = {}
DRY_CPU = "--dry-cpu" in sys.argv  # a CPU rehearsal on the tiny model: catches errors in this script
DEVICE = "cpu" if DRY_CPU else "cuda"
OUT = None  # set by main


def elapsed() -> float:
    return time.perf_counter() - T0


def stage(name: str):
    """Runs a stage, records its result or its exception, and never stops the script."""
    def wrap(fn):
        print(f"=== {name} at {elapsed():.0f} s", flush=True)
        try:
            RESULTS[name] = fn()
        except Exception as exc:  # a failed stage is a result too
            RESULTS[name] = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-2000:]}
        print(json.dumps(RESULTS[name], default=str)[:1500], flush=True)
        if OUT is not None:  # after every stage: a run killed at its time limit keeps what it found
            OUT.mkdir(parents=True, exist_ok=True)
            clean = {k: v for k, v in RESULTS.items() if not k.startswith("_")}
            (OUT / "gpu_check_fast.json").write_text(json.dumps(clean, indent=2, default=str))
        return fn
    return wrap


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def synced(fn, *args):
    from vlmbench.run.measure import timed
    return timed(DEVICE, fn, *args)


def dynamo_counts() -> dict:
    from torch._dynamo.utils import counters
    counts = {k: dict(v) for k, v in counters.items() if k in ("stats", "frames", "recompiles", "inductor")}
    return {**counts, "graph_breaks": sum(counters["graph_break"].values())}


def main(out: Path) -> None:
    from vlmbench.config import load_config
    from vlmbench.run.session import BenchSession
    global OUT
    OUT = out
    out.mkdir(parents=True, exist_ok=True)
    overrides = {"dataset.limit": 13, "inference.batch_size": 13, "inference.micro_batch_size": 8,
                 "inference.engine": "fast", "measure.latency_images": 0, "measure.model_size": False,
                 "inference.progress_interval_s": 1.0, "variants": ["fp16", "int8"]}
    if DRY_CPU:
        overrides.update({"model.tiny": True, "model.processor": "builtin", "model.config_dir": None,
                          "inference.img_size": 112, "dataset.coco_dir": None, "dataset.synthetic_images": 16,
                          "dataset.present_images_only": False, "model.device": "cpu", "inference.max_new_tokens": 4,
                          "inference.min_new_tokens": 4})
    cfg = load_config("configs/gpu-3b-random.yaml", overrides)
    (out / "results").mkdir(parents=True, exist_ok=True)  # start() writes the snapshot there; no lock is taken
    session = BenchSession(cfg, out / "results")
    session.start()
    rows = session.chunks[0]

    @stage("environment")
    def _():
        from vlmbench.engines import vision_attention as va
        import transformers
        return {"torch": torch.__version__, "transformers": transformers.__version__,
                "gpu": torch.cuda.get_device_name() if not DRY_CPU else "cpu (dry run)", "varlen_attn": va.torch_varlen_kernel() is not None,
                "flash_attn": va.flash_attn_kernel() is not None, "images": len(rows)}

    loaded = session.load_variant("fp16")
    cap = loaded.captioner
    model = loaded.model
    if DRY_CPU:  # the fast engine compiles on CUDA only; the rehearsal traces the blocks without code generation
        from vlmbench.engines.vision_compile import compile_vision_blocks
        compile_vision_blocks(model, backend="aot_eager")

    @stage("engine_report_fp16")
    def _():
        from vlmbench.engines.batch_size import choose_micro_batch, free_device_mib, prefill_tokens_per_image
        tokens = prefill_tokens_per_image(cap.processor, cap.prompt_text, cfg.inference.img_size)
        auto = choose_micro_batch(None, DEVICE, free_device_mib(DEVICE), tokens, False, 1000)
        return {"report": cap.engine.report, "auto_micro_batch_for_1000": auto.__dict__,
                "vision_impl": model.config.vision_config._attn_implementation,
                "text_impl": model.config.text_config._attn_implementation}

    @stage("device_preprocessing")
    def _():
        device_batch = cap.prepare(0, rows[:8], pad=False)
        saved, cap.preprocess_device = cap.preprocess_device, None
        cpu_batch = cap.prepare(0, rows[:8], pad=False)
        cap.preprocess_device = saved
        pv_d, pv_c = device_batch.inputs["pixel_values"], cpu_batch.inputs["pixel_values"]
        return {"device": str(pv_d.device), "pixel_values_rel_diff_vs_cpu": rel(pv_d.cpu(), pv_c),
                "input_ids_equal": bool((device_batch.inputs["input_ids"].cpu() == cpu_batch.inputs["input_ids"]).all())}

    @stage("vision_varlen_vs_stock")
    def _():
        batch = cap.prepare(0, rows[:8], pad=False)
        inputs = cap._on_device(batch)
        pixels, grid = inputs["pixel_values"].to(model.dtype), inputs["image_grid_thw"]
        visual = model.model.visual
        with torch.inference_mode():
            synced(lambda: visual(pixels, grid_thw=grid))
            fast, fast_s = synced(lambda: visual(pixels, grid_thw=grid).pooler_output)
            with eager_vision_blocks(model):  # the stock per-window loop, uncompiled
                model.set_attn_implementation({"vision_config": "sdpa"})
                synced(lambda: visual(pixels, grid_thw=grid))
                stock, stock_s = synced(lambda: visual(pixels, grid_thw=grid).pooler_output)
                from vlmbench.engines.vision_attention import use_for_vision
                use_for_vision(model)
                ref = _fp32_reference(visual, pixels, grid)
        return {"images": 8, "rel_diff_fast_vs_stock": rel(fast, stock), "rel_diff_fast_vs_fp32_ref": rel(fast, ref),
                "rel_diff_stock_vs_fp32_ref": rel(stock, ref), "fast_s": fast_s, "stock_s": stock_s,
                "nan": bool(torch.isnan(fast).any())}

    @stage("vision_compiled_vs_eager")
    def _():  # issue 20: the fast engine's compiled vision blocks against the same tower run eagerly
        batch = cap.prepare(0, rows[:8], pad=False)
        inputs = cap._on_device(batch)
        pixels, grid = inputs["pixel_values"].to(model.dtype), inputs["image_grid_thw"]
        visual = model.model.visual
        before = dynamo_counts()
        with torch.inference_mode():
            _, first_s = synced(lambda: visual(pixels, grid_thw=grid))
            compiled, compiled_s = synced(lambda: visual(pixels, grid_thw=grid).pooler_output)
            with eager_vision_blocks(model):
                synced(lambda: visual(pixels, grid_thw=grid))
                eager, eager_s = synced(lambda: visual(pixels, grid_thw=grid).pooler_output)
        return {"vision_compiled": vision_compiled(model), "report": cap.engine.report.get("vision_compiled_reason"),
                "rel_diff_compiled_vs_eager": rel(compiled, eager), "first_call_s": first_s, "compiled_s": compiled_s,
                "eager_s": eager_s, "nan": bool(torch.isnan(compiled).any()), "dynamo_before": before,
                "dynamo_after": dynamo_counts()}

    @stage("fast_warm_up_compile")
    def _():
        before = dynamo_counts()
        _, seconds = synced(session.warm_up, loaded, 0)
        return {"seconds": seconds, "dynamo_before": before, "dynamo_after": dynamo_counts()}

    fast_rows: list = []

    @stage("fast_chunk_13_images_mb8")
    def _():
        before = dynamo_counts()
        result = session.caption_chunk(loaded, 0)
        fast_rows.extend(result.rows)
        per_batch = sorted({(r["micro_batch_index"], r["micro_batch_size"], r["micro_batch_padding"],
                             round(r["micro_batch_s"], 3)) for r in result.rows})
        return {"metrics": {k: v.value for k, v in result.metrics.items()}, "micro_batches": per_batch,
                "dynamo_before": before, "dynamo_after": dynamo_counts()}

    @stage("fast_chunk_vision_eager_same_model")
    def _():  # greedy captions of the compiled and the eager vision tower, same model, same micro-batches
        with eager_vision_blocks(model):
            result = session.caption_chunk(loaded, 0)
        by_id = {r["image_id"]: r["caption"] for r in result.rows}
        same = sum(by_id.get(r["image_id"]) == r["caption"] for r in fast_rows)
        return {"metrics": {k: v.value for k, v in result.metrics.items()},
                "captions_equal_compiled_vs_eager_vision": f"{same}/{len(fast_rows)}"}

    @stage("stock_chunk_13_images_mb8_same_model")
    def _():
        from vlmbench.engines.stock import StockEngine
        from vlmbench.run.runner import Captioner
        model.set_attn_implementation({"vision_config": "sdpa"})
        stock = Captioner(model, session.processor, cfg, DEVICE,
                          StockEngine(model, session.processor, cfg, None, DEVICE), 8, None)
        with eager_vision_blocks(model):  # the stock engine runs the tower eagerly
            stock.warm_up(rows, 1)
            result = stock.caption_chunk(rows, session.nvml, "stock")
        by_id = {r["image_id"]: r["caption"] for r in result.rows}
        same = sum(by_id.get(r["image_id"]) == r["caption"] for r in fast_rows)
        return {"metrics": {k: v.value for k, v in result.metrics.items()},
                "captions_equal_fast_vs_stock": f"{same}/{len(fast_rows)}"}

    @stage("fast_batch1_latency")
    def _():
        if elapsed() > 200:
            return {"skipped": f"time budget ({elapsed():.0f} s elapsed)"}
        from vlmbench.engines.vision_attention import use_for_vision
        use_for_vision(model)
        first, first_s = synced(cap.measure_latency, rows, 1)
        again = cap.measure_latency(rows[1:], 3)
        return {"first_call_incl_compile_s": first_s, "latencies_s": list(again.values())}

    loaded.model = loaded.captioner = model = cap = None
    from vlmbench.models.loading import free_device_memory
    free_device_memory()

    @stage("int8_fast")
    def _():
        if elapsed() > 300:
            return {"skipped": f"time budget ({elapsed():.0f} s elapsed)"}
        int8 = session.load_variant("int8")
        session.warm_up(int8, 0)
        result = session.caption_chunk(int8, 0)
        RESULTS["_int8"] = int8
        return {"report": int8.captioner.engine.report, "metrics": {k: v.value for k, v in result.metrics.items()}}

    @stage("int8_forced_compile_probe")
    def _():
        int8 = RESULTS.pop("_int8", None)
        if int8 is None or elapsed() > 320:
            return {"skipped": f"no int8 model or time budget ({elapsed():.0f} s elapsed)"}
        return _bnb_compile_probe(int8)

    _table()


def _fp32_reference(visual, pixels, grid):
    """The vision tower in fp32 with the per-segment sdpa reference (an independent check of both paths)."""
    import copy
    ref_tower = copy.deepcopy(visual).float()
    return ref_tower(pixels.float(), grid_thw=grid).pooler_output


def _bnb_compile_probe(loaded) -> dict:
    """Forces transformers' decode-step compilation on a bitsandbytes int8 model (probe only: the
    quantizer's is_compileable is overridden on this instance's class here, never in vlmbench)."""
    cap = loaded.captioner
    quantizer = loaded.model.hf_quantizer
    cls = type(quantizer)
    saved = cls.__dict__.get("is_compileable")
    cls.is_compileable = property(lambda self: True)
    cap.generation_config.cache_implementation = "static"
    try:
        batch = cap.prepare(0, cap_rows(cap)[:8], pad=False)
        _, first_s = synced(cap.generate, batch)
        (_, _), second_s = synced(cap.generate, batch)
        compiled = hasattr(loaded.model, "_compiled_call")
        return {"first_call_s": first_s, "second_call_s": second_s, "compiled_call_present": compiled}
    finally:
        if saved is None:
            del cls.is_compileable
        else:
            cls.is_compileable = saved


def cap_rows(cap):
    from vlmbench.data.sources import load_rows
    return load_rows(cap.cfg)


def _table() -> None:
    print("\n| check | result |\n|---|---|")
    for name, value in RESULTS.items():
        if name.startswith("_"):
            continue
        short = {k: v for k, v in (value or {}).items() if k not in ("traceback", "dynamo_before", "report")}
        print(f"| {name} | {json.dumps(short, default=str)[:400]} |")
    print(f"total {elapsed():.0f} s")


if __name__ == "__main__":
    os.environ.setdefault("VLMBENCH_CACHE", "/tmp/vlmbench-cache")
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(Path(args[0] if args else "gpu-check"))
