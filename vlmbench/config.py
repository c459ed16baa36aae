"""The experiment description: YAML in, one frozen, validated ExperimentConfig out.

Why it exists: every other module reads settings from one object, so a typo or a wrong type is
caught here, before any model loads, with a message that names the key, the value and what is
allowed. The same object is written back as the `experiment_config_<timestamp>.yaml` snapshot, and
its results-relevant fields hash to the fingerprint that guards resumed runs.

The seed's keys (experiment_name, model_id, quantizer, precision, dataset, seed, inference) keep
their meaning; the other sections are vlmbench's extensions and all have defaults.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import os
import re
import reprlib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from vlmbench.strictyaml import MAX_CONFIG_BYTES, strict_load
from vlmbench.engines import ENGINE_CHOICES

DEFAULT_CONFIG_NAME = "default.yaml"


class VariantDefinitions(dict):
    """The type of config key variant_definitions: variant name -> definition (vlmbench.quantize.variants)."""
QUANTIZERS = ("bitsandbytes_linear8bitlt",)
DTYPES = ("fp16", "bf16", "fp32")
MODEL_WEIGHTS = ("pretrained", "random", "embedded")
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2")
# Fields that do not change what a chunk CSV contains: they stay out of the fingerprint.
NON_RESULT_FIELDS = ("experiment_name", "variants", "baseline", "quality", "results_dir", "thresholds",
                     "inference.prefetch_batches", "inference.decode_workers", "inference.cpu_threads",
                     "inference.progress_interval_s", "inference.compile_vision",
                     "dataset.hub_endpoint", "dataset.image_url_prefix",
                     "dataset.image_cache_dir", "dataset.download_workers", "dataset.allow_missing_images",
                     "dataset.retry_unavailable_images")


# Fields added after results existed whose null means the old behaviour: left out of the fingerprint
# while null, so results made before they existed keep their fingerprint.
OPTIONAL_RESULT_FIELDS = ("model.revision", "model.identity", "model.architecture")


# Summary fields (not config keys) that the regression gate also compares with the baseline's; each may be
# named in thresholds.allow_differences like a result field.
GATE_SUMMARY_FIELDS = ("cider_scoring.tokenizer",)


# written into snapshots, derived, never read back
SNAPSHOT_ONLY_KEYS = ("fingerprint", "variant_fingerprints", "resolved")


class ConfigError(ValueError):
    """A config problem, with a message meant for the person who wrote the YAML."""


def _help(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING, auto: bool = False):
    """A field with its help text; `auto=True` lets the YAML value 'auto' stand for null."""
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text, "auto": auto})


@dataclass(frozen=True)
class PrecisionConfig:
    language_model: str = _help("dtype of every layer a quantized variant does not quantize: fp16, bf16 or fp32 (the "
                                "fp16 and bf16 variants always run in the dtype they are named after, fp8 and w4a16 "
                                "variants in bf16, the only dtype their kernels take)", "fp16")


@dataclass(frozen=True)
class DatasetConfig:
    hf_parquet_prefix: Optional[str] = _help("Hub dataset prefix, hf://datasets/<owner>/<name>/",
                                             "hf://datasets/phiyodr/coco2017/")
    split_file: Optional[str] = _help("parquet file inside the Hub dataset",
                                      "data/validation-00000-of-00001-e3c37e369512a3aa.parquet")
    revision: Optional[str] = _help("Hub revision (commit hash) to pin; null = main, resolved hash recorded", None)
    hub_endpoint: Optional[str] = _help("Hub URL (a mirror); null = huggingface_hub's default / HF_ENDPOINT", None)
    limit: int = _help("number of images to caption (rows taken in the source's order)", 5000)
    parquet_path: Optional[str] = _help("a local parquet in the phiyodr/coco2017 schema instead of the Hub", None)
    coco_dir: Optional[str] = _help("a local COCO folder: val2017/*.jpg + annotations/captions_val2017.json", None)
    image_dir: Optional[str] = _help("local folder of images keyed by file_name (with a parquet source)", None)
    synthetic_images: Optional[int] = _help("generate a COCO-layout sample of this many drawn images (offline)", None)
    image_url_prefix: Optional[str] = _help("replace the http(s)://host/ part of coco_url with this mirror", None)
    image_cache_dir: Optional[str] = _help("where downloaded images are cached (default: ~/.cache/vlmbench/images)",
                                           None)
    download_workers: int = _help("parallel image downloads", 8)
    allow_missing_images: bool = _help("go on when images are missing offline, recording them as failed", False)
    retry_unavailable_images: bool = _help("on a rerun, recompute a finished chunk whose rows failed because an "
                                           "image was unavailable once those images can be had; false keeps them",
                                           True)
    present_images_only: bool = _help("drop rows whose local image file is absent (a partial COCO folder)", False)
    shuffle: bool = _help("shuffle rows with `seed` before taking `limit` (default keeps source order)", False)


@dataclass(frozen=True)
class InferenceConfig:
    max_new_tokens: int = _help("tokens generated per caption at most", 40)
    min_new_tokens: Optional[int] = _help("force at least this many tokens (random weights never stop)", None)
    img_size: int = _help("each image is resized to img_size x img_size pixels before the processor", 1024)
    batch_size: int = _help("images per chunk (one CSV and one pytest case each); limit/5 in the seed", 1000)
    micro_batch_size: Optional[int] = _help("images per generate() call on the device; null or auto = sized per "
                                            "variant from free device memory (8 on CPU); opt-in, since the size it picks depends on the GPU "
                                            "and is recorded per variant but is not in the fingerprint", 8, auto=True)
    prompt: str = _help("the user instruction sent with each image",
                        "Describe this image in one short sentence.")
    prefetch_batches: int = _help("micro-batches read and preprocessed ahead of the device", 2)
    decode_workers: int = _help("threads that read and decode the images of one micro-batch in parallel (Pillow "
                                "releases the GIL while decoding and resizing)", 8)
    engine: str = _help("how captions are generated: stock (plain transformers generate), fast (varlen vision "
                        "attention, static KV cache + compiled decoding where the variant allows, processor on "
                        "the device) or auto (fast on CUDA, stock on CPU; the resolved name is recorded)", "auto")
    device_preprocessing: bool = _help("fast engine on CUDA: run the image processor on the device (side stream)",
                                       True)
    compile_vision: bool = _help("fast engine on CUDA: compile each vision block with torch.compile (regional "
                                 "compilation; the variant's record says whether and why); false = eager vision "
                                 "tower. A speed setting outside the fingerprint, like the decode step's compilation",
                                 True)
    progress_interval_s: float = _help("seconds between live progress lines during a chunk (0 = none)", 10.0)
    cpu_threads: Optional[int] = _help("torch intra-op threads of a CPU run (torch.set_num_threads); null: half the "
                                       "cores this process may use, at least 1 (torch's default, all of them, was "
                                       "about 10x slower than one on a shared 2-core machine); recorded per variant",
                                       None)


@dataclass(frozen=True)
class ModelConfig:
    weights: str = _help("pretrained (from model_id), random (built from config.json, random weights) or embedded "
                         "(the tiny captioner shipped in vlmbench/assets/tiny_captioner; model_id is then a label)",
                         "pretrained")
    config_dir: Optional[str] = _help("folder with config.json for random weights (default: model_id)", None)
    tiny: bool = _help("shrink the architecture to a tiny model of its family (tests, offline smoke run)", False)
    architecture: Optional[str] = _help("a transformers model_type (qwen2_5_vl, qwen2_vl, qwen3_vl, smolvlm, gemma3, "
                                        "llava_onevision) picking the architecture of model.weights: random without "
                                        "config_dir: the family's real shape, or with model.tiny its shrunk one; the "
                                        "processor is then built in code unless model.processor names a folder. "
                                        "null: config_dir's or model_id's config.json decides (qwen2_5_vl with "
                                        "model.tiny)", None)
    processor: Optional[str] = _help("folder of processor files; 'builtin' = tiny byte-level processor in code; "
                                     "null = same place as the model", None)
    revision: Optional[str] = _help("Hub revision (commit hash, branch or tag) of model_id to load; null = main; "
                                    "the commit read is recorded and is part of the fingerprint", None)
    identity: Optional[str] = _help("derived, leave unset: set at run start to the resolved Hub commit ('hub:<sha>') "
                                    "or a digest of a local folder's config and weight files ('local:<sha>', "
                                    "'embedded:<sha>' for model.weights: embedded); part "
                                    "of the fingerprint. Null for random weights (config + seed identify them)",
                                    None)
    attn_implementation: str = _help("attention kernel for transformers: sdpa, eager or flash_attention_2 (needs the "
                                     "flash_attn package, a CUDA device and a family that supports it)", "sdpa")
    device: str = _help("auto (cuda if available), cuda or cpu", "auto")


@dataclass(frozen=True)
class MeasureConfig:
    latency_images: int = _help("images per chunk timed alone (micro-batch 1) for latency", 4)
    warmup_batches: int = _help("untimed micro-batches before the first timed chunk of a variant", 1)
    model_size: bool = _help("measure size on disk with a temporary save_pretrained", True)
    energy: bool = _help("read NVML's energy counter (GPU only)", True)


@dataclass(frozen=True)
class Thresholds:
    cider_drop_abs: Optional[float] = _help("largest allowed drop of CIDEr against the baseline (absolute)", None)
    cider_drop_pct: Optional[float] = _help("largest allowed drop of CIDEr against the baseline (percent)", None)
    latency_increase_pct: Optional[float] = _help("largest allowed latency increase (percent)", None)
    throughput_drop_pct: Optional[float] = _help("largest allowed throughput drop (percent)", None)
    peak_vram_increase_pct: Optional[float] = _help("largest allowed peak VRAM increase (percent)", None)
    energy_increase_pct: Optional[float] = _help("largest allowed energy-per-image increase (percent)", None)


CIDER_DECISIONS = ("point", "interval")


@dataclass(frozen=True)
class GateConfig:
    default: Thresholds = _help("thresholds for every variant", factory=Thresholds)
    per_variant: dict = _help("variant name -> thresholds overriding the default", factory=dict)
    allow_differences: tuple = _help("result fields (dotted, e.g. inference.micro_batch_size) in which the baseline "
                                     "may differ from this run; any other difference refuses the baseline", ())
    cider_decision: str = _help("point: a CIDEr drop beyond its threshold fails; interval: it fails only when the "
                                "paired bootstrap interval of the drop also excludes 0", "point")
    require_checks: bool = _help("with a baseline, a gate that checked nothing (no threshold set, or none could be "
                                 "decided) fails the run instead of saying 'nothing checked' (for CI)", False)


@dataclass(frozen=True)
class QualityConfig:
    degenerate_max_pct: float = _help("a baseline with more degenerate captions than this (percent of its captioned "
                                      "images) is flagged in the terminal and the summary", 5.0)
    bootstrap_samples: int = _help("bootstrap resamples of the images for CIDEr-D confidence intervals", 1000)
    confidence: float = _help("confidence level of the bootstrap intervals (0.95 = 95%)", 0.95)
    examples: int = _help("degenerate captions kept as examples per kind and variant in the summary", 3)
    meteor: bool = _help("compute METEOR (Java; its JVM loads a 60 MB paraphrase table, 5-20 s per summary); "
                         "false: null with that reason", True)


@dataclass(frozen=True)
class ExperimentConfig:
    experiment_name: str = _help("a label for the run", "VLM_Quantization")
    model_id: str = _help("Hub id or local folder of the model", "Qwen/Qwen2.5-VL-3B-Instruct")
    quantizer: str = _help("legacy seed key, kept because it is in the fingerprint: its only allowed value is "
                           "bitsandbytes_linear8bitlt and it has no effect (each variant's method decides how it "
                           "quantizes: Quantization methods in the README)", "bitsandbytes_linear8bitlt")
    precision: PrecisionConfig = _help("dtypes", factory=PrecisionConfig)
    dataset: DatasetConfig = _help("where images and captions come from", factory=DatasetConfig)
    seed: int = _help("random seed (model init, shuffling, sampling of synthetic data)", 42)
    inference: InferenceConfig = _help("captioning settings", factory=InferenceConfig)
    variants: tuple = _help("variants to run, by registry name", ("fp16", "int8", "int8_vit"))
    variant_definitions: VariantDefinitions = _help(
        "more variants: name -> {method, components, options, model_id/revision for prequantized} (README: Variants)",
        factory=dict)
    baseline: Optional[str] = _help("the variant deltas, drift and CIDEr intervals compare against; one of variants "
                                    "(null: fp16, as in the seed)", None)
    model: ModelConfig = _help("how the model and processor are built", factory=ModelConfig)
    measure: MeasureConfig = _help("efficiency measurement settings", factory=MeasureConfig)
    thresholds: GateConfig = _help("regression gate against --vlm-baseline", factory=GateConfig)
    quality: QualityConfig = _help("degenerate captions, bootstrap intervals", factory=QualityConfig)
    results_dir: str = _help("folder for CSVs, summaries and plots", "results")

    def __post_init__(self):
        _validate(self)

    @property
    def baseline_variant(self) -> str:
        """The variant deltas compare against: `baseline`, or fp16 when it is not set."""
        return self.baseline or "fp16"

    @property
    def num_chunks(self) -> int:
        return -(-self.dataset.limit // self.inference.batch_size)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["variants"] = list(self.variants)
        data["thresholds"]["allow_differences"] = list(self.thresholds.allow_differences)
        return data

    def result_fields(self) -> dict:
        """The flattened fields that change results, every variant definition included (what the regression
        gate compares with a baseline summary's)."""
        return result_fields_of(self.to_dict())

    def experiment_fields(self) -> dict:
        """The result fields every variant shares: result_fields() without variant_definitions. What the
        experiment fingerprint hashes, so that declaring or editing one variant leaves the others' chunks valid."""
        return result_fields_of({**self.to_dict(), "variant_definitions": {}})

    def variant_fields(self, name: str) -> dict:
        """experiment_fields() plus `name`'s own definition (nothing more for a built-in variant): what
        variant_fingerprint hashes, and what a CSV of another definition is compared with."""
        return {**self.experiment_fields(), **definition_fields(name, self.variant_definitions)}

    @property
    def fingerprint(self) -> str:
        """The experiment's fingerprint (folder lock, snapshots, references.json). A config without
        definitions hashes exactly what it hashed before per-variant fingerprints existed."""
        return fingerprint_of(self.experiment_fields())

    def variant_fingerprint(self, name: str) -> str:
        """The fingerprint a chunk CSV (and variant record) of variant `name` carries: the experiment's for a
        built-in variant, else a hash of the experiment's fields and that one definition, so adding a
        variant or editing another's definition does not make this variant's finished chunks foreign."""
        if name not in self.variant_definitions:
            return self.fingerprint
        return fingerprint_of(self.variant_fields(name))

    @property
    def variant_fingerprints(self) -> dict[str, str]:
        """variant -> its fingerprint, for each variant of the run (recorded in the snapshot, so that a CSV
        of an older definition is explained by the fields that differ)."""
        return {name: self.variant_fingerprint(name) for name in self.variants}

    def replace(self, **changes) -> "ExperimentConfig":
        return dataclasses.replace(self, **changes)

    def with_engine(self, device: str) -> "ExperimentConfig":
        """This config with `inference.engine: auto` resolved for `device` (fast on CUDA, stock elsewhere).

        The resolved name is what the fingerprint hashes and the snapshot records, so results of the two
        engines never mix in one results folder.
        """
        from vlmbench.engines import resolve_engine
        engine = resolve_engine(self.inference.engine, device)
        return self.replace(inference=dataclasses.replace(self.inference, engine=engine))


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key != "per_variant":
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _is_result_field(key: str) -> bool:
    return not any(key == n or key.startswith(n + ".") for n in NON_RESULT_FIELDS)


def result_fields_of(data: dict) -> dict:
    """The flattened result fields of a plain config (`to_dict()`, a snapshot, a summary's `config`), each variant
    definition in its canonical form (so the regression gate, too, sees `threshold: 4` and `4.0` as one)."""
    flat = _flatten({**data, "variant_definitions": _canonical_definitions(data.get("variant_definitions") or {})})
    return {k: v for k, v in flat.items()
            if _is_result_field(k) and not (k in OPTIONAL_RESULT_FIELDS and v is None)}


def _canonical_definitions(definitions: dict) -> dict:
    """Each definition canonical (`canonical_definition`); one this vlmbench cannot read (an older summary's) as is."""
    from vlmbench.quantize.variants import canonical_definition
    canonical = {}
    for name, spec in definitions.items():
        try:
            canonical[name] = canonical_definition(name, spec)
        except (ValueError, KeyError, TypeError):
            canonical[name] = spec
    return canonical


def definition_fields(name: str, definitions: dict) -> dict:
    """The flattened result fields of variant `name`'s definition ({} for a built-in variant), in its canonical
    form (`canonical_definition`: `threshold: 4` and `4.0`, a default spelt out or left out, components in any
    order all hash alike). Flattened as result_fields_of does: `variant_definitions.<name>.<key>`, the keys the
    diff of a foreign CSV names."""
    if name not in definitions:
        return {}
    return result_fields_of({"variant_definitions": {name: definitions[name]}})


def fingerprint_of(fields: dict) -> str:
    """16 hex digits of the SHA-256 of the fields as sorted JSON (unchanged since the first results)."""
    blob = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def differing_fields(old: dict, new: dict) -> dict[str, str]:
    """Each results-relevant field that differs -> a line 'key: old -> new'."""
    keys = sorted(set(old) | set(new))
    return {k: f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)}


# ---------------------------------------------------------------- validation of values
def shown(value: Any, limit: int = 160) -> str:
    """A bounded repr for every error message of vlmbench (config, data cells, file names, CSV cells).

    Nested values are cut at depth 3 and after 5 items; a string longer than min(80, `limit`)
    characters keeps its start and end around "..." (quotes kept, so a file name keeps its extension);
    the whole is cut after `limit` characters (a trailing "..."). A huge or aliased value cannot blow
    up a message. Returns at most `limit` characters (`limit` >= 10).
    """
    brief = reprlib.Repr()
    brief.maxlevel, brief.maxlist, brief.maxtuple, brief.maxdict = 3, 5, 5, 5
    brief.maxstring = brief.maxother = min(80, limit)
    brief.maxlong = 40
    text = brief.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check(condition: bool, key: str, value: Any, allowed: str) -> None:
    if not condition:
        raise ConfigError(f"config key '{key}' has value {shown(value)}; allowed: {allowed}.")


def _validate(cfg: ExperimentConfig) -> None:
    from vlmbench.quantize.variants import known_variant_names  # registry lives with the variants

    _check(cfg.quantizer in QUANTIZERS, "quantizer", cfg.quantizer, ", ".join(QUANTIZERS))
    _check(cfg.precision.language_model in DTYPES, "precision.language_model", cfg.precision.language_model,
           ", ".join(DTYPES))
    _check(cfg.model.weights in MODEL_WEIGHTS, "model.weights", cfg.model.weights, ", ".join(MODEL_WEIGHTS))
    if cfg.model.weights == "embedded":
        _check(cfg.model.processor in (None, "builtin"), "model.processor", cfg.model.processor,
               "builtin or null with model.weights 'embedded' (the embedded captioner knows only the built-in "
               "byte-level tokenizer)")
    _check(cfg.model.device in ("auto", "cuda", "cpu"), "model.device", cfg.model.device, "auto, cuda, cpu")
    _check(cfg.model.attn_implementation in ATTN_IMPLEMENTATIONS, "model.attn_implementation",
           cfg.model.attn_implementation, ", ".join(ATTN_IMPLEMENTATIONS))
    _validate_architecture(cfg.model)
    _validate_ranges(cfg)
    _validate_texts(cfg)
    _check(cfg.inference.engine in ENGINE_CHOICES, "inference.engine", cfg.inference.engine, ", ".join(ENGINE_CHOICES))
    _check(cfg.inference.progress_interval_s >= 0, "inference.progress_interval_s", cfg.inference.progress_interval_s,
           "a number of seconds >= 0")
    _validate_definitions(cfg.variant_definitions)
    known = known_variant_names(cfg.variant_definitions)
    _validate_variants(cfg.variants, known)
    _validate_sources(cfg.dataset)
    for name in cfg.thresholds.per_variant:
        _validate_variants((name,), known, key="thresholds.per_variant")
    _validate_allowed_differences(cfg)
    _validate_quality(cfg)
    _validate_baseline(cfg)


def _validate_architecture(model: ModelConfig) -> None:
    """model.architecture: a known family (did-you-mean), and only where it decides (random weights, no config_dir)."""
    if model.architecture is None:
        return
    from vlmbench.models.families import get_family  # no torch: the table is plain data
    get_family(model.architecture, "config key 'model.architecture'")
    if model.weights != "random" or model.config_dir is not None:
        raise ConfigError(f"config key 'model.architecture' is {model.architecture!r}, but it picks the architecture "
                          "of model.weights: random without model.config_dir only; here the model's own config.json "
                          f"(model.weights: {model.weights}{', model.config_dir' if model.config_dir else ''}) "
                          "decides. Remove model.architecture, or set model.weights: random without config_dir.")


def _validate_allowed_differences(cfg: ExperimentConfig) -> None:
    names = [k for k in _flatten(dataclasses.asdict(cfg)) if _is_result_field(k)] + list(GATE_SUMMARY_FIELDS)
    for name in cfg.thresholds.allow_differences:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"config key 'thresholds.allow_differences' names {name!r}, which is not a result "
                              f"field.{hint} Allowed: dotted result fields such as inference.micro_batch_size, "
                              "inference.prompt, model_id.")


# Integer keys: (dotted key, lowest, highest or None, why the bound), checked by _validate_ranges. A bound
# given as a string names another key. Upper bounds exist where a value directly takes memory, disk or
# threads outside the model.
INT_RANGES = (
    ("seed", 0, 2**32 - 1, "numpy.random.seed's range (transformers.set_seed seeds numpy, torch and random)"),
    ("dataset.limit", 1, None, ""),
    ("dataset.synthetic_images", 1, 100_000, "about 1 GB of drawn 256x256 JPEGs at the top"),
    ("dataset.download_workers", 1, 32, "the HTTP connection pool holds 32 connections"),
    ("inference.max_new_tokens", 1, None, ""),
    ("inference.min_new_tokens", 0, "inference.max_new_tokens", ""),
    ("inference.img_size", 56, 3584, "Qwen2.5-VL's processor needs 56 px (2 x 28) and shrinks anything above "
                                     "max_pixels = 12845056 = 3584 x 3584 (preprocessor_config.json)"),
    ("inference.batch_size", 1, None, ""),
    ("inference.micro_batch_size", 1, "inference.batch_size",
     "a micro-batch is a part of one chunk: lower it or raise inference.batch_size; or auto (sized per variant "
     "from free device memory)"),
    ("inference.prefetch_batches", 0, 64, "each prefetched micro-batch holds its decoded images in memory"),
    ("inference.decode_workers", 1, 64, "one thread per image at most pays off; more only contend for the GIL"),
    ("inference.cpu_threads", 1, 1024, ""),
    ("measure.latency_images", 0, None, ""),
    ("measure.warmup_batches", 0, None, ""),
    ("quality.bootstrap_samples", 100, None, "fewer resamples give percentile bounds that move from seed to seed"),
    ("quality.examples", 0, None, ""),
)


def _lookup(cfg: ExperimentConfig, dotted: str) -> Any:
    value = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def _validate_ranges(cfg: ExperimentConfig) -> None:
    """Every integer key within INT_RANGES (null is allowed where the field is optional)."""
    for key, low, high, why in INT_RANGES:
        value = _lookup(cfg, key)
        if value is None:
            continue
        top = _lookup(cfg, high) if isinstance(high, str) else high
        allowed = (f"an integer from {low} to {top}" + (f" ({high})" if isinstance(high, str) else "")
                   if top is not None else f"an integer >= {low}") + (f"; {why}" if why else "")
        _check(low <= value and (top is None or value <= top), key, value, allowed)
    _validate_thresholds(cfg.thresholds)


def _validate_thresholds(gate: GateConfig) -> None:
    """Every threshold null or a finite number >= 0 (NaN would never be breached, a negative one always)."""
    sections = {"thresholds.default": gate.default,
                **{f"thresholds.per_variant.{name}": th for name, th in gate.per_variant.items()}}
    for prefix, thresholds in sections.items():
        for f in dataclasses.fields(thresholds):
            value = getattr(thresholds, f.name)
            if value is not None:
                _check(math.isfinite(value) and value >= 0, f"{prefix}.{f.name}", value, "null or a finite number >= 0")


def _validate_texts(cfg: ExperimentConfig) -> None:
    _check(bool(cfg.model_id.strip()), "model_id", cfg.model_id, "a Hub id or a local folder (not blank)")
    _check(bool(cfg.inference.prompt.strip()), "inference.prompt", cfg.inference.prompt, "a non-blank instruction")




def _validate_quality(cfg: ExperimentConfig) -> None:
    q = cfg.quality
    _check(cfg.thresholds.cider_decision in CIDER_DECISIONS, "thresholds.cider_decision",
           cfg.thresholds.cider_decision, ", ".join(CIDER_DECISIONS))
    _check(0 <= q.degenerate_max_pct <= 100, "quality.degenerate_max_pct", q.degenerate_max_pct, "0..100")
    _check(0.5 <= q.confidence < 1, "quality.confidence", q.confidence, "a number in [0.5, 1), e.g. 0.95")


def _validate_baseline(cfg: ExperimentConfig) -> None:
    """`baseline` is one of `variants`; the quantized variants that keep their other layers in
    precision.language_model (int8, nf4, ...: no dtype of their own) run them in the baseline's dtype.

    Variants whose method names its own dtype (fp8 and w4a16 run bf16: variants.METHOD_DTYPES) do not follow
    precision.language_model, so they are not refused here: `variants: [bf16, fp8], baseline: bf16` is the run that
    isolates their quantization. Against a baseline in another dtype their delta mixes both; the summary says so
    (summary.dtype_mix)."""
    from vlmbench.quantize.variants import get_variant
    if cfg.baseline is not None and cfg.baseline not in cfg.variants:
        raise ConfigError(f"config key 'baseline' names {cfg.baseline!r}, which is not in variants "
                          f"({', '.join(cfg.variants)}); add it to variants or name one of them.")
    if cfg.baseline_variant not in cfg.variants:
        return
    base_dtype = get_variant(cfg.baseline_variant, cfg.variant_definitions).dtype
    variants = {v: get_variant(v, cfg.variant_definitions) for v in cfg.variants}
    following = [v for v, variant in variants.items() if variant.quantized and variant.dtype is None]
    if base_dtype and following and base_dtype != cfg.precision.language_model:
        others = [v for v in cfg.variants if v != cfg.baseline_variant]
        raise ConfigError(
            f"config key 'precision.language_model' is {cfg.precision.language_model!r}, but the baseline variant "
            f"{cfg.baseline_variant!r} always runs in {base_dtype}: {', '.join(following)} would keep their other "
            f"layers in {cfg.precision.language_model} and their deltas would mix dtype with quantization. Either set "
            f"precision.language_model: {base_dtype}, or run the baseline in {cfg.precision.language_model} (variants: "
            f"[{cfg.precision.language_model}, {', '.join(others)}], baseline: {cfg.precision.language_model}"
            f"{'' if cfg.precision.language_model in ('fp16', 'bf16') else '; no such variant exists yet'}).")


def _validate_definitions(definitions: dict) -> None:
    from vlmbench.quantize.variants import defined_variants
    try:
        defined_variants(definitions)
    except ValueError as exc:
        raise ConfigError(f"config key 'variant_definitions': {str(exc).rstrip('.')}.") from None


def _validate_variants(names, known, key: str = "variants") -> None:
    if not names:
        raise ConfigError(f"config key '{key}' is empty; allowed: one or more of {', '.join(known)}.")
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"config key '{key}' names unknown variant {shown(name)}.{hint} Known variants: "
                              f"{', '.join(known)}. A new variant is declared under variant_definitions (README, "
                              "Quantization methods).")
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise ConfigError(f"config key '{key}' lists {', '.join(map(repr, repeated))} more than once "
                          f"({shown(list(names))}); allowed: each variant once (each would compute every chunk "
                          "again).")


def _validate_sources(ds: DatasetConfig) -> None:
    local = [k for k in ("parquet_path", "coco_dir", "synthetic_images") if getattr(ds, k) is not None]
    if len(local) > 1:
        raise ConfigError(f"config keys {', '.join('dataset.' + k for k in local)} are all set; choose one data "
                          "source (or none of them for the Hub parquet).")
    if not local and not (ds.hf_parquet_prefix and ds.split_file):
        raise ConfigError("no data source: set dataset.hf_parquet_prefix and dataset.split_file, or one of "
                          "dataset.parquet_path, dataset.coco_dir, dataset.synthetic_images.")
    if ds.hf_parquet_prefix and not local and not ds.hf_parquet_prefix.startswith("hf://datasets/"):
        raise ConfigError(f"config key 'dataset.hf_parquet_prefix' has value {shown(ds.hf_parquet_prefix)}; allowed: a "
                          "prefix of the form hf://datasets/<owner>/<name>/.")


# ---------------------------------------------------------------- building from plain data
def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping of sub-keys, got {shown(value)}.")
        return build(tp, value, prefix=key + ".")
    if tp is bool:
        _check(isinstance(value, bool), key, value, "true or false")
        return value
    if tp is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, value, "an integer")
        return value
    if tp is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool), key, value, "a number")
        return float(value)
    if tp is str:
        _check(isinstance(value, str), key, value, "a string")
        return expand_env(value)
    if tp is tuple:
        _check(isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value), key, value,
               "a list of names")
        return tuple(value)
    if tp is dict:
        _check(isinstance(value, dict), key, value, "a mapping")
        return _coerce_per_variant(value, key)
    if tp is VariantDefinitions:
        _check(isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()), key, value,
               "a mapping of variant name -> {method: ..., components: [...]}")
        return {str(name): dict(spec) for name, spec in value.items()}
    return value


def _coerce_per_variant(value: dict, key: str) -> dict:
    return {name: _coerce(th, Thresholds, f"{key}.{name}") for name, th in value.items()}


def build(cls, data: dict, prefix: str = ""):
    """Builds dataclass `cls` from `data`, refusing unknown keys with a did-you-mean hint."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    auto_keys = {f.name for f in dataclasses.fields(cls) if f.metadata.get("auto")}
    kwargs = {}
    for key, value in (data or {}).items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key {shown(prefix + str(key))}.{hint} Allowed keys here: "
                              f"{', '.join(names)}.")
        kwargs[key] = None if key in auto_keys and value == "auto" else _coerce(value, hints[key], prefix + key)
    return cls(**kwargs)


_ENV = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand_env(text: str) -> str:
    """Expands ${VAR} and ${VAR:-default} so that one config serves several machines."""
    def repl(match):
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"config refers to environment variable ${{{name}}}, which is not set; set it or write "
                          f"${{{name}:-default}}.")
    return _ENV.sub(repl, text)


def default_config_path() -> Path:
    return Path(__file__).parent / "defaults" / DEFAULT_CONFIG_NAME


def load_config(path: Optional[str | os.PathLike] = None, overrides: Optional[dict] = None) -> ExperimentConfig:
    """Reads a YAML experiment (the packaged seed default when `path` is None)."""
    path = Path(path) if path else default_config_path()
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} does not exist; pass an existing YAML file to --vlm-config.")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"config file {str(path)!r} is {path.stat().st_size} bytes; a config holds at most "
                          f"{MAX_CONFIG_BYTES}. Pass the experiment's YAML to --vlm-config.")
    try:
        data = strict_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys at the top level.")
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    return from_plain(data)


def from_plain(data: dict) -> ExperimentConfig:
    """An ExperimentConfig from YAML data; a snapshot's derived keys (SNAPSHOT_ONLY_KEYS) are ignored."""
    data = {k: v for k, v in data.items() if k not in SNAPSHOT_ONLY_KEYS}
    return build(ExperimentConfig, data)


def set_dotted(data: dict, dotted_key: str, value: Any) -> None:
    """data['a']['b'] = value for 'a.b', creating sections as needed."""
    *sections, last = dotted_key.split(".")
    for section in sections:
        data = data.setdefault(section, {})
        if not isinstance(data, dict):
            raise ConfigError(f"cannot set '{dotted_key}': '{section}' is not a section of the config.")
    data[last] = value


def parse_assignment(text: str) -> tuple[str, Any]:
    """'inference.micro_batch_size=8' -> ('inference.micro_batch_size', 8); the value is read as YAML."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--vlm-set expects KEY=VALUE (for example inference.micro_batch_size=8), got {text!r}.")
    try:
        return key.strip(), strict_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--vlm-set {shown(key.strip())}: the value is not valid YAML: {exc}") from exc


def config_to_yaml(cfg: ExperimentConfig, resolved: Optional[dict] = None) -> str:
    """The snapshot: the config, its fingerprint and each variant's, and what the run resolved (Hub commit,
    image ids)."""
    data = cfg.to_dict()
    data["fingerprint"] = cfg.fingerprint
    data["variant_fingerprints"] = cfg.variant_fingerprints
    if resolved:
        data["resolved"] = resolved
    return yaml.dump(data, Dumper=_NoAliasDumper, sort_keys=False)


class _NoAliasDumper(yaml.SafeDumper):
    """Snapshots never hold aliases (StrictLoader refuses them), even where two values are one object."""

    def ignore_aliases(self, data):
        return True
