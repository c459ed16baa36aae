"""The results folder's files: chunk CSVs, variant records, config snapshots.

Why it exists: resuming is only safe if a CSV that looks finished is finished and belongs to this
experiment. Every write here is atomic (temporary file, then rename); every read checks columns,
rows, the image ids the chunk must hold and the config fingerprint, and says what is wrong.

Files, per results folder:
- `<variant>_batch_<id>.csv`: one row per image (columns in CSV_COLUMNS); chunk-level measurements
  repeat on each row in the `chunk_*` columns so that one file is the whole record of one chunk.
- `variant_<variant>.json`: what was measured when the variant loaded (census, size on disk, ...), one
  record per process that loaded it (written and read by `vlmbench/results/variant_records.py`).
- `experiment_config_<timestamp>.yaml`: the resolved config and its fingerprint, per run.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from vlmbench.config import ExperimentConfig, config_to_yaml, diff_result_fields, shown
from vlmbench.paths import atomic_write_text

IMAGE_COLUMNS = ["image_id", "file_name", "variant", "chunk_id", "status", "error", "caption", "generated_tokens",
                 "micro_batch_index", "micro_batch_size", "micro_batch_padding", "micro_batch_s", "latency_s"]
CHUNK_COLUMNS = ["chunk_wall_s", "chunk_images_ok", "chunk_throughput_img_s", "chunk_energy_j",
                 "chunk_energy_j_per_image", "chunk_avg_power_w", "chunk_peak_alloc_mib", "chunk_peak_reserved_mib",
                 "chunk_nvml_used_mib", "chunk_generate_s", "chunk_idle_share", "engine", "device", "device_name",
                 "gpu_uuid", "gpu_parent_uuid", "worker", "dtype", "measure_notes", "torch_version", "transformers_version",
                 "bitsandbytes_version", "config_fingerprint"]
CSV_COLUMNS = IMAGE_COLUMNS + CHUNK_COLUMNS
# libraries whose version is recorded on every chunk (a summary over mixed versions says so)
VERSIONED_LIBRARIES = ("torch", "transformers", "bitsandbytes")
# columns added after the first release: a CSV without them is still complete (no GPU hour recomputed)
OPTIONAL_COLUMNS = tuple(f"{lib}_version" for lib in VERSIONED_LIBRARIES) + ("gpu_uuid", "gpu_parent_uuid", "worker")


def chunk_csv_path(results_dir: Path, variant: str, chunk_id: int) -> Path:
    return Path(results_dir) / f"{variant}_batch_{chunk_id}.csv"


def variant_record_path(results_dir: Path, variant: str) -> Path:
    return Path(results_dir) / f"variant_{variant}.json"


def installed_version(library: str) -> Optional[str]:
    """The installed distribution's version of `library` (None when not installed), read from its metadata
    without importing it (an import can be slow or print the library's own warnings)."""
    from importlib import metadata
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict[str, str]:
    """`<library>_version` -> the installed distribution's version ('not installed'), without importing it."""
    return {f"{library}_version": installed_version(library) or "not installed" for library in VERSIONED_LIBRARIES}


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
    """`experiment_config_<stamp>.yaml`, or `..._<stamp>_<n>.yaml` when a run of the same second has the name."""
    path = unique_path(Path(results_dir), "experiment_config_", stamp, ".yaml")
    atomic_write_text(path, config_to_yaml(cfg, resolved))
    return path


def unique_path(folder: Path, prefix: str, stamp: str, suffix: str) -> Path:
    """`<prefix><stamp><suffix>`, else `<prefix><stamp>_<n><suffix>` (n = 2, 3, ...), reserved with O_EXCL.

    Two runs started in the same second (or shards of one run) get different names; the reserved
    empty file is replaced atomically by the real content. `newest_first` orders these names.
    """
    for n in range(1, 10000):
        path = folder / f"{prefix}{stamp}{'' if n == 1 else f'_{n}'}{suffix}"
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name {prefix}{stamp}_<n>{suffix} in {folder}")


def stamp_order(path: Path) -> tuple:
    """Sort key of a `<prefix><stamp>[_<n>]<suffix>` name: by stamp, then by n (a plain name is n = 1)."""
    match = re.search(r"(\d{8}T\d{6})(?:_(\d+))?\.[a-z]+$", path.name)
    return (match.group(1), int(match.group(2) or 1), path.name) if match else ("", 0, path.name)


def newest_first(paths) -> list[Path]:
    return sorted(paths, key=stamp_order, reverse=True)


# ---------------------------------------------------------------- reading and checking
@dataclass
class ChunkState:
    """What an existing chunk CSV is: complete, missing, damaged, or from another experiment."""
    status: str  # "complete" | "missing" | "damaged" | "foreign"
    reason: str = ""
    fingerprint: Optional[str] = None
    failed: dict[str, int] = field(default_factory=dict)  # failed rows of a complete chunk, per failure kind
    unavailable_ids: list[int] = field(default_factory=list)  # image ids whose rows failed as 'unavailable'
    rows: list[dict] = field(default_factory=list, repr=False)  # a complete chunk's rows, as read (for the summary)

    def failed_summary(self) -> str:
        """'2 failed rows (unavailable: 1, undecodable: 1)', or '' when every row is ok."""
        total = sum(self.failed.values())
        if not total:
            return ""
        kinds = ", ".join(f"{kind}: {count}" for kind, count in sorted(self.failed.items()))
        return f"{total} failed row{'s' if total > 1 else ''} ({kinds})"


def read_chunk_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# column -> (type, may be empty). Integers and floats must parse (finite); `generated_tokens` may be
# empty only on failed rows; the chunk-level measurements are empty where they could not be measured.
INT_COLUMNS = {"image_id": False, "chunk_id": False, "generated_tokens": True, "micro_batch_index": False,
               "micro_batch_size": False, "chunk_images_ok": False}
FLOAT_COLUMNS = {"micro_batch_s": True, "latency_s": True, "chunk_wall_s": False, "chunk_throughput_img_s": True,
                 "chunk_energy_j": True, "chunk_energy_j_per_image": True, "chunk_avg_power_w": True,
                 "chunk_peak_alloc_mib": True, "chunk_peak_reserved_mib": True, "chunk_nvml_used_mib": True}
FINGERPRINT = re.compile(r"[0-9a-f]{16}")
CELL_CHARS = 45  # a CSV cell in a damage reason, as config.shown bounds it


def chunk_of_path(path: Path) -> tuple[str, int]:
    """(variant, chunk id) that a `<variant>_batch_<id>.csv` name promises."""
    variant, _, chunk = Path(path).name.removesuffix(".csv").rpartition("_batch_")
    return variant, int(chunk) if chunk.isdigit() else -1


def inspect_chunk(path: Path, expected_ids: list[int], fingerprint: str) -> ChunkState:
    """What the CSV at `path` is for the chunk whose image ids are `expected_ids`.

    Every check of what a later reader relies on runs first (the file ends with a line end, all
    columns, cell types, `variant` and `chunk_id` as the file name says, the chunk's exact image
    ids, statuses, measure_notes); any failure makes it "damaged" (moved aside and recomputed).
    Only a well-formed file whose rows all carry one other well-formed fingerprint is "foreign".
    """
    if not path.exists():
        return ChunkState("missing")
    try:
        raw = path.read_bytes()
        rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8"), newline="")))
    except (csv.Error, UnicodeDecodeError, OSError) as exc:
        return ChunkState("damaged", f"unreadable: {exc}")
    problem = _structure_problem(raw, rows) or _row_problem(rows, path, expected_ids)
    if problem:
        return ChunkState("damaged", problem)
    return _fingerprint_state(rows, fingerprint)


def _structure_problem(raw: bytes, rows: list[dict]) -> Optional[str]:
    if not rows:
        return "no data rows"
    missing_cols = [c for c in CSV_COLUMNS if c not in rows[0] and c not in OPTIONAL_COLUMNS]
    if missing_cols:
        return f"missing columns {missing_cols}"
    if any(None in r.values() or None in r for r in rows) or not raw.endswith((b"\n", b"\r")):
        return "a row is incomplete (truncated file?)"
    return None


def _row_problem(rows: list[dict], path: Path, expected_ids: list[int]) -> Optional[str]:
    for number, row in enumerate(rows, start=1):
        problem = _cell_problem(row)
        if problem:
            return f"row {number}: {problem}"
    variant, chunk_id = chunk_of_path(path)
    if any(r["variant"] != variant or int(r["chunk_id"]) != chunk_id for r in rows):
        return f"its variant/chunk_id columns do not match the file name (expected {variant}, chunk {chunk_id})"
    ids = [int(r["image_id"]) for r in rows]
    if sorted(ids) != sorted(expected_ids):
        if len(ids) == len(expected_ids):
            return f"holds images other than the chunk's {len(expected_ids)} images"
        return f"holds {len(ids)} rows, expected the chunk's {len(expected_ids)} images"
    return None


def _cell_problem(row: dict) -> Optional[str]:
    if row["status"] not in ("ok", "failed"):
        return f"unknown status {shown(row['status'], CELL_CHARS)} (truncated file?)"
    for column, may_be_empty in INT_COLUMNS.items():
        empty_ok = may_be_empty and (column != "generated_tokens" or row["status"] == "failed")
        if not _parses(row[column], int, empty_ok):
            return f"{column} is {shown(row[column], CELL_CHARS)}, not an integer"
    for column, empty_ok in FLOAT_COLUMNS.items():
        if not _parses(row[column], float, empty_ok):
            return f"{column} is {shown(row[column], CELL_CHARS)}, not a number"
    try:
        notes_ok = isinstance(json.loads(row["measure_notes"] or "{}"), dict)
    except json.JSONDecodeError:
        notes_ok = False
    return None if notes_ok else f"measure_notes is {shown(row['measure_notes'], CELL_CHARS)}, not a JSON object"


def _parses(text: str, kind, empty_ok: bool) -> bool:
    if text == "":
        return empty_ok
    try:
        return math.isfinite(kind(text))
    except ValueError:
        return False


def _fingerprint_state(rows: list[dict], fingerprint: str) -> ChunkState:
    found = {r["config_fingerprint"] for r in rows}
    if len(found) > 1:
        shown_found = ", ".join(sorted(shown(f, CELL_CHARS) for f in found))
        return ChunkState("damaged", f"rows from several experiments ({shown_found})")
    other = found.pop()
    if other == fingerprint:
        return complete_state(rows)
    if not FINGERPRINT.fullmatch(other):
        return ChunkState("damaged", f"config_fingerprint {shown(other, CELL_CHARS)} is not a fingerprint (torn row?)")
    return ChunkState("foreign", f"made with config fingerprint {other}", fingerprint=other)


def complete_state(rows: list[dict]) -> ChunkState:
    """A complete chunk with its failed rows counted by kind (`vlmbench.data.images.failure_kind`)."""
    from vlmbench.data.images import UNAVAILABLE, failure_kind
    kinds = {int(r["image_id"]): failure_kind(r["error"]) or "unknown" for r in rows if r["status"] == "failed"}
    failed: dict[str, int] = {}
    for kind in kinds.values():
        failed[kind] = failed.get(kind, 0) + 1
    return ChunkState("complete", failed=failed, unavailable_ids=[i for i, k in kinds.items() if k == UNAVAILABLE],
                      rows=rows)


def quarantine(path: Path) -> Path:
    """Moves a damaged CSV aside (kept for inspection) so that the chunk is recomputed."""
    target = unique_path(path.parent, f"{path.name}.damaged-", timestamp(), "")
    try:
        path.rename(target)
    except OSError:
        target.unlink(missing_ok=True)  # the name reserved for it
        raise
    return target


def find_snapshot(results_dir: Path, fingerprint: str) -> Optional[dict]:
    """The result fields of the newest config snapshot in `results_dir` with that fingerprint."""
    from vlmbench.config import ConfigError, from_plain
    for path in newest_first(Path(results_dir).glob("experiment_config_*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        if data.get("fingerprint") == fingerprint:
            try:
                return from_plain(data).result_fields()
            except ConfigError:  # a snapshot from an older vlmbench: no field diff then
                return None
    return None


def snapshots_by_fingerprint(results_dir: Path) -> dict[str, Path]:
    """fingerprint -> the newest config snapshot in the folder that carries it."""
    found: dict[str, Path] = {}
    for path in newest_first(Path(results_dir).glob("experiment_config_*.yaml")):
        try:
            fingerprint = (yaml.safe_load(path.read_text()) or {}).get("fingerprint")
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        if isinstance(fingerprint, str):
            found.setdefault(fingerprint, path)
    return found


def first_row_fingerprint(path: Path) -> str:
    """The config fingerprint in a CSV's first row ('unreadable' when there is none)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            row = next(csv.DictReader(handle), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        row = None
    return (row or {}).get("config_fingerprint") or "unreadable"


def ignored_chunk_csvs(results_dir: Path, cfg: ExperimentConfig, used=frozenset()) -> dict[str, list[str]]:
    """Chunk CSVs in the folder that a report of `cfg` does not read, by their fingerprint
    (another experiment, or this experiment's fingerprint for a variant or chunk outside `cfg`).
    `used`: the (variant, chunk id) the report read, not opened again."""
    ignored: dict[str, list[str]] = {}
    for path in sorted(Path(results_dir).glob("*_batch_*.csv")):
        variant, chunk_id = chunk_of_path(path)
        if (variant, chunk_id) in used:
            continue
        fingerprint = first_row_fingerprint(path)
        if fingerprint != cfg.fingerprint or variant not in cfg.variants or not 0 <= chunk_id < cfg.num_chunks:
            ignored.setdefault(fingerprint, []).append(path.name)
    return ignored


def foreign_message(results_dir: Path, path: Path, state: ChunkState, cfg: ExperimentConfig) -> str:
    old = find_snapshot(results_dir, state.fingerprint)
    if old is None:
        what = "its config snapshot is not in the folder, so the differing fields are unknown"
    else:
        what = "differing fields: " + "; ".join(diff_result_fields(old, cfg.result_fields()))
    return (f"{path} was made by a different experiment (fingerprint {state.fingerprint}, this run is "
            f"{cfg.fingerprint}); {what}. Nothing was loaded and nothing was overwritten. Start a separate "
            f"results folder with --vlm-results DIR (or results_dir in the config), or move the old files away.")
