"""The vision tower's attention as one variable-length kernel per layer.

Why it exists: with `sdpa`, transformers runs Qwen2.5-VL's windowed vision attention as a Python loop
with one `sdpa` call per window (hundreds per layer at micro-batch 32); on an H200 the vision tower
took 5.9 s of a 9.2 s micro-batch that way (docs/PERFORMANCE.md). One varlen kernel over the same
`cu_seqlens` does the same arithmetic in one launch.

How it plugs in, through transformers' own extension points only:
- `AttentionInterface.register(VARLEN_ATTENTION, varlen_attention)` adds the function to the registry.
- `model.set_attn_implementation({"vision_config": VARLEN_ATTENTION})` selects it for the vision
  sub-model alone; the language model keeps `sdpa`.
- `Qwen2_5_VLVisionAttention.forward` (transformers 5.17 and 5.24 alike) passes `cu_seq_lens_q/k` and
  `max_length_q/k` to the attention function, instead of looping over windows, exactly when
  `is_flash_attention_requested(config)` is true, i.e. when the implementation's name contains
  "flash". Hence the name. `set_attn_implementation` checks a sub-model's name against the registry
  only, so no flash-attn package or Hub kernel is looked up for it.

Kernels, best first: flash-attn's `flash_attn_varlen_func` (when installed), torch's
`torch.nn.attention.varlen.varlen_attn` (CUDA, fp16/bf16, torch >= 2.9), else `reference_varlen`
(one `sdpa` per segment: the same arithmetic as transformers' loop; used on CPU and in fp32).

Traceable by torch.compile without a graph break (the fast engine compiles each vision block,
vlmbench.engines.vision_compile): the kernel for a (device type, dtype) is chosen once, eagerly, and
looked up from a plain dict inside the traced code; the reference kernel is a `torch.library`
custom op (`vlmbench::reference_varlen`), opaque to dynamo, so its `cu_seqlens.tolist()` runs outside
the graph; `max_length_q` (the block's maximum segment length, a Python int that transformers'
vision tower computes once per forward, outside the blocks) is passed on as it is, never `int()`-ed.
"""
from __future__ import annotations

import functools
import inspect
from typing import Callable, Optional

import torch
import torch.nn.functional as F

VARLEN_ATTENTION = "vlmbench_flash_varlen"
FLASH_DTYPES = (torch.float16, torch.bfloat16)


def reference_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                     scale: Optional[float]) -> torch.Tensor:
    """Attention within each segment [cu[i], cu[i+1]) of (T, H, D) tensors, one `sdpa` per segment.

    Returns (T, H, D). The same arithmetic as transformers' per-window loop (sdpa, not causal).
    """
    bounds = cu_seqlens.tolist()
    out = torch.empty_like(q)
    for start, end in zip(bounds[:-1], bounds[1:]):
        seg = [t[start:end].transpose(0, 1) for t in (q, k, v)]  # (H, L, D)
        out[start:end] = F.scaled_dot_product_attention(*seg, scale=scale).transpose(0, 1)
    return out


@functools.cache
def flash_attn_kernel() -> Optional[Callable]:
    """flash-attn's varlen function when the package is installed, else None."""
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        return None
    return flash_attn_varlen_func


@functools.cache
def torch_varlen_kernel() -> Optional[Callable]:
    """torch's `varlen_attn` (torch >= 2.9), else None."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


@torch.library.custom_op("vlmbench::reference_varlen", mutates_args=())
def reference_varlen_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                        scale: Optional[float]) -> torch.Tensor:
    """`reference_varlen` as one opaque operator: torch.compile keeps it in the graph as a call."""
    return reference_varlen(q, k, v, cu_seqlens, scale)


@reference_varlen_op.register_fake
def _reference_varlen_shape(q, k, v, cu_seqlens, scale):
    return torch.empty_like(q)


REFERENCE = "reference (one sdpa per segment)"
# (device type, dtype) -> (kernel name, kernel); filled eagerly by kernel_name, read inside traced code
_CHOSEN: dict = {}


def kernel_name(device_type: str, dtype: torch.dtype) -> str:
    """Which kernel `varlen_attention` uses for tensors of this device type and dtype (chosen once)."""
    key = (device_type, dtype)
    if key not in _CHOSEN:
        _CHOSEN[key] = _choose_kernel(device_type, dtype)
    return _CHOSEN[key][0]


def _choose_kernel(device_type: str, dtype: torch.dtype) -> tuple[str, Callable]:
    if device_type != "cuda" or dtype not in FLASH_DTYPES:
        return REFERENCE, reference_varlen_op
    if flash_attn_kernel() is not None:
        return "flash_attn.flash_attn_varlen_func", flash_attn_kernel()
    if torch_varlen_kernel() is not None:
        takes_scale = "scale" in inspect.signature(torch_varlen_kernel()).parameters
        return "torch.nn.attention.varlen.varlen_attn", functools.partial(_torch_varlen, torch_varlen_kernel(),
                                                                          takes_scale)
    return REFERENCE, reference_varlen_op


def run_varlen(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_len,
               scale: Optional[float]) -> torch.Tensor:
    """Segment attention over (T, H, D) tensors with the best kernel available; returns (T, H, D).

    `max_len` is the longest segment (an int, or a SymInt under torch.compile).
    """
    name = kernel_name(q.device.type, q.dtype)
    kernel = _CHOSEN[(q.device.type, q.dtype)][1]
    cu = cu_seqlens.to(device=q.device, dtype=torch.int32)
    if name.startswith("flash_attn"):
        return kernel(q, k, v, cu, cu, max_len, max_len, softmax_scale=scale, causal=False)
    if name.startswith("torch"):
        return kernel(q, k, v, cu, max_len, scale)
    return kernel(q, k, v, cu, scale)


def _torch_varlen(kernel: Callable, takes_scale: bool, q, k, v, cu, max_len, scale: Optional[float]) -> torch.Tensor:
    """torch's varlen_attn; torch 2.9 has no `scale` argument, so only the default scale is passed there."""
    if takes_scale:
        return kernel(q, k, v, cu, cu, max_len, max_len, scale=scale)
    if scale is None or abs(scale - q.shape[-1] ** -0.5) < 1e-12:
        return kernel(q, k, v, cu, cu, max_len, max_len)
    return reference_varlen_op(q, k, v, cu, scale)


def varlen_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: Optional[torch.Tensor], scaling: Optional[float] = None,
                     dropout: float = 0.0, cu_seq_lens_q: Optional[torch.Tensor] = None,
                     max_length_q: Optional[int] = None, **kwargs) -> tuple[torch.Tensor, None]:
    """An AttentionInterface function: (1, H, T, D) query/key/value -> ((1, T, H, D) output, None).

    Needs `cu_seq_lens_q` (segment boundaries, shape (N+1,)); key/value use the same boundaries, as in
    Qwen2.5-VL's vision tower. Raises ValueError without them (a caller that does not pass varlen
    arguments must not be routed here). Inference only: `dropout` must be 0.
    """
    if cu_seq_lens_q is None or query.shape[0] != 1:
        raise ValueError(f"{VARLEN_ATTENTION} needs cu_seq_lens_q and a packed batch of 1 (Qwen2.5-VL's vision "
                         "tower); select it for the vision sub-model only")
    if dropout:
        raise ValueError(f"{VARLEN_ATTENTION} is for inference: dropout must be 0, got {dropout}")
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # (T, H, D)
    max_len = max_length_q if max_length_q is not None else int((cu_seq_lens_q[1:] - cu_seq_lens_q[:-1]).max())
    out = run_varlen(q.contiguous(), k.contiguous(), v.contiguous(), cu_seq_lens_q, max_len, scaling)
    return out.unsqueeze(0), None


def register() -> str:
    """Adds `varlen_attention` to transformers' attention registry (idempotent); returns its name."""
    from transformers import AttentionInterface
    AttentionInterface.register(VARLEN_ATTENTION, varlen_attention)
    return VARLEN_ATTENTION


def use_for_vision(model) -> str:
    """Selects the varlen function for the vision sub-model only; returns the kernel it will use.

    Raises ValueError when the model's family has no cu_seqlens vision tower (Family.cu_seqlens_vision:
    Qwen2-VL, Qwen2.5-VL, Qwen3-VL), whose attention would get no segment boundaries.
    """
    from vlmbench.models.families import FAMILIES
    family = FAMILIES.get(getattr(model.config, "model_type", None))
    if family is None or not family.cu_seqlens_vision or getattr(model.config, "vision_config", None) is None:
        raise ValueError(f"{type(model).__name__} has no cu_seqlens vision tower (Qwen2-VL style): no vision "
                         "sub-model to select varlen attention for")
    model.set_attn_implementation({"vision_config": register()})
    return kernel_name(model.device.type, model.dtype)
