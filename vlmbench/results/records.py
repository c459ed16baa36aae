"""The results folder's files: chunk CSVs, variant records, config snapshots.

Why it exists: resuming is only safe if a CSV that looks finished is finished and belongs to this
experiment. Every write here is atomic (temporary file, then rename); every read checks columns,
rows, the image ids the chunk must hold and the config fingerprint, and says what is wrong.

Files, per results folder:
- `<variant>_batch_<id>.csv`: one row per image (columns in CSV_COLUMNS); chunk-level measurements
  repeat on each row in the `chunk_*` columns so that one file is the whole record of one chunk.
- `variant_<variant>.json`: what was measured when the variant loaded (census, size on disk, ...), one
  record per process that loaded it (written and read by `vlmbench/results/variant_records.py`).
- `experiment_config_<timestamp>.yaml`: the resolved config, its fingerprint and each variant's
  (`variant_fingerprints`, which chunk CSVs of user-defined variants carry), per run.

Proof of a chunk's rows (`chunk_sha256`, on every row): the SHA-256 of all its other cells, with their
column names, in the order written. A CSV whose rows do not hash to it (a caption edited, image ids
swapped, a cell corrupted after the write) is damaged: moved aside and recomputed, never used. CSVs
written before the digest existed (vlmbench before 2026-12-02) have no such column and are still
accepted when every other check passes, with a note that their rows are not proven: each is a finished
GPU hour, no committed result is such a file, and a digest is an integrity check, not a signature
(whoever edits a file by hand can recompute it), so refusing them would cost work and prove nothing
more. Delete one to have it recomputed with its digest.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from vlmbench.config import ExperimentConfig, config_to_yaml, differing_fields, shown
from vlmbench.paths import (NotARegularFile, atomic_write_text, link_new, read_regular_bytes,
                            read_regular_text, write_new)

IMAGE_COLUMNS = ["image_id", "file_name", "variant", "chunk_id", "status", "error", "caption", "generated_tokens",
                 "micro_batch_index", "micro_batch_size", "micro_batch_padding", "micro_batch_s", "latency_s"]
CHUNK_COLUMNS = ["chunk_wall_s", "chunk_images_ok", "chunk_throughput_img_s", "chunk_energy_j",
                 "chunk_energy_j_per_image", "chunk_avg_power_w", "chunk_peak_alloc_mib", "chunk_peak_reserved_mib",
                 "chunk_nvml_used_mib", "chunk_generate_s", "chunk_idle_share", "engine", "device", "device_name",
                 "gpu_uuid", "gpu_parent_uuid", "worker", "dtype", "measure_notes", "torch_version", "transformers_version",
                 "bitsandbytes_version", "chunk_sha256", "config_fingerprint"]
CSV_COLUMNS = IMAGE_COLUMNS + CHUNK_COLUMNS
# libraries whose version is recorded on every chunk (a summary over mixed versions says so)
VERSIONED_LIBRARIES = ("torch", "transformers", "bitsandbytes")
# columns added after the first release: a CSV without them is still complete (no GPU hour recomputed)
OPTIONAL_COLUMNS = tuple(f"{lib}_version" for lib in VERSIONED_LIBRARIES) + ("gpu_uuid", "gpu_parent_uuid", "worker", "chunk_sha256")
DIGEST_COLUMN = "chunk_sha256"
UNPROVEN_NOTE = "written before chunk digests (no chunk_sha256 column), so its rows are not proven unedited"
# vlmbench's writer puts no bound on a cell (a caption is as long as max_new_tokens lets it be), so its reader
# must have none either: Python's csv refuses a field over 131,072 characters by default, which made a long
# caption's chunk "damaged" on every rerun. The largest limit the C long of every platform holds is set
# deliberately, once, for this process; a field is no longer than its file, which is read into memory whole.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


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
    """The chunk's CSV, written atomically, each row carrying the digest of all rows (`rows_digest`)."""
    cells = [{k: _cell(row.get(k)) for k in CSV_COLUMNS if k != DIGEST_COLUMN} for row in rows]
    digest = rows_digest(cells)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="raise")
    writer.writeheader()
    for row in cells:
        writer.writerow({**row, DIGEST_COLUMN: digest})
    atomic_write_text(path, buffer.getvalue())


def rows_digest(rows: list[dict]) -> str:
    """SHA-256 (hex) of every cell of `rows` except the digest's own, as [column, text] pairs in row and
    column order: the same text the writer wrote and the reader reads back, so any edit changes it."""
    cells = [[[column, text] for column, text in row.items() if column != DIGEST_COLUMN] for row in rows]
    return hashlib.sha256(json.dumps(cells).encode("ascii")).hexdigest()


def json_text(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json_text(data))


def write_config_snapshot(results_dir: Path, cfg: ExperimentConfig, stamp: str, resolved: Optional[dict] = None) -> Path:
    """`experiment_config_<stamp>.yaml`, or `..._<stamp>_<n>.yaml` when a run of the same second has the name;
    the name appears only with the whole snapshot behind it (`paths.write_new`)."""
    data = config_to_yaml(cfg, resolved).encode("utf-8")
    return write_new(stamped_names(Path(results_dir), "experiment_config_", stamp, ".yaml"), data)


def stamped_names(folder: Path, prefix: str, stamp: str, suffix: str) -> list[Path]:
    """`<prefix><stamp><suffix>`, then `<prefix><stamp>_<n><suffix>` (n = 2, 3, ... 9999): the names a file of
    that stamp may take, first free one wins (`paths.write_new`), so two runs started in the same second (or
    shards of one run) get different names. `newest_first` orders these names."""
    return [Path(folder) / f"{prefix}{stamp}{'' if n == 1 else f'_{n}'}{suffix}" for n in range(1, 10000)]


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
    note: str = ""  # what a reader should know about a complete chunk (UNPROVEN_NOTE for a CSV without a digest)

    def failed_summary(self) -> str:
        """'2 failed rows (unavailable: 1, undecodable: 1)', or '' when every row is ok."""
        total = sum(self.failed.values())
        if not total:
            return ""
        kinds = ", ".join(f"{kind}: {count}" for kind, count in sorted(self.failed.items()))
        return f"{total} failed row{'s' if total > 1 else ''} ({kinds})"


class DamagedFile(ValueError):
    """A results-folder file that is not what its name promises (empty, unparsable, rows not matching their
    digest); the message names the file and what is wrong."""


def parse_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def read_chunk_csv(path: Path) -> list[dict]:
    """A chunk CSV's rows (as text); NotARegularFile for a FIFO or other non-file (never opened), DamagedFile
    when its rows do not match their digest."""
    rows = parse_csv(read_regular_text(path))
    problem = _digest_problem(rows)
    if problem:
        raise DamagedFile(f"{Path(path).name}: {problem}")
    return rows


def _digest_problem(rows: list[dict]) -> Optional[str]:
    """Why the rows are not the ones their writer wrote, or None (also for a CSV without a digest column)."""
    recorded = {row.get(DIGEST_COLUMN) for row in rows}
    if not rows or recorded == {None}:
        return None
    if len(recorded) == 1 and recorded.pop() == rows_digest(rows):
        return None
    return f"its rows do not match their {DIGEST_COLUMN} (edited or corrupted after it was written)"


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
        raw = read_regular_bytes(path)
        rows = parse_csv(raw.decode("utf-8"))
    except NotARegularFile as exc:
        return ChunkState("damaged", str(exc))
    except (csv.Error, UnicodeDecodeError, OSError) as exc:
        return ChunkState("damaged", f"unreadable: {exc}")
    problem = _structure_problem(raw, rows) or _digest_problem(rows) or _row_problem(rows, path, expected_ids)
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
                      rows=rows, note=UNPROVEN_NOTE if DIGEST_COLUMN not in rows[0] else "")


def quarantine(path: Path) -> Path:
    """Moves a damaged CSV (or whatever else has a chunk CSV's name: a FIFO is moved, never opened) aside
    as `<name>.damaged-<stamp>[_<n>]`, kept for inspection, so that the chunk is recomputed. The file is
    linked under the new name before the old name goes, so no empty placeholder ever appears."""
    for target in stamped_names(path.parent, f"{path.name}.damaged-", timestamp(), ""):
        if link_new(path, target):
            path.unlink(missing_ok=True)  # already gone where link_new had to rename
            return target
    raise FileExistsError(f"no free name {path.name}.damaged-<stamp>_<n> in {path.parent}")


def read_snapshot(path: Path) -> dict:
    """A config snapshot's data (a mapping with its `fingerprint`); DamagedFile naming it and what is wrong
    (empty: a run killed while writing it with an older vlmbench; not YAML; not a snapshot; not a file)."""
    from vlmbench.strictyaml import strict_load
    try:
        text = read_regular_text(path)
        data = strict_load(text) if text.strip() else None
    except (OSError, UnicodeDecodeError, NotARegularFile, yaml.YAMLError, RecursionError) as exc:
        raise DamagedFile(f"{Path(path).name} is unreadable ({type(exc).__name__}: "
                          f"{' '.join(str(exc).split())[:160]})") from None
    if not text.strip():
        raise DamagedFile(f"{Path(path).name} is empty")
    if not isinstance(data, dict) or not isinstance(data.get("fingerprint"), str):
        raise DamagedFile(f"{Path(path).name} is not a config snapshot (no fingerprint in it)")
    return data


def readable_snapshots(results_dir: Path) -> tuple[list[tuple[Path, dict]], list[str]]:
    """The folder's config snapshots, newest first, as (path, data), and one line per damaged one skipped."""
    readable, damaged = [], []
    for path in newest_first(Path(results_dir).glob("experiment_config_*.yaml")):
        try:
            readable.append((path, read_snapshot(path)))
        except DamagedFile as exc:
            damaged.append(str(exc))
    return readable, damaged


def find_snapshot(results_dir: Path, fingerprint: str, variant: Optional[str] = None) -> Optional[dict]:
    """The result fields of the newest readable config snapshot in `results_dir` that carries `fingerprint`
    as the experiment's or, with `variant`, as that variant's; with `variant`, its fields as that variant's
    fingerprint hashes them (`ExperimentConfig.variant_fields`), so its definition is compared too."""
    from vlmbench.config import ConfigError, from_plain
    for _, data in readable_snapshots(results_dir)[0]:
        if fingerprint in snapshot_fingerprints(data, variant):
            try:
                old = from_plain(data)
            except ConfigError:  # a snapshot from an older vlmbench: no field diff then
                return None
            return old.variant_fields(variant) if variant is not None else old.result_fields()
    return None


def snapshot_fingerprints(data: dict, variant: Optional[str] = None) -> set[str]:
    """The fingerprints a snapshot recorded: the experiment's, and `variant`'s (every variant's when None).
    Snapshots of vlmbench before per-variant fingerprints have the experiment's only."""
    recorded = data.get("variant_fingerprints")
    recorded = recorded if isinstance(recorded, dict) else {}
    per_variant = recorded.values() if variant is None else [recorded.get(variant)]
    return {data["fingerprint"], *(f for f in per_variant if isinstance(f, str))}


def snapshots_by_fingerprint(results_dir: Path, variants: bool = False) -> dict[str, Path]:
    """fingerprint -> the newest readable config snapshot in the folder that carries it; with `variants`,
    also each variant fingerprint it recorded (to find the snapshot of any chunk CSV)."""
    found: dict[str, Path] = {}
    for path, data in readable_snapshots(results_dir)[0]:
        for fingerprint in (snapshot_fingerprints(data) if variants else [data["fingerprint"]]):
            found.setdefault(fingerprint, path)
    return found


def first_row_fingerprint(path: Path) -> str:
    """The config fingerprint in a CSV's first row ('unreadable' when there is none; a FIFO is not opened)."""
    try:
        row = next(iter(parse_csv(read_regular_text(path))), None)
    except (OSError, UnicodeDecodeError, csv.Error, NotARegularFile):
        row = None
    return (row or {}).get("config_fingerprint") or "unreadable"


def ignored_chunk_csvs(results_dir: Path, cfg: ExperimentConfig, used=frozenset()) -> dict[str, list[str]]:
    """Chunk CSVs in the folder that a report of `cfg` does not read, by their fingerprint (another experiment,
    another definition of the variant, or this one's fingerprint for a variant or chunk outside `cfg`).
    `used`: the (variant, chunk id) the report read, not opened again."""
    ignored: dict[str, list[str]] = {}
    for path in sorted(Path(results_dir).glob("*_batch_*.csv")):
        variant, chunk_id = chunk_of_path(path)
        if (variant, chunk_id) in used:
            continue
        fingerprint = first_row_fingerprint(path)
        if variant not in cfg.variants or not 0 <= chunk_id < cfg.num_chunks \
                or fingerprint != cfg.variant_fingerprint(variant):
            ignored.setdefault(fingerprint, []).append(path.name)
    return ignored


KEEP_FOLDER = "Nothing was loaded and nothing was overwritten."


def foreign_message(results_dir: Path, path: Path, state: ChunkState, cfg: ExperimentConfig) -> str:
    """Why the run stops at a chunk CSV of another fingerprint, with the fields that differ from those its
    snapshot recorded. Compared as the variant's fingerprint hashes them, so a changed definition is named as
    such, and the other variants' chunks are said to stay valid."""
    variant, _ = chunk_of_path(path)
    ours = cfg.variant_fingerprint(variant)
    old = find_snapshot(results_dir, state.fingerprint, variant)
    diff = differing_fields(old, cfg.variant_fields(variant)) if old is not None else {}
    if diff and all(key.startswith("variant_definitions.") for key in diff):
        return _definition_changed_message(path, variant, state.fingerprint, ours, list(diff.values()))
    if old is None:
        what = "its config snapshot is not in the folder, so the differing fields are unknown"
        damaged = readable_snapshots(results_dir)[1]
        if damaged:
            what += f" (damaged snapshot(s) skipped: {'; '.join(damaged[:3])}{'; ...' if len(damaged) > 3 else ''})"
    elif not diff:
        what = ("its snapshot's fields are this run's: it was fingerprinted by a vlmbench before per-variant "
                "fingerprints, which hashed every variant definition into the experiment's, so it cannot be "
                "told apart from a chunk of another definition and must be recomputed")
    else:
        what = "differing fields: " + "; ".join(diff.values())
    return (f"{path} was made by a different experiment (fingerprint {state.fingerprint}, this run is "
            f"{ours}); {what}. {KEEP_FOLDER} Start a separate "
            f"results folder with --vlm-results DIR (or results_dir in the config), or move the old files away.")


def _definition_changed_message(path: Path, variant: str, theirs: str, ours: str, changes: list[str]) -> str:
    """The experiment is the same; only `variant`'s definition differs: say which, and the two ways on."""
    return (f"{path} was made with another definition of variant {variant!r} (fingerprint {theirs}, this run's "
            f"{variant} is {ours}); changed definition: {'; '.join(changes)}. The other variants' finished chunks "
            f"are unaffected. {KEEP_FOLDER} Give the new definition its own variant name (its chunks are then "
            f"computed beside the old ones), or move {variant}_batch_*.csv out of {path.parent} to recompute "
            f"{variant} with the new definition.")
