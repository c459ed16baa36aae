"""The results folder's files: chunk CSVs, variant records, config snapshots.

Why it exists: resuming is only safe if a CSV that looks finished is finished and belongs to this
experiment. Every write here is atomic (temporary file, then rename); every read checks columns,
rows, the image ids the chunk must hold and the config fingerprint, and says what is wrong.

Files, per results folder:
- `<variant>_batch_<id>.csv`: one row per image (columns in CSV_COLUMNS); chunk-level measurements
  repeat on each row in the `chunk_*` columns so that one file is the whole record of one chunk.
- `variant_<variant>.json`: what was measured when the variant loaded (census, size on disk, ...).
- `experiment_config_<timestamp>.yaml`: the resolved config and its fingerprint, per run.
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from vlmbench.config import ExperimentConfig, config_to_yaml, diff_result_fields
from vlmbench.paths import atomic_write_text

IMAGE_COLUMNS = ["image_id", "file_name", "variant", "chunk_id", "status", "error", "caption", "generated_tokens",
                 "micro_batch_index", "micro_batch_size", "micro_batch_padding", "micro_batch_s", "latency_s"]
CHUNK_COLUMNS = ["chunk_wall_s", "chunk_images_ok", "chunk_throughput_img_s", "chunk_energy_j",
                 "chunk_energy_j_per_image", "chunk_avg_power_w", "chunk_peak_alloc_mib", "chunk_peak_reserved_mib",
                 "chunk_nvml_used_mib", "chunk_generate_s", "chunk_idle_share", "engine", "device", "device_name", "dtype", "measure_notes", "config_fingerprint"]
CSV_COLUMNS = IMAGE_COLUMNS + CHUNK_COLUMNS


def chunk_csv_path(results_dir: Path, variant: str, chunk_id: int) -> Path:
    return Path(results_dir) / f"{variant}_batch_{chunk_id}.csv"


def variant_record_path(results_dir: Path, variant: str) -> Path:
    return Path(results_dir) / f"variant_{variant}.json"


def timestamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime())


# ---------------------------------------------------------------- writing
def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(value) if isinstance(value, float) else str(value)


def write_chunk_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="raise")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in CSV_COLUMNS})
    atomic_write_text(path, buffer.getvalue())


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_config_snapshot(results_dir: Path, cfg: ExperimentConfig, stamp: str, resolved: Optional[dict] = None) -> Path:
    path = Path(results_dir) / f"experiment_config_{stamp}.yaml"
    atomic_write_text(path, config_to_yaml(cfg, resolved))
    return path


# ---------------------------------------------------------------- reading and checking
@dataclass
class ChunkState:
    """What an existing chunk CSV is: complete, missing, damaged, or from another experiment."""
    status: str  # "complete" | "missing" | "damaged" | "foreign"
    reason: str = ""
    fingerprint: Optional[str] = None


def read_chunk_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def inspect_chunk(path: Path, expected_ids: list[int], fingerprint: str) -> ChunkState:
    if not path.exists():
        return ChunkState("missing")
    try:
        rows = read_chunk_csv(path)
    except (csv.Error, UnicodeDecodeError, OSError) as exc:
        return ChunkState("damaged", f"unreadable: {exc}")
    if not rows:
        return ChunkState("damaged", "no data rows")
    missing_cols = [c for c in CSV_COLUMNS if c not in rows[0]]
    if missing_cols:
        return ChunkState("damaged", f"missing columns {missing_cols}")
    if any(None in r.values() or None in r for r in rows):
        return ChunkState("damaged", "a row is incomplete (truncated file?)")
    found = {r["config_fingerprint"] for r in rows}
    if len(found) > 1:
        return ChunkState("damaged", f"rows from several experiments ({', '.join(sorted(map(str, found)))})")
    if fingerprint not in found:
        return ChunkState("foreign", f"made with config fingerprint {found.pop()}", fingerprint=rows[0]["config_fingerprint"])
    try:
        ids = [int(r["image_id"]) for r in rows]
    except (TypeError, ValueError):
        return ChunkState("damaged", "a row has no valid image_id (truncated file?)")
    if sorted(ids) != sorted(expected_ids):
        return ChunkState("damaged", f"holds {len(ids)} rows, expected the chunk's {len(expected_ids)} images")
    if any(r["status"] not in ("ok", "failed") for r in rows):
        return ChunkState("damaged", "a row has an unknown status (truncated file?)")
    return ChunkState("complete")


def quarantine(path: Path) -> Path:
    """Moves a damaged CSV aside (kept for inspection) so that the chunk is recomputed."""
    target = path.with_name(f"{path.name}.damaged-{timestamp()}")
    path.rename(target)
    return target


def find_snapshot(results_dir: Path, fingerprint: str) -> Optional[dict]:
    """The result fields of the newest config snapshot in `results_dir` with that fingerprint."""
    from vlmbench.config import ConfigError, from_plain
    for path in sorted(Path(results_dir).glob("experiment_config_*.yaml"), reverse=True):
        data = yaml.safe_load(path.read_text()) or {}
        if data.get("fingerprint") == fingerprint:
            try:
                return from_plain(data).result_fields()
            except ConfigError:  # a snapshot from an older vlmbench: no field diff then
                return None
    return None


def foreign_message(results_dir: Path, path: Path, state: ChunkState, cfg: ExperimentConfig) -> str:
    old = find_snapshot(results_dir, state.fingerprint)
    if old is None:
        what = "its config snapshot is not in the folder, so the differing fields are unknown"
    else:
        what = "differing fields: " + "; ".join(diff_result_fields(old, cfg.result_fields()))
    return (f"{path} was made by a different experiment (fingerprint {state.fingerprint}, this run is "
            f"{cfg.fingerprint}); {what}. Nothing was loaded and nothing was overwritten. Start a separate "
            f"results folder with --vlm-results DIR (or results_dir in the config), or move the old files away.")
