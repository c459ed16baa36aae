"""torchao methods: int8 weight-only (`w8a16`), int8 dynamic W8A8 (`w8a8`), float8 dynamic per-row (`fp8`)
and int4 weight-only (`w4a16`), as transformers' TorchAoConfig.

Why it exists: the one place that knows which torchao config each method is and how a torchao layer
looks once loaded: torchao keeps `nn.Linear` and swaps its weight for a tensor subclass (Int8Tensor,
Float8Tensor, Int4Tensor... in torchao 0.18), which the census reads. torchao is imported only when a
config is built.
"""
from __future__ import annotations

from typing import Optional

from torch import nn

LABEL_PREFIX = "torchao"


def torchao_config(method: str, options: dict):
    """The torchao config object of `method` (w8a16, w8a8, fp8, w4a16) with its `options`."""
    import torchao.quantization as tq
    if method == "w8a16":
        return tq.Int8WeightOnlyConfig()
    if method == "w8a8":
        return tq.Int8DynamicActivationInt8WeightConfig()
    if method == "fp8":
        return tq.Float8DynamicActivationFloat8WeightConfig(granularity=tq.PerRow())
    if method == "w4a16":  # tinygemm's packing, built into torch; the default 'plain' needs the mslk package
        return tq.Int4WeightOnlyConfig(group_size=options["group_size"], int4_packing_format="tile_packed_to_4d")
    raise ValueError(f"torchao has no method {method!r} here")


def quantization_config(variant, dtype, components, skeleton=None):
    """transformers' TorchAoConfig for `variant`; `modules_to_not_convert` takes the same full prefixes as
    bitsandbytes' skip list (`components`: Family.components; transformers 5's should_convert_module matches a
    prefix from the start, or a suffix), plus, given the model's `skeleton` (its modules on the meta device,
    see `needs_skeleton`), the full names of the layers `layers_kept_16bit` names.
    `dtype` is unused: torchao computes in the dtype the model is loaded in."""
    from transformers import TorchAoConfig
    kept = layers_kept_16bit(variant, skeleton, components) if skeleton is not None else []
    return TorchAoConfig(torchao_config(variant.method, variant.option_values()),
                         modules_to_not_convert=variant.skip_modules(components) + kept)


# Methods whose layers torchao 0.18 quantizes whatever their shape, while the kernel then refuses some shapes at the
# first forward on CUDA: w8a8's torch._int_mm needs both widths multiples of 8 ("mat2.size(1) needs to be greater than
# 0 and a multiple of 8, but got 3420": Qwen2.5-VL-3B's vision MLP on an H200, 2026-12-02). vlmbench leaves such
# layers 16-bit by name (the CPU kernel takes any width; the rule is applied on both, so that CPU and GPU runs hold
# the same layers quantized).
KEPT_16BIT_BY_VLMBENCH = frozenset({"w8a8"})


def needs_skeleton(variant) -> bool:
    """Whether `quantization_config` needs the model's skeleton to name the layers to leave 16-bit."""
    return variant.method in KEPT_16BIT_BY_VLMBENCH


def layers_kept_16bit(variant, skeleton: nn.Module, components) -> list[str]:
    """Full names of the Linear layers of `skeleton` (the model's modules, e.g. on the meta device) in `variant`'s
    components (`components`: Family.components) that `ineligible_reason` rules out, for a method of
    KEPT_16BIT_BY_VLMBENCH; [] for the others (torchao itself skips what they cannot take)."""
    if not needs_skeleton(variant):
        return []
    skipped = variant.skip_modules(components)
    return [name for name, module in skeleton.named_modules()
            if isinstance(module, nn.Linear) and not _under(name, skipped) and ineligible_reason(variant, module)]


def _under(name: str, prefixes: list[str]) -> bool:
    """Whether module `name` is one of `prefixes` or inside one (matched at a module boundary)."""
    return any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)


def ineligible_reason(variant, module: nn.Module) -> Optional[str]:
    """Why this Linear layer stays 16-bit under `variant.method`; None if it is quantized.

    - fp8: `_fp8_mm_compat` (torchao/quantization/utils.py) quantizes only weights whose in and out features
      are both multiples of 16 (torch._scaled_mm's rule);
    - w4a16: `_int4_weight_only_quantize_tensor` (quant_api.py) only in_features divisible by group_size;
    - w8a8: torch._int_mm on CUDA takes only widths that are multiples of 8; torchao quantizes such a layer anyway,
      so vlmbench keeps it 16-bit itself (KEPT_16BIT_BY_VLMBENCH).
    torchao 0.18 skips fp8's and w4a16's silently. Qwen2.5-VL-3B's vision MLP is 3420 wide (1280 -> 3420 -> 1280): 96 of its 162 vision Linear layers (gate, up and
    down of each of 32 blocks) fail the fp8 and w8a8 rules and 32 (down) the w4a16 rule. The census counts these as ineligible instead of calling the variant broken.
    """
    out_features, in_features = module.weight.shape[-2:]
    if variant.method == "fp8" and (in_features % 16 or out_features % 16):
        return "fp8: in/out features not multiples of 16 (torch._scaled_mm)"
    if variant.method == "w8a8" and (in_features % 8 or out_features % 8):
        return "w8a8: in/out features not multiples of 8 (torch._int_mm on CUDA)"
    group_size = variant.option_values().get("group_size")
    if variant.method == "w4a16" and in_features % group_size:
        return f"w4a16: in_features not divisible by group_size {group_size}"
    return None


ACTIVATIONS_SUFFIX = " + dynamic activations"


def layer_kind(module: nn.Module) -> Optional[str]:
    """'torchao <tensor subclass>' when the layer's weight is a torchao tensor subclass, else None; with
    ACTIVATIONS_SUFFIX when the weight also quantizes the layer's input on the fly (torchao keeps that on the
    weight as `act_quant_kwargs`: w8a8's Int8Tensor has it, w8a16's has not), so the census tells W8A8 from W8A16."""
    weight = getattr(module, "weight", None)
    kind = type(weight)
    if weight is None or not kind.__module__.startswith("torchao"):
        return None
    activations = ACTIVATIONS_SUFFIX if getattr(weight, "act_quant_kwargs", None) is not None else ""
    return f"{LABEL_PREFIX} {kind.__name__}{activations}"


# the census label each torchao method's layers must carry (torchao 0.18's tensor subclasses)
EXPECTED_LABELS = {"w8a16": "torchao Int8Tensor", "w8a8": "torchao Int8Tensor" + ACTIVATIONS_SUFFIX,
                   "fp8": "torchao Float8Tensor" + ACTIVATIONS_SUFFIX, "w4a16": "torchao Int4TilePackedTo4dTensor"}
