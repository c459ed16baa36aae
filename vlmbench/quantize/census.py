"""The census: which Linear layers of a loaded model are quantized, per component, and by what.

Why it exists: quantization configs fail silently (a skip list that matches nothing quantizes the
whole model). Counting the layers after loading, and refusing a model whose counts contradict its
variant's definition, is the proof that `int8_vit` really is the vision tower alone in int8. The
census also names the method found on each layer (bitsandbytes modules, torchao tensor subclasses on
the weight, AWQ/GPTQ/compressed-tensors modules), which is what a `prequantized` checkpoint is known by.
"""
from __future__ import annotations

from typing import Mapping, Optional

from torch import nn

from vlmbench.quantize import bnb, prequantized, torchao
from vlmbench.quantize.variants import Variant

DETECTORS = (bnb.layer_kind, torchao.layer_kind, prequantized.layer_kind)


class CensusMismatch(RuntimeError):
    """The loaded model is not what its variant promises."""


def _component_of(module_name: str, components: Mapping[str, tuple]) -> str:
    for component, prefixes in components.items():
        if any(module_name == prefix or module_name.startswith(prefix + ".") for prefix in prefixes):
            return component
    return "other"


def family_components(model: nn.Module) -> Mapping[str, tuple]:
    """component -> module-name prefixes of `model`'s family (ConfigError for a family vlmbench does not know)."""
    from vlmbench.models.families import family_of_model
    return family_of_model(model).components


def layer_kind(module: nn.Module) -> Optional[str]:
    """The census label of a quantized layer ('bitsandbytes Linear4bit (nf4)', 'torchao Int8Tensor', ...), else None."""
    for detect in DETECTORS:
        kind = detect(module)
        if kind:
            return kind
    return None


def take_census(model: nn.Module, components: Optional[Mapping[str, tuple]] = None) -> dict[str, dict]:
    """Per component: {'linear': Linear layers, 'quantized': how many are quantized, 'methods': {label: count}}.

    `components`: component -> module-name prefixes; None: those of the model's family (`family_components`).
    Linear layers are nn.Linear (bitsandbytes modules subclass it; torchao keeps it) and the quantized
    layers of formats that do not subclass it (AWQ, GPTQ). 'other' appears only when it holds a Linear layer.
    """
    components = family_components(model) if components is None else components
    counts = {c: {"linear": 0, "quantized": 0, "methods": {}} for c in [*components, "other"]}
    for name, module in model.named_modules():
        kind = layer_kind(module)
        if isinstance(module, nn.Linear) or kind:
            entry = counts[_component_of(name, components)]
            entry["linear"] += 1
            if kind:
                entry["quantized"] += 1
                entry["methods"][kind] = entry["methods"].get(kind, 0) + 1
    return {c: v for c, v in counts.items() if v["linear"] or c != "other"}


def has_method(census: dict, component: str, label_start: str) -> bool:
    """Whether the census found, in `component`, a quantized layer whose label starts with `label_start`
    (e.g. 'bitsandbytes Linear8bitLt': LLM.int8 layers)."""
    return any(label.startswith(label_start) for label in census.get(component, {}).get("methods", {}))


def expected_label(variant: Variant) -> str:
    """The start every census label of `variant`'s quantized layers must have."""
    if variant.method == "int8":
        return "bitsandbytes Linear8bitLt"
    if variant.method in ("nf4", "fp4"):
        return f"bitsandbytes Linear4bit ({variant.method})"
    return "torchao "


def check_census(census: dict, variant: Variant) -> None:
    """Raises CensusMismatch unless the variant's components are fully quantized by its method and all others 16-bit.

    A `prequantized` variant declares no components (the checkpoint decides): it must hold at least one
    quantized layer, and the census records which.
    """
    problems = _prequantized_problems(census) if variant.method == "prequantized" else _problems(census, variant)
    if problems:
        raise CensusMismatch(f"variant {variant.name!r} loaded wrongly ({'; '.join(problems)}); it is not "
                             "benchmarked. Check the quantizer's skip list for this transformers version.")


def _problems(census: dict, variant: Variant) -> list[str]:
    problems = []
    for component, entry in census.items():
        found, total = entry["quantized"], entry["linear"]
        if component in variant.components and (total == 0 or found != total):
            problems.append(f"{component}: {found} of {total} Linear layers quantized, expected all")
        if component not in variant.components and found:
            problems.append(f"{component}: {found} of {total} Linear layers quantized, expected none")
        wrong = [label for label in entry["methods"] if variant.quantized and not label.startswith(expected_label(variant))]
        if wrong:
            problems.append(f"{component}: quantized by {', '.join(wrong)}, expected {expected_label(variant).strip()}")
    return problems


def _prequantized_problems(census: dict) -> list[str]:
    if any(entry["quantized"] for entry in census.values()):
        return []
    return ["no quantized layer found: the checkpoint loaded in 16-bit"]


def census_cell(census: Optional[dict]) -> str:
    """'vision:12/12 language_model:0/14 lm_head:0/1' (quantized/Linear per component); '' without a census.

    Reads the records of older runs too, whose census counted 'int8' where it now counts 'quantized'.
    """
    if not census:
        return ""
    return " ".join(f"{c}:{e.get('quantized', e.get('int8', 0))}/{e['linear']}" for c, e in census.items()
                    if c != "other")


def methods_cell(census: Optional[dict]) -> str:
    """The distinct methods found, e.g. 'bitsandbytes Linear4bit (nf4)'; '16-bit' when none is."""
    labels = sorted({label for entry in (census or {}).values() for label in entry.get("methods", {})})
    return ", ".join(labels) if labels else "16-bit"
