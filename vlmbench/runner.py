"""Captioning one chunk: prefetched, preprocessed micro-batches through greedy `generate`.

Why it exists: this is the hot loop of the benchmark. Images are read, decoded and preprocessed on
worker threads ahead of the device so that it never waits on disk or the network; each micro-batch
is left-padded, generated greedily with explicit generation settings, and decoded; every image
becomes one row, a failed image included (with its reason). Latency is measured separately, one
image at a time, on a fixed subset of the chunk.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator, Optional

import torch

from vlmbench.config import ExperimentConfig
from vlmbench.data import ImageRow
from vlmbench.images import LoadedImage, load_image
from vlmbench.measure import EnergyWindow, Nvml, Reading, average_power, peak_memory, per_image, \
    reset_peak_memory, timed


@dataclass
class MicroBatch:
    index: int
    ok: list[LoadedImage]
    failed: list[LoadedImage]
    inputs: Optional[dict] = None


@dataclass
class ChunkResult:
    rows: list[dict]
    metrics: dict[str, Reading] = field(default_factory=dict)


class Captioner:
    """A loaded variant plus its processor and generation settings, ready to caption rows."""

    def __init__(self, model, processor, cfg: ExperimentConfig, device: str, engine=None, workers: int = 4):
        from vlmbench.engines.stock import StockEngine
        self.model, self.processor, self.cfg, self.device = model, processor, cfg, device
        self.engine = engine or StockEngine(model, processor, cfg, None, device)
        self.workers = workers
        from vlmbench.fetch import image_cache_for
        self.image_cache = image_cache_for(cfg)
        self.prompt_text = processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": cfg.inference.prompt}]}],
            add_generation_prompt=True, tokenize=False)
        self.generation_config = self.engine.generation_config
        self.latency_warmed_up = False

    # ------------------------------------------------------------ preprocessing (worker threads)
    def prepare(self, index: int, rows: list[ImageRow]) -> MicroBatch:
        loaded = [load_image(row, self.cfg.inference.img_size, self.image_cache) for row in rows]
        batch = MicroBatch(index, [x for x in loaded if x.image is not None], [x for x in loaded if x.image is None])
        if batch.ok:
            batch.inputs = self.processor(text=[self.prompt_text] * len(batch.ok), images=[x.image for x in batch.ok],
                                          padding=True, return_tensors="pt")
        return batch

    def prefetched(self, groups: list[list[ImageRow]]) -> Iterator[MicroBatch]:
        """Yields prepared micro-batches in order while up to `prefetch_batches` more are prepared."""
        depth = max(1, self.cfg.inference.prefetch_batches)
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="vlmbench-prefetch") as pool:
            pending = [pool.submit(self.prepare, i, g) for i, g in enumerate(groups[:depth])]
            for next_index in range(depth, len(groups) + depth):
                batch = pending.pop(0).result()
                if next_index < len(groups):
                    pending.append(pool.submit(self.prepare, next_index, groups[next_index]))
                yield batch

    # ------------------------------------------------------------ generation (device)
    @torch.inference_mode()
    def generate(self, inputs: dict) -> list[tuple[str, int]]:
        """Captions and generated-token counts for one prepared micro-batch."""
        on_device = {k: v.to(self.model.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        output = self.engine.generate(on_device)
        new_tokens = output[:, on_device["input_ids"].shape[1]:].cpu()
        texts = self.processor.batch_decode(new_tokens, skip_special_tokens=True)
        return [(text.strip(), count_generated(seq, self.generation_config)) for text, seq in zip(texts, new_tokens, strict=True)]

    def warm_up(self, rows: list[ImageRow], batches: int, micro_batch_size: Optional[int] = None) -> None:
        """Untimed generate calls so that first-call costs stay out of every number."""
        groups = micro_batches(rows, micro_batch_size or self.cfg.inference.micro_batch_size)[:batches]
        for batch in self.prefetched(groups):
            if batch.inputs is not None:
                self.generate(batch.inputs)

    # ------------------------------------------------------------ one chunk
    def caption_chunk(self, rows: list[ImageRow], nvml: Nvml) -> ChunkResult:
        """Captions every row; throughput, energy and peak memory cover this whole pass."""
        reset_peak_memory(self.device)
        out: list[dict] = []
        with EnergyWindow(nvml) as window:
            for batch in self.prefetched(micro_batches(rows, self.cfg.inference.micro_batch_size)):
                out += self._rows_for(batch)
        ok = sum(r["status"] == "ok" for r in out)
        metrics = {"wall_s": Reading(window.seconds), "images_ok": Reading(ok),
                   "throughput_img_s": Reading(ok / window.seconds if window.seconds > 0 else None),
                   "energy_j": window.joules, "energy_j_per_image": per_image(window.joules, ok),
                   "avg_power_w": average_power(window.joules, window.seconds), **peak_memory(self.device)}
        return ChunkResult(out, metrics)

    def _rows_for(self, batch: MicroBatch) -> list[dict]:
        rows = [failed_row(x) for x in batch.failed]
        if batch.inputs is None:
            return rows
        captions, seconds = timed(self.device, self.generate, batch.inputs)
        for item, (caption, n_tokens) in zip(batch.ok, captions, strict=True):
            rows.append({"image_id": item.row.image_id, "file_name": item.row.file_name, "status": "ok",
                         "error": "", "caption": caption, "generated_tokens": n_tokens,
                         "micro_batch_index": batch.index, "micro_batch_size": len(batch.ok),
                         "micro_batch_s": seconds})
        return rows

    def measure_latency(self, rows: list[ImageRow], count: int) -> dict[int, float]:
        """Seconds per image, micro-batch of 1, preprocessed inputs to decoded text, for `count` images.

        The first call per variant runs one untimed single-image generate: a micro-batch of 1 is a new
        shape for the kernels' heuristics, and its first call was seen taking 2.5x the steady time.
        """
        latencies = {}
        if count and not self.latency_warmed_up:
            self.warm_up(rows[:1], 1, micro_batch_size=1)
            self.latency_warmed_up = True
        for row in rows:
            if len(latencies) >= count:
                break
            batch = self.prepare(0, [row])
            if batch.inputs is not None:
                _, seconds = timed(self.device, self.generate, batch.inputs)
                latencies[row.image_id] = seconds
        return latencies


def micro_batches(rows: list[ImageRow], size: int) -> list[list[ImageRow]]:
    return [rows[i: i + size] for i in range(0, len(rows), size)]


def count_generated(sequence: torch.Tensor, generation_config) -> int:
    """Tokens generated before the first end or padding token."""
    stops = {generation_config.pad_token_id, generation_config.eos_token_id}
    for position, token in enumerate(sequence.tolist()):
        if token in stops:
            return position
    return len(sequence)


def failed_row(item: LoadedImage) -> dict:
    return {"image_id": item.row.image_id, "file_name": item.row.file_name, "status": "failed",
            "error": item.error, "caption": "", "generated_tokens": 0, "micro_batch_index": -1,
            "micro_batch_size": 0, "micro_batch_s": None}

