"""One benchmark run's state: config, rows, chunks, the device, and what each chunk case does.

Why it exists: the pytest plugin only wires hooks and fixtures; this module holds the decisions
(which chunks are done, which CSVs are damaged or foreign, how a variant is loaded and warmed up,
how a chunk becomes a CSV) so that they can be read and tested without pytest's machinery.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Optional

from vlmbench.quantize.census import check_census, take_census
from vlmbench.config import ConfigError, ExperimentConfig
from vlmbench.data.sources import ImageRow, load_rows, make_chunks
from vlmbench.run.measure import Nvml, Reading, allocated_mib, checkpoint_size_mb, idle_power, size_on_disk_mb, timed
from vlmbench.paths import cache_dir, sweep_leftovers
from vlmbench.results.records import (chunk_csv_path, foreign_message, inspect_chunk, library_versions, quarantine, timestamp,
                              write_chunk_csv, write_config_snapshot)
from vlmbench.results.variant_records import merge_variant_record
from vlmbench.results.summary import stopped_latency_runs
from vlmbench.quantize.variants import compute_dtype, get_variant, unrunnable_reason


@dataclass
class LoadedVariant:
    name: str
    model: object
    captioner: object
    warmed_up: bool = False
    record: dict = field(default_factory=dict)  # what load_variant wrote to variant_<name>.json (warm-up adds to it)


@dataclass
class BenchSession:
    cfg: ExperimentConfig
    results_dir: Path
    stamp: str = field(default_factory=timestamp)
    started_at: float = field(default_factory=time.time)
    notes: list[str] = field(default_factory=list)
    _availability: dict[int, bool] = field(default_factory=dict, repr=False)
    lock: Optional[object] = None  # the FolderLock held from collection to the end of the session
    chunk_states: dict = field(default_factory=dict)  # (variant, chunk id) -> ChunkState, read before any write
    snapshot: Optional[Path] = None  # this run's experiment_config_*.yaml
    progress_sink: Optional[Callable[[str], None]] = None  # live progress lines (default: sys.__stderr__)
    model_identified: bool = False  # model.identity is in cfg (resolved here, or given by the xdist controller)
    checked_rows: Optional[list] = field(default=None, repr=False)  # rows load_rows already gave for this cfg

    def __post_init__(self):
        """Resolves `inference.engine: auto` for this machine, so that the fingerprint and the snapshot
        hold the engine actually used."""
        self.requested_engine = self.cfg.inference.engine
        self.cfg = self.cfg.with_engine(self.device)
        self.refuse_unrunnable_variants()
        self.notes += baseline_notes(self.cfg)
    worker: str = "main"  # who computes chunks here: "main", an xdist worker id, "shard 1/4 gw0", ...

    # ------------------------------------------------------------ lazily built state (first use only)
    @cached_property
    def rows(self) -> list[ImageRow]:
        """The experiment's rows: those the plugin loaded and checked before importing torch, else loaded now."""
        return self.checked_rows if self.checked_rows is not None else load_rows(self.cfg)

    @cached_property
    def chunks(self) -> list[list[ImageRow]]:
        return make_chunks(self.rows, self.cfg.inference.batch_size)

    @cached_property
    def device(self) -> str:
        from vlmbench.models.loading import resolve_device
        return resolve_device(self.cfg)

    @cached_property
    def nvml(self) -> Nvml:
        return Nvml(self.device, energy=self.cfg.measure.energy)

    @cached_property
    def processor(self):
        from vlmbench.models.loading import build_processor
        return build_processor(self.cfg)

    # ------------------------------------------------------------ before any model loads
    # Order (plugin.pytest_collection_modifyitems): identify_model -> claim_folder -> check_chunks -> preflight -> start.
    # Everything before start() only reads (and holds the lock), so a refused run leaves the folder
    # as it found it; start() makes the run's first writes.
    def identify_model(self) -> None:
        """Puts the model's identity (resolved Hub commit or local folder digest) into the config, so that
        it enters the fingerprint before the folder lock and the chunk checks read it. Resolves once per
        session (a Hub model: one lookup); ConfigError, naming the fix, when it cannot be resolved or when
        inference.max_new_tokens cannot fit in the model's context (models/context.py), or when the model's family
        is not one vlmbench knows (models/families.py: refused before any quantization config is built)."""
        from vlmbench.models.context import check_new_tokens_fit
        from vlmbench.models.loading import model_family, model_identity
        if not self.model_identified:
            self.use_model_identity(model_identity(self.cfg))
            model_family(self.cfg)  # the model's config.json is readable now (a Hub one is cached)
            check_new_tokens_fit(self.cfg)

    def use_model_identity(self, identity: str | None) -> None:
        """Puts an identity resolved elsewhere (an xdist worker gets its controller's) into the config and
        resolves nothing, so every process of one run shares one fingerprint even if a Hub branch moves."""
        from vlmbench.models.loading import with_identity
        self.cfg = with_identity(self.cfg, identity)
        self.model_identified = True

    def claim_folder(self, shared: bool = False, locking: bool = True) -> None:
        """Checks the results folder and takes its lock (none with `locking` False: --vlm-no-folder-lock);
        FolderUnusable (LockUnsupported on a file system without flock) or FolderBusy (one line) otherwise."""
        from vlmbench.results.lock import folder_lock
        if self.lock is None:
            self.lock = folder_lock(self.results_dir, self.cfg.fingerprint, shared, locking=locking).acquire()
            self.notes += self.lock.notes

    def release_folder(self, refused: bool = False) -> None:
        """Leaves the lock (the last holder removes the lock file); a refused run removes a folder it created."""
        if self.lock is not None:
            self.lock.release()
            if refused and self.lock.created_folder:
                try:
                    self.results_dir.rmdir()  # only when still empty
                except OSError:
                    pass
            self.lock = None

    def check_chunks(self, keys) -> dict:
        """(variant, chunk id) -> ChunkState for each selected chunk, each checked against its variant's
        fingerprint; ConfigError on a foreign CSV. Writes nothing."""
        for variant, chunk_id in keys:
            self.chunk_state(variant, chunk_id)
        return {key: self.chunk_states[key] for key in keys}

    def chunk_state(self, variant: str, chunk_id: int):
        key = (variant, chunk_id)
        if key not in self.chunk_states:
            path = chunk_csv_path(self.results_dir, variant, chunk_id)
            state = inspect_chunk(path, [r.image_id for r in self.chunks[chunk_id]], self.cfg.variant_fingerprint(variant))
            if state.status == "foreign":
                raise ConfigError(foreign_message(self.results_dir, path, state, self.cfg))
            self.chunk_states[key] = state
        return self.chunk_states[key]

    def chunk_is_done(self, variant: str, chunk_id: int) -> bool:
        """True for a complete CSV of this experiment (a damaged one is moved aside by start())."""
        return self.chunk_state(variant, chunk_id).status == "complete"

    def start(self) -> None:
        """The run's first writes, once every check passed: leftovers of dead runs removed, damaged CSVs
        moved aside, the config snapshot and references.json written."""
        from vlmbench.results.references import write_references
        rows = self.rows  # resolves the data source (a Hub download) before the snapshot records it
        self.remove_leftovers()
        for (variant, chunk_id), state in self.chunk_states.items():
            if state.status == "damaged":
                self._set_aside(variant, chunk_id, state.reason)
        self.snapshot = write_config_snapshot(self.results_dir, self.cfg, self.stamp, self.resolved())
        write_references(self.results_dir, rows)

    def _set_aside(self, variant: str, chunk_id: int, reason: str) -> None:
        try:
            moved = quarantine(chunk_csv_path(self.results_dir, variant, chunk_id))
        except FileNotFoundError:  # another worker of this experiment (shared folder) moved it first
            return
        self.notes.append(f"{variant}_batch_{chunk_id}.csv was damaged ({reason}); moved to {moved.name} and recomputed")

    def remove_leftovers(self) -> None:
        """Removes temporary files of killed runs: in the results folder (and plots/), the random-weight and
        sample caches' staging folders, size-on-disk copies and the image cache's partial downloads."""
        from vlmbench.data.fetch import image_cache_for
        from vlmbench.run.measure import size_on_disk_folder
        removed = sweep_leftovers(self.results_dir) + sweep_leftovers(self.results_dir / "plots")
        for folder in (cache_dir("random-weights"), cache_dir("synthetic"), size_on_disk_folder()):
            removed += sweep_leftovers(folder)
        removed += sweep_leftovers(image_cache_for(self.cfg).root, depth=2)
        if removed:
            self.notes.append(f"removed {len(removed)} temporary file(s) left by killed runs "
                              f"(e.g. {removed[0]})")

    def resolved(self) -> dict:
        """What this run resolved beyond its config: the Hub commit read, the image ids chosen and the digest
        of the references.json it writes (checked before every report)."""
        from vlmbench.data.hub import recorded_revision
        from vlmbench.results.references import image_ids_digest, references_digest, references_payload
        ids = [r.image_id for r in self.rows]
        resolved = {"engine_requested": self.requested_engine, "engine": self.cfg.inference.engine,
                    "images": len(ids), "image_ids_sha256": image_ids_digest(ids),
                    "references_sha256": references_digest(references_payload(self.rows)),
                    "first_image_ids": ids[:10]}
        if not any(getattr(self.cfg.dataset, k) is not None for k in ("parquet_path", "coco_dir", "synthetic_images")):
            resolved["hub_revision"] = recorded_revision(self.cfg.dataset)
        if (self.cfg.model.identity or "").startswith("hub:"):
            resolved["model_revision"] = self.cfg.model.identity.removeprefix("hub:")
        return resolved

    def skip_reason(self, variant: str, chunk_id: int) -> Optional[str]:
        """Why the chunk's case is skipped (a complete CSV of this experiment), or None to run it.

        A damaged CSV gives None (start() moves it aside); a foreign one raises ConfigError. A complete one whose
        rows failed because an image was unavailable is run again when those images can now be had
        (dataset.retry_unavailable_images); its old CSV stays until the new one replaces it.
        """
        path = chunk_csv_path(self.results_dir, variant, chunk_id)
        state = self.chunk_state(variant, chunk_id)
        if state.status != "complete" or self._retries_unavailable(path.name, state):
            return None
        note = f"; {state.note}" if state.note else ""
        stopped = stopped_latency_runs(state.rows[:1])
        note += f"; {stopped[0].split(': ', 1)[1]}" if stopped else ""
        return f"{path.name} is complete for this experiment{self._failed_rows_note(state)}{note} (delete it to recompute)"

    def _retries_unavailable(self, csv_name: str, state) -> bool:
        if not state.unavailable_ids or not self.cfg.dataset.retry_unavailable_images:
            return False
        back = [i for i in state.unavailable_ids if self._image_available(i)]
        if back:
            self.notes.append(f"{csv_name}: {len(back)} of its {len(state.unavailable_ids)} rows that failed because "
                              "the image was unavailable can now be had; the chunk is recomputed (set "
                              "dataset.retry_unavailable_images: false to keep finished chunks as they are)")
        return bool(back)

    def _image_available(self, image_id: int) -> bool:
        """Whether an image that once failed as unavailable can be had now (checked once per session)."""
        if image_id not in self._availability:
            from vlmbench.data.preflight import now_available
            row = self.row_by_id[image_id]
            self._availability[image_id] = bool(now_available(self.cfg, [row]))
        return self._availability[image_id]

    def _failed_rows_note(self, state) -> str:
        summary = state.failed_summary()
        if not summary:
            return ""
        if not state.unavailable_ids:
            return f", with {summary}"
        why = ("their images are still unavailable" if self.cfg.dataset.retry_unavailable_images
               else "kept: dataset.retry_unavailable_images is false")
        return f", with {summary}; {len(state.unavailable_ids)} unavailable: {why}"

    @cached_property
    def row_by_id(self) -> dict[int, ImageRow]:
        return {r.image_id: r for r in self.rows}

    def fresh_chunk_status(self, variant: str, chunk_id: int) -> str:
        """The CSV's status read now ("complete", "missing", "damaged", "foreign"); never cached, never raises,
        writes nothing (xdist workers' collection, the re-check after a claim)."""
        return self.fresh_chunk_state(variant, chunk_id).status

    def fresh_chunk_state(self, variant: str, chunk_id: int):
        """The CSV's ChunkState read now (a complete one carries its rows); never cached, never raises."""
        path = chunk_csv_path(self.results_dir, variant, chunk_id)
        return inspect_chunk(path, [r.image_id for r in self.chunks[chunk_id]], self.cfg.variant_fingerprint(variant))

    @cached_property
    def idle_power(self) -> Reading:
        """The GPU's power before this process ran anything on it (read at first use)."""
        return idle_power(self.nvml)

    def read_idle_power(self) -> Reading:
        return self.idle_power

    # ------------------------------------------------------------ variants
    def variant(self, name: str):
        """The Variant `name`: built in, or declared by the config's variant_definitions."""
        return get_variant(name, self.cfg.variant_definitions)

    def refuse_unrunnable_variants(self) -> None:
        """ConfigError before any model loads when a variant's method cannot run on this device (fp8 on a CPU,
        a prequantized checkpoint whose package is missing), naming the requirement."""
        variants = [self.variant(name) for name in self.cfg.variants]
        capability = self._capability_if_needed(variants)
        reasons = [unrunnable_reason(v, self.device, capability) for v in variants] + [self._attention_refusal()]
        reasons = [r for r in reasons if r]
        if reasons:
            these = "these variants" if len(reasons) > 1 else "this variant"
            raise ConfigError("; ".join(reasons) + f". Remove {these} or run on a machine that has what "
                              f"{'they need' if len(reasons) > 1 else 'it needs'}.")

    def _attention_refusal(self) -> Optional[str]:
        """Why model.attn_implementation cannot run here (flash_attention_2 without flash_attn, a CUDA device or
        a family that supports it); None when it can."""
        from vlmbench.models.loading import attention_refusal
        return attention_refusal(self.cfg, self.device)

    def _capability_if_needed(self, variants) -> Optional[tuple]:
        """The GPU's compute capability when a variant's method needs one (reading it starts CUDA), else None."""
        needs = any(v.quantized and v.method_spec().min_compute_capability for v in variants)
        if not needs or self.device != "cuda":
            return None
        import torch
        return torch.cuda.get_device_capability()

    def load_variant(self, name: str) -> LoadedVariant:
        from vlmbench.engines import build_engine
        from vlmbench.models.loading import hub_commit, load_variant_model, weights_dir
        from vlmbench.run.runner import Captioner

        variant = self.variant(name)
        threads = self.cpu_threads()
        source, revision = variant.model_id, variant.revision  # a prequantized checkpoint, else the run's model
        if source is None:
            source = weights_dir(self.cfg, self.processor, self.device)
            revision = hub_commit(self.cfg) if self.cfg.model.weights == "pretrained" else None
        model, load_s = timed(self.device, load_variant_model, self.cfg, variant, source, self.device, revision)
        from vlmbench.quantize.bnb import cpu_4bit_quality_warning
        census = take_census(model, variant)
        check_census(census, variant)
        quality_warning = cpu_4bit_quality_warning(model, self.device)  # None unless its captions cannot be trusted
        engine = build_engine(self.cfg.inference.engine, model, self.processor, self.cfg, variant, self.device)
        micro = self.micro_batch_for(variant)
        captioner = Captioner(model, self.processor, self.cfg, self.device, engine, micro.size, self.progress_sink)
        record = {"variant": name, "description": variant.description, "family": model.config.model_type,
                  "census": census, "quality_warning": quality_warning, "load_s": load_s,
                  "end_token_ids": list(captioner.end_tokens), "end_tokens": list(captioner.end_tokens.values()),
                  "weights_mib": allocated_mib(self.device), "model_size_mb": self.size_on_disk(model, variant),
                  "idle_power_w": self.idle_power,
                  "device": self.device, "dtype": compute_dtype(variant, self.cfg.precision.language_model),
                  "micro_batch_size": micro.size, "micro_batch_size_source": micro.source,
                  "micro_batch_size_reason": micro.reason, "engine": engine.report, "worker": self.worker,
                  "decode_workers": self.cfg.inference.decode_workers,  # speed settings outside the fingerprint:
                  "prefetch_batches": self.cfg.inference.prefetch_batches,  # what made these chunks, not this run
                  "config_fingerprint": self.cfg.variant_fingerprint(name),  # its chunks' (merge drops others)
                  **threads, **self.nvml.device_info()}
        merge_variant_record(self.results_dir, _plain(record))  # beside the records of other workers and GPUs
        return LoadedVariant(name, model, captioner, record=record)

    def size_on_disk(self, model, variant):
        """Size on disk (MB): a prequantized checkpoint folder's own files; otherwise what save_pretrained writes."""
        if self.cfg.measure.model_size and variant.model_id and Path(variant.model_id).is_dir():
            return checkpoint_size_mb(Path(variant.model_id))
        return size_on_disk_mb(model, self.cfg.measure.model_size)

    def cpu_threads(self) -> dict:
        """On a CPU run, sets torch's thread count (inference.cpu_threads, else half the usable cores); the
        record fields saying what the variant ran with. On CUDA torch's default stays (null with the reason)."""
        from vlmbench.run.measure import set_cpu_threads
        if self.device == "cpu":
            return set_cpu_threads(self.cfg.inference.cpu_threads)
        return {"cpu_threads": None, "cpu_threads_null_reason": f"not set on a {self.device} run (torch's default)"}

    def micro_batch_for(self, variant):
        """The variant's micro-batch: configured, or sized from the free device memory after loading."""
        from vlmbench.engines.batch_size import choose_micro_batch, free_device_mib
        configured = self.cfg.inference.micro_batch_size
        tokens = self.prefill_tokens if configured is None and self.device == "cuda" else 0
        return choose_micro_batch(configured, self.device, free_device_mib(self.device), tokens,
                                  variant.method == "int8", self.cfg.inference.batch_size)

    @cached_property
    def prefill_tokens(self) -> int:
        """One image's prefill length at inference.img_size, counted by this run's processor (sizes micro-batches)."""
        from vlmbench.engines.batch_size import prefill_tokens_per_image
        from vlmbench.run.runner import prompt_text
        prompt = prompt_text(self.processor, self.cfg)
        return prefill_tokens_per_image(self.processor, prompt, self.cfg.inference.img_size)

    # ------------------------------------------------------------ one chunk case
    def run_chunk(self, loaded: LoadedVariant, chunk_id: int) -> list[dict]:
        """Warm-up, captioning pass, latency runs and the CSV: what one benchmark case does."""
        self.warm_up(loaded, chunk_id)
        return self.finish_chunk(loaded, chunk_id, self.caption_chunk(loaded, chunk_id))

    def warm_up(self, loaded: LoadedVariant, chunk_id: int) -> None:
        """Untimed: the variant's first generate calls (compilation of each shape included), once per variant:
        measure.warmup_batches micro-batches, and one single image when measure.latency_images > 0, so that
        the batch-1 compilation is done (and counted in `warmup_s`) before the captioning pass, not after it."""
        if not loaded.warmed_up:
            from vlmbench.engines.compile_cache import cache_counts
            before = cache_counts()
            measure = self.cfg.measure
            _, seconds = timed(self.device, loaded.captioner.warm_up, self.chunks[chunk_id], measure.warmup_batches,
                               latency_images=measure.latency_images)
            loaded.warmed_up = True
            self.record_warm_up(loaded, seconds, before)

    def record_warm_up(self, loaded: LoadedVariant, seconds: float, counts_before: dict) -> None:
        """Adds `warmup_s` (every compilation included, batch 1's too) and `compile_cache` (whether torch's
        compile caches were warm, their hit and miss counts, the folder) to this process's record in
        variant_<name>.json."""
        import os
        from vlmbench.engines.compile_cache import CACHE_ENV, cache_counts, cache_state
        cache = {**cache_state(counts_before, cache_counts()), "dir": os.environ.get(CACHE_ENV)}
        loaded.record = {**loaded.record, "warmup_s": seconds, "compile_cache": cache}
        merge_variant_record(self.results_dir, _plain(loaded.record))

    def caption_chunk(self, loaded: LoadedVariant, chunk_id: int):
        """The captioning pass alone: what pytest-benchmark times."""
        label = f"{loaded.name} chunk {chunk_id}"
        return loaded.captioner.caption_chunk(self.chunks[chunk_id], self.nvml, label)

    def finish_chunk(self, loaded: LoadedVariant, chunk_id: int, result) -> list[dict]:
        """Batch-1 latency runs on a few of the chunk's images, then the chunk's CSV; returns its rows.

        The CSV is written even when the latency runs are interrupted (KeyboardInterrupt: a run's window
        ending) or raise: the captioning pass is measured by then and is kept, with `latency_s` empty for
        the images not timed and measure_notes' `latency_runs` saying why; the interruption or error is then
        raised again, so that the run stops as asked (the CSV is complete: a rerun does not repeat the chunk).
        """
        latencies, stopped = self.latency_runs(loaded, self.chunks[chunk_id])
        records = self._chunk_records(loaded, chunk_id, result, latencies, stopped)
        write_chunk_csv(chunk_csv_path(self.results_dir, loaded.name, chunk_id), records)
        if stopped is not None:
            raise stopped
        return records

    def latency_runs(self, loaded: LoadedVariant, rows: list[ImageRow]) -> tuple[dict, Optional[BaseException]]:
        """image id -> seconds for each image timed alone, and what stopped the runs early (None if nothing did)."""
        latencies = {}
        try:
            for image_id, seconds in loaded.captioner.timed_alone(rows, self.cfg.measure.latency_images):
                latencies[image_id] = seconds
        except BaseException as exc:  # KeyboardInterrupt included: finish_chunk writes the CSV, then raises it
            return latencies, exc
        return latencies, None

    def _chunk_records(self, loaded: LoadedVariant, chunk_id: int, result, latencies: dict,
                       stopped: Optional[BaseException]) -> list[dict]:
        """The CSV's rows in chunk order: each image's cells, its latency (None when not timed), the chunk's cells."""
        dtype = compute_dtype(self.variant(loaded.name), self.cfg.precision.language_model)
        cells = self._chunk_cells(loaded.name, result.metrics, dtype)
        cells["measure_notes"] = _with_latency_note(cells["measure_notes"], len(latencies),
                                                    self.cfg.measure.latency_images, stopped)
        return [{**row, "variant": loaded.name, "chunk_id": chunk_id, "latency_s": latencies.get(row["image_id"]),
                 **cells} for row in _in_chunk_order(result.rows, self.chunks[chunk_id])]

    def _chunk_cells(self, variant: str, metrics: dict[str, Reading], dtype: str) -> dict:
        """The chunk-level cells repeated on every row; `config_fingerprint` is the variant's, so that a chunk
        stays this experiment's when other variants are declared or redefined."""
        metrics = {**metrics, "nvml_used_mib": self.nvml.process_used_mib()}
        notes = {f"chunk_{k}": v.reason for k, v in metrics.items() if v.value is None}
        if self.nvml.uuid is None:
            notes["gpu_uuid"] = self.nvml.reason
        return {**{f"chunk_{k}": v.value for k, v in metrics.items()}, "engine": self.cfg.inference.engine,
                "device": self.device,
                "device_name": self.device_name, "gpu_uuid": self.nvml.uuid,
                "gpu_parent_uuid": self.nvml.parent_uuid, "worker": self.worker, "dtype": dtype,
                "measure_notes": json.dumps(notes, sort_keys=True), **self.library_versions,
                "config_fingerprint": self.cfg.variant_fingerprint(variant)}

    @cached_property
    def library_versions(self) -> dict:
        """torch / transformers / bitsandbytes versions, read once per session (recorded on every chunk)."""
        return library_versions()

    @cached_property
    def device_name(self) -> str:
        """NVML's GPU name, torch's when NVML cannot say, 'cpu' without a GPU (queried once per session)."""
        if self.device != "cuda":
            return "cpu"
        import torch
        return self.nvml.device_info()["gpu_name"] or torch.cuda.get_device_name()


def baseline_notes(cfg: ExperimentConfig) -> list[str]:
    """A line, said before anything runs, when the baseline is not among the variants (`baseline` unset: fp16):
    every delta, the gate and the Pareto lines would then be n/a, which a trial found only at the end of a run."""
    if cfg.baseline_variant in cfg.variants:
        return []
    return [f"the baseline {cfg.baseline_variant!r} is not in variants ({', '.join(cfg.variants)}): every delta against "
            f"it will be n/a; add {cfg.baseline_variant} to variants, or set baseline to one of them"]


def _in_chunk_order(result_rows: list[dict], chunk_rows: list[ImageRow]) -> list[dict]:
    by_id = {r["image_id"]: r for r in result_rows}
    return [by_id[r.image_id] for r in chunk_rows]


def _plain(value):
    """Readings become {value, reason}-free plain numbers with a sibling `<key>_null_reason`."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if isinstance(item, Reading):
                out[key] = item.value
                if item.value is None:
                    out[f"{key}_null_reason"] = item.reason
            else:
                out[key] = _plain(item)
        return out
    return value


def _with_latency_note(notes_json: str, timed: int, asked: int, stopped: Optional[BaseException] = None) -> str:
    """measure_notes with why most `latency_s` cells are empty: only `timed` images were timed alone; and, when
    the latency runs were stopped early, `latency_runs` saying how (the summary's reason for a null latency)."""
    notes = json.loads(notes_json)
    notes["latency_s"] = (f"timed alone (micro-batch 1) for the first {timed} readable image(s) of the chunk only "
                          f"(measure.latency_images: {asked}); empty for the others")
    if stopped is not None:
        notes["latency_runs"] = latency_runs_note(timed, asked, stopped)
    return json.dumps(notes, sort_keys=True)


def latency_runs_note(timed: int, asked: int, stopped: BaseException) -> str:
    """'latency runs interrupted after 1 of 3 images: KeyboardInterrupt' (or 'failed ...: Error: its first line')."""
    how = "interrupted" if isinstance(stopped, KeyboardInterrupt) else "failed"
    message = (str(stopped).splitlines() or [""])[0][:200]
    return f"latency runs {how} after {timed} of {asked} images: {type(stopped).__name__}" + (
        f": {message}" if message else "")
