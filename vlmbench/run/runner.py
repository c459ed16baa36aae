"""Captioning one chunk: prefetched, preprocessed micro-batches through greedy `generate`.

Why it exists: this is the hot loop of the benchmark. Images are read, decoded and preprocessed on
worker threads ahead of the device so that it never waits on disk or the network (the processor on
the device when the engine says so); each micro-batch is left-padded, generated greedily by the
variant's engine (vlmbench.engines), and decoded; every image becomes one row, a failed image
included (with its reason). The time inside `generate` is summed per chunk, so the share of the
chunk the device spends outside it (the idle share) is known. Latency is measured separately, one
image at a time, on a fixed subset of the chunk.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Iterator, Optional

import torch

from vlmbench.config import ExperimentConfig
from vlmbench.data.sources import ImageRow
from vlmbench.models.end_tokens import end_tokens, until_end  # noqa: F401 (end_tokens re-exported for tests)
from vlmbench.data.images import LoadedImage, load_image
from vlmbench.run.measure import EnergyWindow, Nvml, Reading, average_power, idle_share, peak_memory, per_image, \
    reset_peak_memory, timed
from vlmbench.run.progress import ChunkProgress


@dataclass
class MicroBatch:
    index: int
    ok: list[LoadedImage]
    failed: list[LoadedImage]
    inputs: Optional[dict] = None
    padding: int = 0  # copies of the last image appended so that the batch has a warmed-up size
    ready: Optional[object] = None  # a CUDA event recorded after device preprocessing, else None


@dataclass
class ChunkResult:
    rows: list[dict]
    metrics: dict[str, Reading] = field(default_factory=dict)


class Captioner:
    """A loaded variant plus its processor and engine, ready to caption rows.

    `micro_batch_size` is the size used for this variant (configured or sized from free memory);
    `progress_sink` receives live progress lines (vlmbench.run.progress).
    """

    def __init__(self, model, processor, cfg: ExperimentConfig, device: str, engine=None,
                 micro_batch_size: Optional[int] = None, progress_sink=None, workers: int = 4):
        from vlmbench.engines.stock import StockEngine
        self.model, self.processor, self.cfg, self.device = model, processor, cfg, device
        self.engine = engine or StockEngine(model, processor, cfg, None, device)
        self.micro_batch_size = micro_batch_size or cfg.inference.micro_batch_size or 8
        self.progress_sink = progress_sink
        self.workers = workers
        from vlmbench.data.fetch import image_cache_for
        self.image_cache = image_cache_for(cfg)
        self.prompt_text = prompt_text(processor, cfg)
        self.end_tokens = self.engine.end_tokens
        self.generation_config = self.engine.generation_config
        self.preprocess_device = getattr(self.engine, "preprocess_device", None)
        self._side_stream = None
        self.latency_warmed_up = False

    # ------------------------------------------------------------ preprocessing (worker threads)
    def prepare(self, index: int, rows: list[ImageRow], pad: bool = True) -> MicroBatch:
        """Reads and preprocesses `rows`; with `pad`, fills up to the engine's padded size (fast engine)."""
        loaded = self._load_all(rows)
        batch = MicroBatch(index, [x for x in loaded if x.image is not None], [x for x in loaded if x.image is None])
        if batch.ok:
            images = [x.image for x in batch.ok]
            target = self.engine.padded_size(len(images), self.micro_batch_size) if pad else None
            batch.padding = (target or len(images)) - len(images)
            batch.inputs, batch.ready = self._process(images + [images[-1]] * batch.padding)
        return batch

    def _load_all(self, rows: list[ImageRow]) -> list[LoadedImage]:
        """`rows` read and decoded in order, on up to `inference.decode_workers` threads.

        One thread decoding a micro-batch of 128 images at 1024 px kept the device waiting on the first
        micro-batch of every chunk (3.3% of a 1000-image chunk on an H200, docs/PERFORMANCE.md).
        """
        load = partial(load_image, size=self.cfg.inference.img_size, cache=self.image_cache)
        threads = min(len(rows), self.cfg.inference.decode_workers)
        if threads <= 1:
            return [load(row) for row in rows]
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="vlmbench-decode") as pool:
            return list(pool.map(load, rows))

    def _process(self, images: list) -> tuple[dict, Optional[object]]:
        """Processor outputs for `images`; on the device (side stream, with a ready event) when configured."""
        # one list per prompt: SmolVLM's processor reads a flat list as every image of one prompt; all take this form
        kwargs = dict(text=[self.prompt_text] * len(images), images=[[image] for image in images], padding=True,
                      return_tensors="pt")
        if self.preprocess_device is None:
            return self.processor(**kwargs), None
        if self._side_stream is None:
            self._side_stream = torch.cuda.Stream()
        with torch.cuda.stream(self._side_stream):
            inputs = self.processor(**kwargs, device=self.preprocess_device)
            ready = torch.cuda.Event()
            ready.record(self._side_stream)
        return inputs, ready

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
    def generate(self, batch: MicroBatch) -> tuple[list[tuple[str, int]], float]:
        """Captions and generated-token counts for the real images of one prepared micro-batch, and the
        seconds of the synchronized `generate` call alone (the device's busy time)."""
        on_device = self._on_device(batch)
        output, generate_s = timed(self.device, self.engine.generate, on_device)
        keep = len(batch.ok)
        new_tokens = output[:keep, on_device["input_ids"].shape[1]:].cpu()
        tokens = [until_end(seq, self.generation_config) for seq in new_tokens]  # the caption: before the first end
        texts = self.processor.batch_decode(tokens, skip_special_tokens=True)
        return [(text.strip(), len(ids)) for text, ids in zip(texts, tokens, strict=True)], generate_s

    def _on_device(self, batch: MicroBatch) -> dict:
        if batch.ready is not None:  # device preprocessing ran on a side stream
            torch.cuda.current_stream().wait_event(batch.ready)
        on_device = {k: v.to(self.model.device) if hasattr(v, "to") else v for k, v in batch.inputs.items()}
        if batch.ready is not None:
            for value in on_device.values():
                if isinstance(value, torch.Tensor) and value.is_cuda:
                    value.record_stream(torch.cuda.current_stream())
        return on_device

    def warm_up(self, rows: list[ImageRow], batches: int, micro_batch_size: Optional[int] = None,
                latency_images: int = 0) -> None:
        """Untimed generate calls so that first-call costs (compilation included) stay out of every number:
        `batches` micro-batches of `rows`, then, when `latency_images` > 0, one single-image call
        (`warm_up_latency`), so that the batch-1 shape is compiled here too and not in the latency runs."""
        size = micro_batch_size or self.micro_batch_size
        groups = micro_batches(rows, size)[:batches]
        for batch in self.prefetched(groups):
            if batch.inputs is not None:
                self.generate(batch)
        if latency_images > 0:
            self.warm_up_latency(rows)

    def warm_up_latency(self, rows: list[ImageRow]) -> None:
        """One untimed single-image generate on the first readable row, once per variant: a micro-batch of 1
        is a new shape for the kernels' heuristics (and for a compiled decode step, a new compilation, which
        took over 60 s for torchao variants on an H200); its first call was seen taking 2.5x the steady time."""
        if self.latency_warmed_up:
            return
        for row in rows:
            batch = self.prepare(0, [row], pad=False)
            if batch.inputs is not None:
                self.generate(batch)
                self.latency_warmed_up = True
                return

    # ------------------------------------------------------------ one chunk
    def caption_chunk(self, rows: list[ImageRow], nvml: Nvml, label: str = "chunk") -> ChunkResult:
        """Captions every row; throughput, energy, peak memory and the idle share cover this whole pass."""
        reset_peak_memory(self.device)
        out: list[dict] = []
        busy = 0.0
        progress = ChunkProgress(label, len(rows), self.cfg.inference.progress_interval_s, self.progress_sink)
        with EnergyWindow(nvml) as window:
            for batch in self.prefetched(micro_batches(rows, self.micro_batch_size)):
                batch_rows, generate_s = self._rows_for(batch)
                out += batch_rows
                busy += generate_s
                progress.update(len(batch_rows))
        ok = sum(r["status"] == "ok" for r in out)
        metrics = {"wall_s": Reading(window.seconds), "images_ok": Reading(ok),
                   "throughput_img_s": Reading(ok / window.seconds if window.seconds > 0 else None),
                   "energy_j": window.joules, "energy_j_per_image": per_image(window.joules, ok),
                   "avg_power_w": average_power(window.joules, window.seconds), **peak_memory(self.device),
                   "generate_s": Reading(busy), "idle_share": idle_share(window.seconds, busy)}
        return ChunkResult(out, metrics)

    def _rows_for(self, batch: MicroBatch) -> tuple[list[dict], float]:
        rows = [failed_row(x) for x in batch.failed]
        if batch.inputs is None:
            return rows, 0.0
        (captions, generate_s), seconds = timed(self.device, self.generate, batch)
        for item, (caption, n_tokens) in zip(batch.ok, captions, strict=True):
            rows.append({"image_id": item.row.image_id, "file_name": item.row.file_name, "status": "ok",
                         "error": "", "caption": caption, "generated_tokens": n_tokens,
                         "micro_batch_index": batch.index, "micro_batch_size": len(batch.ok),
                         "micro_batch_padding": batch.padding, "micro_batch_s": seconds})
        return rows, generate_s

    def measure_latency(self, rows: list[ImageRow], count: int) -> dict[int, float]:
        """Seconds per image, micro-batch of 1, preprocessed inputs to decoded text, for `count` images
        (image id -> seconds); see `timed_alone`."""
        return dict(self.timed_alone(rows, count))

    def timed_alone(self, rows: list[ImageRow], count: int) -> Iterator[tuple[int, float]]:
        """Yields (image id, seconds) for each of the first `count` readable rows, generated alone (micro-batch
        of 1), so that a caller keeps the images timed before an interruption. Runs `warm_up_latency` first
        where `warm_up` did not (a direct call, as in scripts/gpu_check_fast.py): no timed call is a first call."""
        if count > 0:
            self.warm_up_latency(rows)
        timed_count = 0
        for row in rows:
            if timed_count >= count:
                return
            batch = self.prepare(0, [row], pad=False)
            if batch.inputs is not None:
                _, seconds = timed(self.device, self.generate, batch)
                timed_count += 1
                yield row.image_id, seconds


def prompt_text(processor, cfg: ExperimentConfig) -> str:
    """The chat prompt of one image and inference.prompt, in the model's own chat template, generation prompt added."""
    return processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": cfg.inference.prompt}]}],
        add_generation_prompt=True, tokenize=False)


def micro_batches(rows: list[ImageRow], size: int) -> list[list[ImageRow]]:
    return [rows[i: i + size] for i in range(0, len(rows), size)]


def failed_row(item: LoadedImage) -> dict:
    return {"image_id": item.row.image_id, "file_name": item.row.file_name, "status": "failed",
            "error": item.error, "caption": "", "generated_tokens": 0, "micro_batch_index": -1,
            "micro_batch_size": 0, "micro_batch_padding": 0, "micro_batch_s": None}

