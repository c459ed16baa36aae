"""`variant_<name>.json`: what each process measured when it loaded a variant, kept per process.

Why it exists: when one variant's chunks are split over two GPUs (pytest-xdist `-n 2`, or shards
with `--vlm-shard`), each process loads the variant itself, on its own GPU, possibly with its own
micro-batch (`micro_batch_size: auto` sizes it from that GPU's free memory). One record per
variant, written by each, would keep only the last writer's. So the file holds one record per
writer, keyed by who wrote it (`writer_key`: the `worker` and `gpu_uuid` that the chunk CSVs
carry too), and the summary combines the records of the processes that made its chunks:

    {"schema": "vlmbench.variant_record/2", "variant": "fp16",
     "writers": {"gw0 on GPU-1a2b...": {<record>}, "gw1 on GPU-3c4d...": {<record>}}}

- Writing (`merge_variant_record`): read, add or replace this writer's record, write atomically,
  all under `lock.folder_guard` (a short flock on the folder; xdist workers hold no folder lock).
  Records of another experiment or variant definition (the variant's config fingerprint) are dropped. A process that loads the variant
  again (a rerun) replaces its own record.
- Reading (`read_variant_records`): writer key -> record. A file of an older vlmbench (one flat
  record) is read as one writer.
- Combining (`combined_record`): a field on which the writers agree keeps its value; a field on
  which they differ is null, with a `<field>_null_reason` listing each writer's value, and is named
  in `writers_differ`; `writers` lists who made the chunks.
"""
from __future__ import annotations

import json
from pathlib import Path

from vlmbench.results.records import variant_record_path, write_json

SCHEMA = "vlmbench.variant_record/2"
# how the variant was run: writers that differ here made chunks that are not alike (a WARNING under the table)
SETTING_FIELDS = ("census", "dtype", "device", "engine", "micro_batch_size", "micro_batch_size_source",
                  "model_size_mb", "decode_workers", "prefetch_batches", "cpu_threads")
# measured once per load: writers differ as a matter of course (each loads on its own GPU)
LOAD_FIELDS = ("weights_mib", "idle_power_w", "load_s", "micro_batch_size_reason", "warmup_s", "compile_cache")
# what the variant's numbers cannot be read as (e.g. a library defect on this device), found when it loaded
QUALITY_FIELDS = ("quality_warning",)
SUMMARY_FIELDS = SETTING_FIELDS + LOAD_FIELDS + QUALITY_FIELDS


def writer_key(worker, gpu_uuid) -> str:
    """Who loaded a variant or made a chunk: '<worker> on <GPU UUID>', or '<worker> on CPU' without a GPU."""
    return f"{worker or 'main'} on {gpu_uuid or 'CPU'}"


def merge_variant_record(results_dir: Path, record: dict) -> None:
    """Adds (or replaces) this writer's `record` (with `variant`, `worker`, `gpu_uuid`, the variant's `config_fingerprint`)
    in `variant_<name>.json`, under the folder guard; an unreadable old file is replaced."""
    from vlmbench.results.lock import folder_guard
    path = variant_record_path(results_dir, record["variant"])
    with folder_guard(results_dir):
        try:
            writers = read_writers(path)
        except (ValueError, AttributeError):  # hand-edited or of an unknown shape: replaced, as before
            writers = {}
        writers = {k: w for k, w in writers.items() if w.get("config_fingerprint") == record["config_fingerprint"]}
        writers[writer_key(record.get("worker"), record.get("gpu_uuid"))] = record
        write_json(path, {"schema": SCHEMA, "variant": record["variant"], "writers": writers})


def read_variant_records(results_dir: Path, variant: str) -> dict[str, dict]:
    """writer key -> record ({} when the variant was never loaded here); ValueError on a broken file."""
    return read_writers(variant_record_path(results_dir, variant))


def read_writers(path: Path) -> dict[str, dict]:
    """writer key -> record; ValueError when the file is not JSON or not a regular file (a FIFO is not opened)."""
    from vlmbench.paths import read_regular_text
    try:
        data = json.loads(read_regular_text(path))
    except FileNotFoundError:
        return {}
    if "writers" in data:  # keyed again from each record, so keys of an older vlmbench ('no GPU UUID') match
        return {writer_key(w.get("worker"), w.get("gpu_uuid")) if "worker" in w else k: w
                for k, w in data["writers"].items()}
    return {writer_key(data.get("worker"), data.get("gpu_uuid")): data}  # one flat record: vlmbench before per-writer records


def combined_record(writers: dict[str, dict], chunk_writers: set[str], fingerprint: str, variant: str) -> dict:
    """The summary's fields from the records of the processes that made the chunks (`chunk_writers`, writer
    keys) with the variant's `fingerprint` (`ExperimentConfig.variant_fingerprint`); all its records of that
    fingerprint when the chunks do not name theirs (CSVs of older versions)."""
    ours = {k: w for k, w in writers.items() if w.get("config_fingerprint") in (None, fingerprint)}
    chosen = {k: w for k, w in ours.items() if k in chunk_writers} or ours
    if not chosen:
        return missing_record(variant, bool(writers))
    fields = {name: _combined_field(chosen, name) for name in SUMMARY_FIELDS if any(name in w for w in chosen.values())}
    combined = {key: value for cells, _ in fields.values() for key, value in cells.items()}
    return {**combined, "writers": sorted(chosen),
            "writers_differ": [name for name, (_, differs) in fields.items() if differs]}


def _combined_field(writers: dict[str, dict], name: str) -> tuple[dict, bool]:
    """({name: value[, name_null_reason: why]}, whether the writers disagree on it)."""
    values = {key: record.get(name) for key, record in writers.items()}
    if len({json.dumps(v, sort_keys=True, default=str) for v in values.values()}) > 1:
        shown = "; ".join(f"{key}: {json.dumps(value, default=str)}" for key, value in sorted(values.items()))
        return {name: None, f"{name}_null_reason": f"differs between the processes that made the chunks ({shown})"}, True
    value = next(iter(values.values()))
    reasons = sorted({r[f"{name}_null_reason"] for r in writers.values() if r.get(f"{name}_null_reason")})
    return {name: value, **({f"{name}_null_reason": "; ".join(reasons)} if value is None and reasons else {})}, False


def missing_record(variant: str, other_experiment: bool) -> dict:
    """The fields a summary takes from the record, null with the reason, when there is none for these chunks."""
    name = variant_record_path(Path("."), variant).name
    why = (f"{name} holds records of another experiment only; rerun one of the variant's chunks" if other_experiment
           else f"{name} missing: the variant was not loaded in this results folder; rerun one of its chunks")
    return {"model_size_mb": None, "model_size_mb_null_reason": why, "census": None, "weights_mib": None,
            "weights_mib_null_reason": why, "idle_power_w": None, "idle_power_w_null_reason": why, "writers": [],
            "writers_differ": []}


def gpu_of_records(records_by_variant: dict[str, dict[str, dict]]) -> dict:
    """GPU name and driver as the variant records saw them (the first that names one), null with the reason."""
    why = None
    for writers in records_by_variant.values():
        for record in writers.values():
            if record.get("gpu_name"):
                return {"gpu_name": record["gpu_name"], "driver": record.get("driver")}
            why = why or record.get("gpu_null_reason")
    return {"gpu_name": None, "driver": None, "gpu_null_reason": why or "no variant record names a GPU"}
