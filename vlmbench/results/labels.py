"""The words a reader sees for a summary's keys: the column headers of the terminal table and report.html.

Why it exists: the terminal table (also summary_latest.md) and report.html name the same numbers; named in
one place, the two cannot drift apart (they did: 'CIDEr' against 'CIDEr-D'; 'power (W)' for what is the
average power over the timed pass). The summary JSON keeps its keys: stored summaries and the gate read them.
"""
from __future__ import annotations

# summary key -> the header of its column (terminal and report.html)
LABELS = {
    "cider": "CIDEr-D", "latency_s_p50": "latency p50 (s)", "throughput_img_s": "throughput (img/s)",
    "peak_vram_mib": "peak VRAM (MiB)", "model_size_mb": "size (MB)", "energy_j_per_image": "energy (J/img)",
    "avg_power_w": "avg power (W)", "warmup_s": "warm-up (s)", "census": "quantized Linear layers (method)",
}


def label(key: str) -> str:
    """The reader's name of a summary key (LABELS); an unknown key in words ('some_key' -> 'some key')."""
    return LABELS.get(key, key.replace("_", " "))
