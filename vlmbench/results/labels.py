"""The words a reader sees for a summary's keys: column headers, and the names in the n/a lines.

Why it exists: the terminal table (also summary_latest.md) and report.html name the same numbers; named in
one place, the two cannot drift apart (they did: 'CIDEr' against 'CIDEr-D'; 'power (W)' for what is the
average power over the timed pass), and the lines that say why a value is null name it by the header the
reader saw, not by its JSON key ('latency p50 (s)', not 'latency_s_p50'). The summary JSON keeps its keys:
stored summaries and the regression gate read them.
"""
from __future__ import annotations

# summary key -> the header of its column (terminal and report.html), else its name in words; in the order the
# tables show them (the n/a lines follow it). The quality table's headers name the run's baseline and
# confidence: column_labels() fills them in.
LABELS = {
    "cider": "CIDEr-D", "latency_s_p50": "latency p50 (s)", "throughput_img_s": "throughput (img/s)",
    "peak_vram_mib": "peak VRAM (MiB)", "model_size_mb": "size (MB)", "energy_j_per_image": "energy (J/img)",
    "avg_power_w": "avg power (W)", "warmup_s": "warm-up (s)", "census": "quantized Linear layers (method)",
    "cider_ci": "CIDEr-D [95% CI]", "cider_delta_ci": "delta vs fp16 [95% CI]", "drift": "drift from fp16's captions",
    "generated_tokens_mean": "tokens/caption",
    "latency_s_mean": "latency mean (s)", "latency_s_p90": "latency p90 (s)",
    "peak_reserved_mib": "peak reserved VRAM (MiB)", "nvml_used_mib": "NVML process VRAM (MiB)",
    "weights_mib": "weights in VRAM (MiB)", "idle_power_w": "idle power (W)", "idle_share": "idle share (%)",
    "load_s": "load (s)", "micro_batch_size": "micro-batch size", "micro_batch_size_source": "micro-batch size source",
    "micro_batch_size_reason": "micro-batch size reason", "cpu_threads": "CPU threads",
    "decode_workers": "decode workers", "prefetch_batches": "prefetch batches", "dtype": "dtype", "device": "device",
    "engine": "engine", "compile_cache": "compile cache",
}


def column_labels(summary: dict) -> dict[str, str]:
    """LABELS with the quality table's headers for this summary's baseline and confidence."""
    info = summary.get("quality") or {}
    conf, base = int(round(100 * info.get("confidence", 0.95))), info.get("baseline") or "fp16"
    return {**LABELS, "cider_ci": f"CIDEr-D [{conf}% CI]", "cider_delta_ci": f"delta vs {base} [{conf}% CI]",
            "drift": f"drift from {base}'s captions"}


def label(key: str, labels: dict = LABELS) -> str:
    """The reader's name of a summary key (from `labels`); an unknown key in words ('some_key' -> 'some key')."""
    return labels.get(key, key.replace("_", " "))


def label_order(key: str) -> tuple[int, str]:
    """Where `key` comes in the tables (LABELS' order); unknown keys after the known ones, alphabetically."""
    return (list(LABELS).index(key) if key in LABELS else len(LABELS), key)
