"""Regional compilation of the vision tower in the `fast` engine: each vision block compiled, one graph shared.

Why it exists: in the fast fp16 engine the vision tower took 2.74 s of a 4.94 s micro-batch of 64
images on an H200, and `torch.compile` of the tower took it to 1.27 s (issue 20, 2026-12-02,
../shared/device/README.md). Compiling the whole tower cost a 19 s first call and a graph break at
transformers' `get_max_seqlen` (`Tensor.item()`).

Regional compilation (torch's recipe "Reducing torch.compile cold start compilation time with regional
compilation"): `block.compile()` on each of the tower's repeated blocks. The blocks share one code
object, and with `inline_inbuilt_nn_modules` (torch >= 2.5 default) their weights are graph inputs, so
dynamo traces one block and every block reuses its graph; the warm-up pays for one block, not 32.
What stays eager runs once per micro-batch: patch embedding, rotary table, window index, merger.

No graph break in the hot path: transformers' tower computes the longest window and the longest image
segment (`get_max_seqlen`, one `.item()` each) in its own forward, once per micro-batch, outside the
compiled blocks, and passes them to every block as `max_seqlen`; inside, the attention call goes
through the attention registry to vlmbench.engines.vision_attention, which is traceable. Checked on
the tiny model by tests/test_vision_compile.py (no graph break; greedy tokens equal the eager tower's).
Compiled with dynamic shapes from the start (`dynamic=True`): the token count (micro-batch size), the
number of segments and the longest segment are symbols, so one graph serves the window layers, the
full-attention layers, every micro-batch size and the batch-1 latency runs. On the tiny model (CPU,
6 calls of 3 and 1 images): fp16 1 graph instead of 3 with dynamo's default (a static graph, then a
recompile per new shape); int8_vit 33 compiled frames instead of 48, none after the second call,
where the default recompiled again for the batch-1 call (tests/test_vision_compile.py, /tmp probe).
Fully static graphs might be a little faster per call; they would recompile per shape, inside timed
windows for bitsandbytes' data-dependent shapes.

bitsandbytes int8 layers (int8, int8_vit: both have an int8 vision tower): dynamo breaks the graph at
each int8 matmul (`int8_vectorwise_quant` and `int8_mixed_scaled_mm` return outlier tensors whose
shape depends on the data), so each block compiles as the pieces between its int8 layers; the number
of pieces is bounded (a few per block, shared by all blocks: one code object). Whole-tower compilation
that way was 1.30x faster than eager on an H200 (int8_vit, 3.65 s -> 2.80 s, 54 graph breaks), so
they are compiled too, with that reason recorded.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

DEFAULT_BACKEND = "inductor"


def vision_blocks(model):
    """The vision tower's repeated blocks (`model.model.visual.blocks`, a ModuleList).

    Raises ValueError for a model without them (not a Qwen2.5-VL-like model).
    """
    visual = getattr(getattr(model, "model", None), "visual", None)
    blocks = getattr(visual, "blocks", None)
    if blocks is None or len(blocks) == 0:
        raise ValueError(f"{type(model).__name__} has no model.visual.blocks: no vision blocks to compile")
    return blocks


def vision_plan(device: str, enabled: bool, vision_int8: bool) -> tuple[bool, str]:
    """(compile the vision blocks?, why / why not) for a variant.

    `enabled` is `inference.compile_vision`; `vision_int8` says whether the census found bitsandbytes
    int8 layers in the vision tower.
    """
    if not enabled:
        return False, "not compiled: inference.compile_vision is false"
    if device != "cuda":
        return False, ("not compiled: no CUDA device (inductor on a CPU builds C++ for each shape: about 40 s "
                       "for the tiny model's block, slower than the eager tower it would replace)")
    if vision_int8:
        return True, ("compiled: each vision block (regional); dynamo breaks the graph at each bitsandbytes int8 "
                      "matmul (outlier tensors of data-dependent shape), so the pieces between int8 layers are "
                      "compiled; measured 1.30x on an H200 (int8_vit tower, whole-tower compile, 2026-12-02)")
    return True, "compiled: each vision block (regional compilation, one graph shared by every block)"


def compile_vision_blocks(model, backend: str = DEFAULT_BACKEND, dynamic: Optional[bool] = True) -> int:
    """Marks each vision block for torch.compile (`nn.Module.compile`, compiled at its first call);
    returns the number of blocks. `backend="eager"` traces without code generation (CPU tests)."""
    blocks = vision_blocks(model)
    for block in blocks:
        block.compile(backend=backend, dynamic=dynamic)
    return len(blocks)


def vision_compiled(model) -> bool:
    """True when every vision block is marked for compilation (`nn.Module.compile` sets `_compiled_call_impl`)."""
    return all(getattr(block, "_compiled_call_impl", None) is not None for block in vision_blocks(model))


@contextmanager
def eager_vision_blocks(model) -> Iterator[None]:
    """Inside, the vision blocks run eagerly (their compiled wrappers set aside); restored after, also on error.

    For comparing the compiled tower with the eager one on the same weights (scripts/gpu_check_fast.py).
    """
    blocks = vision_blocks(model)
    saved = [getattr(block, "_compiled_call_impl", None) for block in blocks]
    for block in blocks:
        block._compiled_call_impl = None
    try:
        yield
    finally:
        for block, compiled in zip(blocks, saved):
            block._compiled_call_impl = compiled
