"""The census: which Linear layers of a loaded model are quantized, per component.

Why it exists: quantization configs fail silently (a skip list that matches nothing quantizes the
whole model). Counting the layers after loading, and refusing a model whose counts contradict its
variant's definition, is the proof that `int8_vit` really is the vision tower alone in int8.
"""
from __future__ import annotations

from torch import nn

from vlmbench.quantize.variants import COMPONENT_PREFIXES, Variant


class CensusMismatch(RuntimeError):
    """The loaded model is not what its variant promises."""


def _component_of(module_name: str) -> str:
    for component, prefix in COMPONENT_PREFIXES.items():
        if module_name == prefix or module_name.startswith(prefix + "."):
            return component
    return "other"


def _is_int8(module: nn.Module) -> bool:
    return type(module).__name__ == "Linear8bitLt"


def take_census(model: nn.Module) -> dict[str, dict[str, int]]:
    """Counts Linear layers and int8 Linear layers under each component of `model`."""
    counts = {c: {"linear": 0, "int8": 0} for c in [*COMPONENT_PREFIXES, "other"]}
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):  # Linear8bitLt subclasses nn.Linear
            entry = counts[_component_of(name)]
            entry["linear"] += 1
            entry["int8"] += int(_is_int8(module))
    return {c: v for c, v in counts.items() if v["linear"] or c != "other"}


def check_census(census: dict, variant: Variant) -> None:
    """Raises CensusMismatch unless int8 components are fully int8 and all others fully 16-bit."""
    problems = []
    for component, entry in census.items():
        want_all = component in variant.int8_components
        if want_all and (entry["linear"] == 0 or entry["int8"] != entry["linear"]):
            problems.append(f"{component}: {entry['int8']} of {entry['linear']} Linear layers int8, expected all")
        if not want_all and entry["int8"]:
            problems.append(f"{component}: {entry['int8']} of {entry['linear']} Linear layers int8, expected none")
    if problems:
        raise CensusMismatch(f"variant {variant.name!r} loaded wrongly ({'; '.join(problems)}); it is not "
                             "benchmarked. Check the quantizer's skip list for this transformers version.")
