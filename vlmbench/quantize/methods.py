"""The registry of quantization methods: a name maps to the module of its family, loaded on first use.

Why it exists: a variant names a method (`int8`, `nf4`, `w8a16`, ...); the method says which library
quantizes (bitsandbytes, torchao, or a checkpoint that is already quantized), which options it takes with
the library's defaults, and what hardware it needs. The family modules (`vlmbench.quantize.bnb`,
`.torchao`, `.prequantized`) import their library only inside their functions, and are themselves
imported only when a variant uses them (`family_of`), so that a run of fp16 and int8 never imports torchao.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Mapping, Optional


@dataclass(frozen=True)
class Method:
    name: str
    family: str  # module under vlmbench.quantize that builds its config and recognises its layers
    description: str
    options: Mapping = field(default_factory=lambda: MappingProxyType({}))  # option -> the library's default
    needs_cuda: bool = False
    min_compute_capability: Optional[tuple] = None  # (major, minor) of the GPU, where the kernels need it


_METHODS: dict[str, Method] = {}


def register_method(method: Method) -> Method:
    if method.name in _METHODS:
        raise ValueError(f"method {method.name!r} is registered twice")
    _METHODS[method.name] = method
    return method


def known_method_names() -> list[str]:
    return list(_METHODS)


def get_method(name: str) -> Method:
    """The registered method `name`; KeyError with a did-you-mean and the known names otherwise."""
    if name not in _METHODS:
        close = difflib.get_close_matches(str(name), list(_METHODS), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise KeyError(f"unknown quantization method {name!r}.{hint} Known methods: {', '.join(_METHODS)}.")
    return _METHODS[name]


def family_of(method: Method) -> ModuleType:
    """The method's family module (imported now, on first use)."""
    return importlib.import_module(f"vlmbench.quantize.{method.family}")


def unmet_requirement(method: Method, device: str, capability: Optional[tuple]) -> Optional[str]:
    """Why `method` cannot run on `device` ('cuda'/'cpu') with GPU compute `capability` (major, minor); None if it can."""
    need = method.min_compute_capability
    gpu = f"a CUDA GPU of compute capability {need[0]}.{need[1]} or more (H100, H200, L4, RTX 40xx)" if need else "a CUDA GPU"
    if method.needs_cuda and device != "cuda":
        return f"method {method.name!r} ({method.description}) needs {gpu}; this run's device is {device}"
    if need and capability is not None and tuple(capability) < need:
        return f"method {method.name!r} ({method.description}) needs {gpu}; this GPU has {capability[0]}.{capability[1]}"
    return None


def _options(**defaults) -> Mapping:
    return MappingProxyType(defaults)


register_method(Method("int8", "bnb", "bitsandbytes LLM.int8 (8-bit weights, outliers in 16-bit)",
                       _options(threshold=6.0)))
register_method(Method("nf4", "bnb", "bitsandbytes 4-bit NormalFloat weights, computing in the variant's 16-bit dtype",
                       _options(double_quant=False)))
register_method(Method("fp4", "bnb", "bitsandbytes 4-bit float weights, computing in the variant's 16-bit dtype",
                       _options(double_quant=False)))
register_method(Method("w8a16", "torchao", "torchao int8 weight-only (Int8WeightOnlyConfig)"))
register_method(Method("w8a8", "torchao", "torchao int8 weights with dynamic int8 activations "
                                          "(Int8DynamicActivationInt8WeightConfig)"))
register_method(Method("fp8", "torchao", "torchao float8 weights with dynamic per-row float8 activations "
                                         "(Float8DynamicActivationFloat8WeightConfig, PerRow; bfloat16 only, so its "
                                         "variants run in bf16)",
                       needs_cuda=True, min_compute_capability=(8, 9)))
register_method(Method("w4a16", "torchao", "torchao int4 weight-only (Int4WeightOnlyConfig, tinygemm packing; "
                                           "bfloat16 only, so its variants run in bf16)",
                       _options(group_size=128), needs_cuda=True))
register_method(Method("prequantized", "prequantized", "a checkpoint already quantized (AWQ, GPTQ, compressed-tensors, "
                                                       "bitsandbytes or torchao saved by transformers), loaded "
                                                       "with the loader its quantization_config names"))
