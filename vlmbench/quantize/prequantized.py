"""The `prequantized` method: a checkpoint that is already quantized, loaded as it was saved.

Why it exists: official AWQ, GPTQ and compressed-tensors checkpoints (and bitsandbytes or torchao
checkpoints saved by transformers) carry their own `quantization_config` in config.json; transformers
picks the loader from its `quant_method`. This module reads that field before any model loads, so that
a missing package is named with its install command instead of failing half-way through a load, and it
recognises the loaded layers of AWQ, GPTQ and compressed-tensors for the census.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Optional

from torch import nn

# quant_method in a checkpoint's quantization_config -> the Python packages transformers needs to load it
PACKAGES = {"awq": ("gptqmodel", "accelerate"), "gptq": ("optimum", "gptqmodel"),
            "compressed-tensors": ("compressed_tensors",), "bitsandbytes": ("bitsandbytes",),
            "torchao": ("torchao",), "fp8": ()}
# census: class names of loaded layers from these formats (they are not all nn.Linear subclasses)
LAYER_CLASSES = {"WQLinear_GEMM": "awq", "WQLinear_GEMV": "awq", "WQLinear_Exllama": "awq", "AwqGEMMQuantLinear": "awq",
                 "QuantLinear": "gptq", "TorchQuantLinear": "gptq", "ExllamaV2QuantLinear": "gptq",
                 "MarlinQuantLinear": "gptq", "CompressedLinear": "compressed-tensors", "FP8Linear": "fp8"}


def quantization_config(variant, dtype, components):
    """None: the checkpoint's own quantization_config decides how it loads."""
    return None


def checkpoint_config(model_id: str, revision: Optional[str]) -> dict:
    """config.json of the checkpoint: read from a local folder, or fetched alone from the Hub (a few kB; offline,
    from the Hub cache only: OSError when it is not there, which `refusal` names)."""
    folder = Path(model_id)
    if folder.is_dir():
        path = folder / "config.json"
    else:
        from huggingface_hub import hf_hub_download
        from vlmbench.offline import hub_calls
        with hub_calls() as local_only:  # offline: the cached copy only (HF_HUB_OFFLINE, VLMBENCH_OFFLINE)
            path = Path(hf_hub_download(model_id, "config.json", revision=revision, local_files_only=local_only))
    return json.loads(path.read_text())


def quant_method_of(config: dict) -> Optional[str]:
    """The checkpoint's `quantization_config.quant_method` (e.g. 'awq', 'bitsandbytes'), None if it has none."""
    return (config.get("quantization_config") or {}).get("quant_method")


def missing_packages(quant_method: str) -> list[str]:
    """The packages `quant_method` needs that are not installed (pip names, '-' for '_')."""
    needed = PACKAGES.get(quant_method, ())
    return [name.replace("_", "-") for name in needed if importlib.util.find_spec(name) is None]


def refusal(model_id: str, revision: Optional[str]) -> Optional[str]:
    """Why the checkpoint cannot be loaded here (not quantized, missing packages); None if it can."""
    try:
        config = checkpoint_config(model_id, revision)
    except (OSError, ValueError) as exc:
        return f"cannot read config.json of {model_id!r} ({exc})"
    method = quant_method_of(config)
    if method is None:
        return f"{model_id!r} holds no quantization_config in config.json: it is not a quantized checkpoint"
    missing = missing_packages(method)
    if missing:
        return f"{model_id!r} is a {method} checkpoint and needs {', '.join(missing)}: pip install {' '.join(missing)}"
    return None


def layer_kind(module: nn.Module) -> Optional[str]:
    """'awq <class>' / 'gptq <class>' / 'compressed-tensors <class>' for those formats' layers, else None."""
    name = type(module).__name__
    return f"{LAYER_CLASSES[name]} {name}" if name in LAYER_CLASSES else None


def after_load(model, device: str) -> None:
    """A bitsandbytes 4-bit checkpoint needs the same CPU guard as a model quantized on load (bnb.after_load)."""
    from vlmbench.quantize import bnb
    bnb.after_load(model, device)
