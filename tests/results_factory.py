"""Results folders written by hand (chunk CSVs, references, snapshot), for tests of scoring and reporting.

Why it exists: the summary, the table and the gate read only files; writing those files directly
makes each reporting test take milliseconds instead of running a model.
"""
from __future__ import annotations

import json
from pathlib import Path

from vlmbench.config import ExperimentConfig, from_plain
from vlmbench.results.references import image_ids_digest, references_digest
from vlmbench.results.records import chunk_csv_path, library_versions, write_chunk_csv, write_config_snapshot, write_json

SHAPES = ["circle", "square", "triangle", "star", "cross", "ring", "heart", "moon", "arrow", "diamond", "hexagon",
          "oval", "kite", "bolt"]
COLOURS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white", "pink", "brown", "grey", "cyan",
           "gold", "teal"]


def tiny_config(results_dir: Path, images: int, chunks: int = 1, variants=("fp16", "int8"),
                **sections) -> ExperimentConfig:
    data = {"experiment_name": "made-by-hand", "dataset": {"synthetic_images": images, "limit": images},
            "inference": {"batch_size": -(-images // chunks), "micro_batch_size": min(2, -(-images // chunks))},
            "variants": list(variants), "model": {"weights": "random", "tiny": True, "processor": "builtin"},
            "results_dir": str(results_dir),
            "quality": {"meteor": False}}  # METEOR's JVM takes 5-20 s per summary: tests/test_caption_metrics.py runs it
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return from_plain(data).with_engine("cpu")  # resolved as a run on this machine resolves engine: auto


def references(images: int) -> dict[int, list[str]]:
    """Five human-like captions per image id 1..images, distinct between images."""
    return {i: [f"a {COLOURS[i % 14]} {SHAPES[(i * 3) % 14]} on a {COLOURS[(i + 5) % 14]} background",
                f"a {SHAPES[(i * 3) % 14]} drawn in {COLOURS[i % 14]}",
                f"the {COLOURS[i % 14]} {SHAPES[(i * 3) % 14]} is in the middle of the picture",
                f"one {SHAPES[(i * 3) % 14]} shape coloured {COLOURS[i % 14]}",
                f"a simple drawing of a {COLOURS[i % 14]} {SHAPES[(i * 3) % 14]}"] for i in range(1, images + 1)}


def row(cfg: ExperimentConfig, variant: str, chunk_id: int, image_id: int, caption: str, overrides: dict) -> dict:
    cells = {"image_id": image_id, "file_name": f"{image_id:012d}.jpg", "variant": variant, "chunk_id": chunk_id,
             "status": "ok", "error": "", "caption": caption, "generated_tokens": len(caption.split()),
             "micro_batch_index": 0, "micro_batch_size": 2, "micro_batch_s": 0.5, "latency_s": 0.3,
             "chunk_wall_s": 2.0, "chunk_images_ok": 2, "chunk_throughput_img_s": 1.0, "chunk_energy_j": None,
             "chunk_energy_j_per_image": None, "chunk_avg_power_w": None, "chunk_peak_alloc_mib": None,
             "chunk_peak_reserved_mib": None, "chunk_nvml_used_mib": None, "device": "cpu", "device_name": "cpu",
             "dtype": "fp16", "config_fingerprint": cfg.variant_fingerprint(variant), **library_versions(),
             "measure_notes": json.dumps({c: "no CUDA device (run on CPU)" for c in (
                 "chunk_energy_j", "chunk_peak_alloc_mib", "chunk_peak_reserved_mib", "chunk_nvml_used_mib")})}
    return {**cells, **overrides}


def write_results(cfg: ExperimentConfig, results_dir: Path, chunk_cells: dict | None = None,
                  image_cells: dict | None = None) -> dict:
    """Writes CSVs for every variant and chunk (captions = each image's first reference), the references
    and a snapshot. Overrides: `chunk_cells` (variant, chunk_id) -> columns, `image_cells`
    (variant, image_id) -> columns. Returns the references."""
    results_dir.mkdir(parents=True, exist_ok=True)
    refs = references(cfg.dataset.limit)
    ids = sorted(refs)
    size = cfg.inference.batch_size
    for variant in cfg.variants:
        for chunk_id in range(cfg.num_chunks):
            extra = (chunk_cells or {}).get((variant, chunk_id), {})
            rows = [row(cfg, variant, chunk_id, i, refs[i][0], {**extra, **(image_cells or {}).get((variant, i), {})})
                    for i in ids[chunk_id * size:(chunk_id + 1) * size]]
            write_chunk_csv(chunk_csv_path(results_dir, variant, chunk_id), rows)
    payload = {str(i): r[1:] for i, r in refs.items()}
    write_json(results_dir / "references.json", payload)
    resolved = {"image_ids_sha256": image_ids_digest(ids), "references_sha256": references_digest(payload)}  # as a run records them
    write_config_snapshot(results_dir, cfg, "20260101T000000", resolved)
    return refs
