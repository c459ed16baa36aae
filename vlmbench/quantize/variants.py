"""The variant registry: a name maps to a method applied to components, as data.

Why it exists: a variant must be impossible to mistype into the baseline (an unknown name is an
error listing the known ones), and each definition says which method quantizes which components so
that the census (`vlmbench.quantize.census`) can prove after loading that the model really is what
the name says. A variant that quantizes nothing names its own compute dtype (`fp16` runs float16,
`bf16` runs bfloat16), so that its name never lies about what ran; the quantized variants keep every
layer they do not quantize in `precision.language_model` (see `compute_dtype`).

Components of Qwen2.5-VL in transformers 5: `model.visual` (the vision tower, merger included),
`model.language_model` (the decoder) and `lm_head` (tied to the embeddings in the 3B model, always
kept 16-bit).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Optional

from vlmbench.quantize.methods import Method, get_method

COMPONENT_PREFIXES = {
    "vision": "model.visual",
    "language_model": "model.language_model",
    "lm_head": "lm_head",
}
QUANTIZABLE_COMPONENTS = ("vision", "language_model")


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    method: Optional[str] = None  # a name from vlmbench.quantize.methods; None: nothing quantized
    components: frozenset = frozenset()  # quantized components, among QUANTIZABLE_COMPONENTS
    dtype: Optional[str] = None  # the variant's own compute dtype; None: precision.language_model decides
    options: tuple = ()  # (option, value) pairs overriding the method's defaults

    @property
    def quantized(self) -> bool:
        return self.method is not None

    @property
    def int8_components(self) -> frozenset:
        """The components bitsandbytes LLM.int8 quantizes (empty for any other method)."""
        return self.components if self.method == "int8" else frozenset()

    def method_spec(self) -> Method:
        return get_method(self.method)

    def option_values(self) -> dict:
        """The method's options: its library defaults, overridden by the definition's."""
        return {**self.method_spec().options, **dict(self.options)}

    def skip_modules(self) -> list[str]:
        """The modules the quantizer must leave alone (`llm_int8_skip_modules`, `modules_to_not_convert`).

        transformers 5 matches these as a prefix from the start of the module name or as a suffix, so
        full prefixes are listed (a bare "language_model" would match nothing and quantize it all).
        Any list replaces the default one, so `lm_head` is always listed.
        """
        return [COMPONENT_PREFIXES[c] for c in COMPONENT_PREFIXES if c not in self.components]


_REGISTRY: dict[str, Variant] = {}


def check_definition(variant: Variant) -> Variant:
    """`variant` if its method and components are known; ValueError naming the problem otherwise."""
    if variant.method is not None:
        try:
            get_method(variant.method)
        except KeyError as exc:
            raise ValueError(f"variant {variant.name!r}: {exc.args[0]}") from None
    unknown = sorted(set(variant.components) - set(QUANTIZABLE_COMPONENTS))
    if unknown:
        raise ValueError(f"variant {variant.name!r}: unknown component(s) {', '.join(map(repr, unknown))}; "
                         f"allowed: {', '.join(QUANTIZABLE_COMPONENTS)} (lm_head always stays 16-bit)")
    return variant


def register(variant: Variant) -> Variant:
    if variant.name in _REGISTRY:
        raise ValueError(f"variant {variant.name!r} is registered twice")
    _REGISTRY[variant.name] = check_definition(variant)
    return variant


BOTH = frozenset({"vision", "language_model"})
register(Variant("fp16", "every layer in float16 (the default baseline)", dtype="fp16"))
register(Variant("int8", "bitsandbytes LLM.int8 on every Linear of the vision tower and the language model; "
                         "lm_head and the other layers in precision.language_model", "int8", BOTH))
register(Variant("int8_vit", "bitsandbytes LLM.int8 on the vision tower's Linear layers only; the other layers in "
                             "precision.language_model", "int8", frozenset({"vision"})))
register(Variant("bf16", "every layer in bfloat16 (the dtype Qwen2.5-VL was trained in)", dtype="bf16"))


def compute_dtype(variant: Variant, precision_dtype: str) -> str:
    """The dtype ('fp16', 'bf16' or 'fp32') of the layers `variant` does not quantize.

    A variant that names its dtype (fp16, bf16) runs in it whatever `precision.language_model`
    says; the quantized variants run their other layers in `precision_dtype` (precision.language_model).
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
