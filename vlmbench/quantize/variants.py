"""The variant registry: a name maps to what gets quantized, as data.

Why it exists: a variant must be impossible to mistype into the baseline (an unknown name is an
error listing the known ones), and each definition says which components are int8 so that the
census (`vlmbench.quantize.census`) can prove after loading that the model really is what the name says.
A variant that quantizes nothing names its own compute dtype (`fp16` runs float16, `bf16` runs
bfloat16), so that its name never lies about what ran; the int8 variants keep every layer they do
not quantize in `precision.language_model` (see `compute_dtype`).

Components of Qwen2.5-VL in transformers 5: `model.visual` (the vision tower, merger included),
`model.language_model` (the decoder) and `lm_head` (tied to the embeddings in the 3B model, always
kept 16-bit).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Optional

COMPONENT_PREFIXES = {
    "vision": "model.visual",
    "language_model": "model.language_model",
    "lm_head": "lm_head",
}


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    int8_components: frozenset  # names from COMPONENT_PREFIXES
    dtype: Optional[str] = None  # the variant's own compute dtype; None: precision.language_model decides

    @property
    def quantized(self) -> bool:
        return bool(self.int8_components)

    def skip_modules(self) -> list[str]:
        """bitsandbytes' `llm_int8_skip_modules` for this variant.

        transformers 5 matches these as a prefix from the start of the module name or as a suffix, so
        full prefixes are listed (a bare "language_model" would match nothing and quantize it all).
        Any list replaces the default one, so `lm_head` is always listed.
        """
        return [COMPONENT_PREFIXES[c] for c in COMPONENT_PREFIXES if c not in self.int8_components]


_REGISTRY: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    if variant.name in _REGISTRY:
        raise ValueError(f"variant {variant.name!r} is registered twice")
    unknown = set(variant.int8_components) - set(COMPONENT_PREFIXES)
    if unknown or "lm_head" in variant.int8_components:
        raise ValueError(f"variant {variant.name!r}: int8_components must be among vision, language_model")
    _REGISTRY[variant.name] = variant
    return variant


register(Variant("fp16", "every layer in float16 (the default baseline)", frozenset(), dtype="fp16"))
register(Variant("int8", "bitsandbytes LLM.int8 on every Linear of the vision tower and the language model; "
                         "lm_head and the other layers in precision.language_model", frozenset({"vision", "language_model"})))
register(Variant("int8_vit", "bitsandbytes LLM.int8 on the vision tower's Linear layers only; the other layers in "
                             "precision.language_model", frozenset({"vision"})))
register(Variant("bf16", "every layer in bfloat16 (the dtype Qwen2.5-VL was trained in)", frozenset(), dtype="bf16"))


def compute_dtype(variant: Variant, precision_dtype: str) -> str:
    """The dtype ('fp16', 'bf16' or 'fp32') of the layers `variant` does not quantize.

    A variant that names its dtype (fp16, bf16) runs in it whatever `precision.language_model`
    says; the int8 variants run their other layers in `precision_dtype` (precision.language_model).
    """
    return variant.dtype or precision_dtype


def known_variant_names() -> list[str]:
    return list(_REGISTRY)


def get_variant(name: str) -> Variant:
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise KeyError(f"unknown variant {name!r}.{hint} Known variants: {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]
