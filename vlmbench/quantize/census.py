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


def take_census(model: nn.Module, variant: Optional[Variant] = None,
                components: Optional[Mapping[str, tuple]] = None) -> dict[str, dict]:
    """Per component: {'linear': Linear layers, 'quantized': how many are quantized, 'methods': {label: count}}.

    `components`: component -> module-name prefixes; None: those of the model's family (`family_components`).
    Linear layers are nn.Linear (bitsandbytes modules subclass it; torchao keeps it) and the quantized
    layers of formats that do not subclass it (AWQ, GPTQ). 'other' appears only when it holds a Linear layer.
    With `variant`, a 16-bit Linear layer of one of its quantized components that its method's kernels cannot
    take (the method family's `ineligible_reason`, e.g. torchao fp8 on a width not a multiple of 16) is also
    counted under 'ineligible' and 'ineligible_reasons' {reason: count}; keys present only when not 0.
    """
    components = family_components(model) if components is None else components
    counts = {c: {"linear": 0, "quantized": 0, "methods": {}} for c in [*components, "other"]}
    why_not = _ineligible_rule(variant)
    for name, module in model.named_modules():
        kind = layer_kind(module)
        if isinstance(module, nn.Linear) or kind:
            component = _component_of(name, components)
            _count_layer(counts[component], kind, None if kind else why_not(component, module))
    return {c: v for c, v in counts.items() if v["linear"] or c != "other"}


def _ineligible_rule(variant: Optional[Variant]):
    """(component, module) -> why the variant's method cannot quantize this layer of one of its components, or
    None (the method family's `ineligible_reason`, if it has one; layers of other components are not asked)."""
    rule = None
    if variant is not None and variant.quantized:
        from vlmbench.quantize.methods import family_of
        rule = getattr(family_of(variant.method_spec()), "ineligible_reason", None)
    if rule is None:
        return lambda component, module: None
    return lambda component, module: rule(variant, module) if component in variant.components else None


def _count_layer(entry: dict, kind: Optional[str], ineligible: Optional[str]) -> None:
    entry["linear"] += 1
    if kind:
        entry["quantized"] += 1
        entry["methods"][kind] = entry["methods"].get(kind, 0) + 1
    if ineligible:
        entry["ineligible"] = entry.get("ineligible", 0) + 1
        reasons = entry.setdefault("ineligible_reasons", {})
        reasons[ineligible] = reasons.get(ineligible, 0) + 1


def has_method(census: dict, component: str, label_start: str) -> bool:
    """Whether the census found, in `component`, a quantized layer whose label starts with `label_start`
    (e.g. 'bitsandbytes Linear8bitLt': LLM.int8 layers)."""
    return any(label.startswith(label_start) for label in census.get(component, {}).get("methods", {}))


def expected_label(variant: Variant) -> str:
    """The label every census entry of `variant`'s quantized layers must have (a prefix for bitsandbytes 4-bit,
    whose label ends with the quant type; torchao's is exact: W8A8's says its activations are quantized)."""
    if variant.method == "int8":
        return "bitsandbytes Linear8bitLt"
    if variant.method in ("nf4", "fp4"):
        return f"bitsandbytes Linear4bit ({variant.method})"
    return torchao.EXPECTED_LABELS[variant.method]


def _label_matches(label: str, variant: Variant) -> bool:
    expected = expected_label(variant)
    return label == expected if variant.method in torchao.EXPECTED_LABELS else label.startswith(expected)


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
        found, total, eligible = entry["quantized"], entry["linear"], entry["linear"] - entry.get("ineligible", 0)
        if component in variant.components and (eligible == 0 or found != eligible):
            problems.append(f"{component}: {found} of {total} Linear layers quantized, expected {_all_eligible(entry)}")
        if component not in variant.components and found:
            problems.append(f"{component}: {found} of {total} Linear layers quantized, expected none")
        wrong = [label for label in entry["methods"] if variant.quantized and not _label_matches(label, variant)]
        if wrong:
            problems.append(f"{component}: quantized by {', '.join(wrong)}, expected {expected_label(variant).strip()}")
    return problems


def _all_eligible(entry: dict) -> str:
    """'all' or 'the 66 its kernels take (96 ineligible: ...)'."""
    if not entry.get("ineligible"):
        return "all"
    reasons = "; ".join(entry.get("ineligible_reasons", {}))
    return f"the {entry['linear'] - entry['ineligible']} its kernels take ({entry['ineligible']} ineligible: {reasons})"


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
    return " ".join(f"{c}:{e.get('quantized', e.get('int8', 0))}/{e['linear']}{_ineligible_note(e)}"
                    for c, e in census.items() if c != "other")


def _ineligible_note(entry: dict) -> str:
    """'' or ' (96 ineligible)': Linear layers the variant's method cannot take, left 16-bit."""
    return f" ({entry['ineligible']} ineligible)" if entry.get("ineligible") else ""


def methods_cell(census: Optional[dict]) -> str:
    """The distinct methods found, e.g. 'bitsandbytes Linear4bit (nf4)'; '16-bit' when none is."""
    labels = sorted({label for entry in (census or {}).values() for label in entry.get("methods", {})})
    return ", ".join(labels) if labels else "16-bit"
