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


register_method(Method("int8", "bnb", "bitsandbytes LLM.int8 (8-bit weights, outliers in 16-bit)",
                       MappingProxyType({"threshold": 6.0})))
