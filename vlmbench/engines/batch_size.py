"""Sizing the micro-batch from free device memory, per variant.

Why it exists: throughput rises with the micro-batch (H200, fp16, fast path: 10.8 img/s at 32, 12.9
at 64) until memory runs out, and the best size differs per variant and card. With
`inference.micro_batch_size: auto` (or null) each variant gets the largest size whose estimated
memory fits into the free device memory after loading, rounded down to a multiple of 8, within a
per-variant cap. The rule is a pure function so that it is tested with made-up numbers.

Constants and their sources (docs/PERFORMANCE.md, ../shared/device/README.md, 2026-11-29):
- MIB_PER_PREFILL_TOKEN: peak allocated 25.5 GiB at micro-batch 64 with 7161 MiB of fp16 weights,
  1398 prefill tokens per 1024 px image (1369 of them the image's): (26112 - 7161) / 64 / 1398 = 0.212 MiB
  per prefill token. Measured on Qwen2.5-VL-3B; other families are sized with the same constant over their
  own prefill length (the processor's, `prefill_tokens_per_image`): LLaVA-OneVision's 7371 image tokens at
  1024 px get a micro-batch five times smaller than Qwen2.5-VL's, not the same one.
- BNB_INT8_CAP = 64: bitsandbytes int8 at micro-batch 128 killed the process on an H100 ("Error
  invalid argument at line 421 in file /src/csrc/ops.cu"), a crash no `except` catches.
- DEFAULT_CAP = 128: the largest micro-batch measured to run (fp16, H100).
"""
from __future__ import annotations

from dataclasses import dataclass

MIB_PER_PREFILL_TOKEN = 0.212
MEMORY_FRACTION = 0.8  # of the free memory; the rest absorbs allocator fragmentation and the estimate's error
DEFAULT_CAP = 128
BNB_INT8_CAP = 64
CPU_MICRO_BATCH = 8
MULTIPLE = 8


@dataclass(frozen=True)
class MicroBatchChoice:
    """The micro-batch size used for a variant and how it was chosen (recorded in variant_<name>.json)."""
    size: int
    source: str  # "config" | "free memory" | "cpu default"
    reason: str


def image_tokens(img_size: int, patch_size: int = 14, merge_size: int = 2) -> int:
    """Language-model tokens of one img_size x img_size image in Qwen2.5-VL (side rounded to patch*merge)."""
    unit = patch_size * merge_size
    side = max(unit, round(img_size / unit) * unit)
    return (side // unit) ** 2


def variant_cap(quantized: bool) -> int:
    """The largest micro-batch allowed for a variant: BNB_INT8_CAP for bitsandbytes int8, else DEFAULT_CAP."""
    return BNB_INT8_CAP if quantized else DEFAULT_CAP


def size_from_memory(free_mib: float, mib_per_image: float, cap: int, images_per_chunk: int) -> int:
    """Largest multiple of MULTIPLE (or 1..MULTIPLE-1 when memory is short) with
    size * mib_per_image <= MEMORY_FRACTION * free_mib, at most `cap` and the chunk's size; at least 1.

    Raises ValueError for a non-positive `mib_per_image`.
    """
    if mib_per_image <= 0:
        raise ValueError(f"mib_per_image must be > 0, got {mib_per_image}")
    fits = int(MEMORY_FRACTION * max(free_mib, 0.0) // mib_per_image)
    size = min(fits, cap, images_per_chunk)
    if size >= MULTIPLE and size != images_per_chunk:
        size -= size % MULTIPLE
    return max(1, size)


def choose_micro_batch(configured, device: str, free_mib: float, prefill_tokens: int, quantized: bool,
                       images_per_chunk: int) -> MicroBatchChoice:
    """The micro-batch for one variant: the configured number, or sized from `free_mib` when it is None.

    `prefill_tokens`: one image's prompt length in tokens (image and text), `prefill_tokens_per_image`.
    """
    if configured is not None:
        return MicroBatchChoice(configured, "config", "inference.micro_batch_size is set")
    if device != "cuda":
        return MicroBatchChoice(min(CPU_MICRO_BATCH, images_per_chunk), "cpu default",
                                "no CUDA device: no free-memory figure to size from")
    per_image = prefill_tokens * MIB_PER_PREFILL_TOKEN
    cap = variant_cap(quantized)
    size = size_from_memory(free_mib, per_image, cap, images_per_chunk)
    return MicroBatchChoice(size, "free memory", f"{free_mib:.0f} MiB free x {MEMORY_FRACTION} / {per_image:.0f} "
                                                 f"MiB per image (estimate), cap {cap}, chunk {images_per_chunk}")


def prefill_tokens_per_image(processor, prompt_text: str, img_size: int) -> int:
    """Tokens the language model prefills for one img_size x img_size image with `prompt_text` (the chat template
    applied), counted by the model's own processor: each family's image rule (tiles, crops, pooling) included."""
    from PIL import Image
    image = Image.new("RGB", (img_size, img_size), (128, 128, 128))
    inputs = processor(text=[prompt_text], images=[[image]], return_tensors="pt")
    return int(inputs["input_ids"].shape[-1])


def free_device_mib(device: str) -> float:
    """Free memory on the current CUDA device in MiB (torch.cuda.mem_get_info); 0 on CPU."""
    if device != "cuda":
        return 0.0
    import torch
    free, _total = torch.cuda.mem_get_info()
    return free / 2**20
