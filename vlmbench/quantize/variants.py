"""The variant registry: a name maps to a method applied to components, as data.

Why it exists: a variant must be impossible to mistype into the baseline (an unknown name is an
error listing the known ones), and each definition says which method quantizes which components so
that the census (`vlmbench.quantize.census`) can prove after loading that the model really is what
the name says. A variant that quantizes nothing names its own compute dtype (`fp16` runs float16,
`bf16` runs bfloat16), so that its name never lies about what ran; the quantized variants keep every
layer they do not quantize in `precision.language_model` (see `compute_dtype`).

Components: the vision tower (with its merger or projector), the language model and `lm_head` (tied to
the embeddings in most checkpoints, always kept 16-bit). Their module names differ per family; each
family's prefixes are in vlmbench.models.families and are passed in (`skip_modules`): a default here
would be one family's names, silently wrong for the others.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Mapping, Optional

from vlmbench.quantize.methods import Method, get_method, known_method_names

QUANTIZABLE_COMPONENTS = ("vision", "language_model")


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    method: Optional[str] = None  # a name from vlmbench.quantize.methods; None: nothing quantized
    components: frozenset = frozenset()  # quantized components, among QUANTIZABLE_COMPONENTS
    dtype: Optional[str] = None  # the variant's own compute dtype; None: precision.language_model decides
    options: tuple = ()  # (option, value) pairs overriding the method's defaults
    model_id: Optional[str] = None  # prequantized: the checkpoint (Hub id or folder) loaded instead of model_id
    revision: Optional[str] = None  # prequantized: its Hub revision (null: main)

    @property
    def quantized(self) -> bool:
        return self.method is not None

    def method_spec(self) -> Method:
        return get_method(self.method)

    def option_values(self) -> dict:
        """The method's options: its library defaults, overridden by the definition's (an int where the default is a
        float is passed as a float: BitsAndBytesConfig refuses `llm_int8_threshold=4`)."""
        defaults = self.method_spec().options
        given = {k: float(v) if isinstance(defaults.get(k), float) else v for k, v in self.options}
        return {**defaults, **given}

    def skip_modules(self, components: Mapping[str, tuple]) -> list[str]:
        """The modules the quantizer must leave alone (`llm_int8_skip_modules`, `modules_to_not_convert`).

        `components`: component -> module-name prefixes of the model's family (Family.components).
        transformers 5 matches these as a prefix from the start of the module name or as a suffix, so
        full prefixes are listed (a bare "language_model" would match nothing and quantize it all).
        Any list replaces the default one, so `lm_head` is always listed.
        """
        return [prefix for c, prefixes in components.items() if c not in self.components for prefix in prefixes]


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
        hints = [f"{name!r} -> '{component_meant(name)}'" for name in unknown if component_meant(name)]
        hint = f" Did you mean {', '.join(hints)}?" if hints else ""
        raise ValueError(f"variant {variant.name!r}: unknown component(s) {', '.join(map(repr, unknown))};{hint} "
                         f"allowed: {', '.join(QUANTIZABLE_COMPONENTS)} (lm_head always stays 16-bit)")
    return variant


# the field's other names for the components, for the did-you-mean of an unknown one
COMPONENT_ALIASES = {"vit": "vision", "visual": "vision", "vision_tower": "vision", "lm": "language_model",
                     "llm": "language_model", "text": "language_model", "text_model": "language_model"}


def component_meant(name) -> Optional[str]:
    """The component an unknown name most likely means (an alias such as 'vit', or a near spelling); None if none."""
    key = str(name).lower()
    close = difflib.get_close_matches(key, QUANTIZABLE_COMPONENTS, n=1)
    return COMPONENT_ALIASES.get(key) or (close[0] if close else None)


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
register(Variant("int8_lm", "bitsandbytes LLM.int8 on the language model's Linear layers only; the vision tower and "
                            "the other layers in precision.language_model", "int8", frozenset({"language_model"})))
register(Variant("bf16", "every layer in bfloat16 (the dtype Qwen2.5-VL was trained in)", dtype="bf16"))
# methods whose kernels take bfloat16 only: torchao's int4 tinygemm, and torch's row-wise scaled float8 matmul
# (_scaled_mm with per-row scales returns bfloat16 only); their variants name that dtype
METHOD_DTYPES = {"w4a16": "bf16", "fp8": "bf16"}
PLACEMENTS = {"": (BOTH, "the vision tower and the language model"), "_vit": (frozenset({"vision"}), "the vision tower only"),
              "_lm": (frozenset({"language_model"}), "the language model only")}
for _method in ("nf4", "fp4", "w8a16", "w8a8", "fp8", "w4a16"):
    for _suffix, (_components, _where) in PLACEMENTS.items():
        _rest = METHOD_DTYPES.get(_method, "precision.language_model")
        register(Variant(f"{_method}{_suffix}", f"{get_method(_method).description} on {_where}; lm_head and the other "
                         f"layers in {_rest}", _method, _components, dtype=METHOD_DTYPES.get(_method)))


def compute_dtype(variant: Variant, precision_dtype: str) -> str:
    """The dtype ('fp16', 'bf16' or 'fp32') of the layers `variant` does not quantize.

    A variant that names its dtype (fp16, bf16) runs in it whatever `precision.language_model`
    says; the quantized variants run their other layers in `precision_dtype` (precision.language_model).
    """
    return variant.dtype or precision_dtype


DEFINITION_KEYS = ("method", "components", "options", "model_id", "revision", "description")


# a variant name becomes part of file names (<variant>_batch_<id>.csv, variant_<variant>.json): letters, digits, '_'
# and '-' only, starting with a letter or digit ("../x" wrote its chunks outside the results folder)
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
GROUP_SIZES = (32, 64, 128, 256)  # torchao's int4 group sizes (Int4WeightOnlyConfig)


def check_name(name) -> None:
    """ValueError unless `name` is a safe variant name (SAFE_NAME, without '_batch_')."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or "_batch_" in name:
        raise ValueError(f"variant name {name!r} is not allowed: use 1-64 letters, digits, '_' or '-', starting with a "
                         "letter or digit, without '_batch_' (it names the variant's files in the results folder)")


def variant_from_definition(name: str, spec: dict) -> Variant:
    """The Variant a `variant_definitions` entry declares; ValueError naming the problem and the fix.

    `spec`: {method, components (default: vision and language_model; none for prequantized), options
    (the method's own, e.g. threshold, double_quant, group_size), model_id and revision (prequantized only)}.
    """
    check_name(name)
    if not isinstance(spec, dict):
        raise ValueError(f"variant {name!r}: a definition is a mapping such as {{method: nf4, components: [language_model]}}")
    unknown = [k for k in spec if k not in DEFINITION_KEYS]
    if unknown:
        raise ValueError(f"variant {name!r}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(DEFINITION_KEYS)}")
    if name in _REGISTRY:
        raise ValueError(f"variant {name!r} is built in; give the definition another name")
    if "method" not in spec:
        raise ValueError(f"variant {name!r}: 'method' is missing; one of {', '.join(known_method_names())}")
    variant = _definition_variant(name, spec)
    _check_method_fields(variant, spec)
    return check_definition(variant)


def _definition_variant(name: str, spec: dict) -> Variant:
    prequantized = spec["method"] == "prequantized"
    components = frozenset(spec.get("components", [] if prequantized else BOTH))
    options = tuple(sorted((spec.get("options") or {}).items()))
    given = f" ({', '.join(f'{k}={v!r}' for k, v in options)})" if options else ""
    where = ', '.join(sorted(components)) or 'the checkpoint'
    description = spec.get("description") or f"user-defined: {spec['method']}{given} on {where}"
    return Variant(name, description, spec["method"], components, options=options,
                   dtype=METHOD_DTYPES.get(spec["method"]), model_id=spec.get("model_id"), revision=spec.get("revision"))


def _check_method_fields(variant: Variant, spec: dict) -> None:
    check_definition(Variant(variant.name, "", variant.method))  # the method first: did-you-mean
    method = get_method(variant.method)
    bad = [k for k in dict(variant.options) if k not in method.options]
    if bad:
        raise ValueError(f"variant {variant.name!r}: method {method.name!r} has no option(s) {', '.join(map(repr, bad))}; "
                         f"its options: {', '.join(method.options) or 'none'}")
    for option, value in variant.options:
        why = bad_option_value(option, value, method.options[option])
        if why:
            raise ValueError(f"variant {variant.name!r}: option {option!r} of method {method.name!r} is {value!r}, {why}")
    if (variant.method == "prequantized") != bool(variant.model_id):
        raise ValueError(f"variant {variant.name!r}: model_id is required for method prequantized (the quantized "
                         "checkpoint) and allowed for no other method")
    if variant.method == "prequantized" and variant.components:
        raise ValueError(f"variant {variant.name!r}: a prequantized checkpoint decides its own components; remove 'components'")
    if variant.method != "prequantized" and not variant.components:
        raise ValueError(f"variant {variant.name!r}: components is empty; name vision, language_model or both")


def bad_option_value(option: str, value, default) -> Optional[str]:
    """Why `value` cannot be `option` (whose library default is `default`), naming what is allowed; None if it can.

    The type is the default's (an int is a float too: `threshold: 4` is 4.0); `group_size` is one of GROUP_SIZES and
    `threshold` (LLM.int8's outlier threshold) at least 0.
    """
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "but must be true or false"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(default, int) and isinstance(value, float)):
        return f"but must be {'an integer' if isinstance(default, int) else 'a number'} (the default is {default!r})"
    if option == "group_size" and value not in GROUP_SIZES:
        return f"but must be one of {', '.join(map(str, GROUP_SIZES))}"
    if value != value or value in (float("inf"), float("-inf")):
        return "but must be a finite number"
    if option == "threshold" and value < 0:
        return "but must be 0 or more"
    return None


def canonical_definition(name: str, spec: dict) -> dict:
    """What a `variant_definitions` entry computes, written one way: method, sorted components, every option
    with the library default filled in and its default's type (threshold 4 -> 4.0), model_id and revision where
    set. The description is left out: it changes no result. This is what the variant's fingerprint hashes."""
    variant = variant_from_definition(name, spec)
    canonical = {"method": variant.method, "components": sorted(variant.components), "options": variant.option_values()}
    canonical.update({k: getattr(variant, k) for k in ("model_id", "revision") if getattr(variant, k) is not None})
    return canonical


def defined_variants(definitions: Optional[dict]) -> dict[str, Variant]:
    """name -> Variant for each `variant_definitions` entry (ValueError on the first bad one)."""
    return {name: variant_from_definition(name, spec) for name, spec in (definitions or {}).items()}


def known_variant_names(definitions: Optional[dict] = None) -> list[str]:
    return [*_REGISTRY, *(definitions or {})]


def get_variant(name: str, definitions: Optional[dict] = None) -> Variant:
    """The built-in variant `name`, or the one `definitions` (config key variant_definitions) declares."""
    if name in (definitions or {}):
        return variant_from_definition(name, definitions[name])
    if name not in _REGISTRY:
        known = known_variant_names(definitions)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise KeyError(f"unknown variant {name!r}.{hint} Known variants: {', '.join(known)}.")
    return _REGISTRY[name]


def unrunnable_reason(variant: Variant, device: str, capability: Optional[tuple]) -> Optional[str]:
    """Why `variant` cannot run on `device` (GPU compute `capability`), checked before any model loads; None if it can.

    The method's hardware needs (fp8: compute capability 8.9; w4a16: a CUDA GPU), and for `prequantized`
    the packages its checkpoint's quant_method needs, named with the pip command.
    """
    if not variant.quantized:
        return None
    from vlmbench.quantize.methods import unmet_requirement
    why = unmet_requirement(variant.method_spec(), device, capability)
    if why is None and variant.method == "prequantized":
        from vlmbench.quantize.prequantized import refusal
        why = refusal(variant.model_id, variant.revision)
    return why and f"variant {variant.name!r} cannot run here: {why}"
