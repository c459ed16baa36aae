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
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

DEFAULT_CONFIG_NAME = "default.yaml"
QUANTIZERS = ("bitsandbytes_linear8bitlt",)
DTYPES = ("fp16", "bf16", "fp32")
MODEL_WEIGHTS = ("pretrained", "random", "embedded")
# Fields that do not change what a chunk CSV contains: they stay out of the fingerprint.
NON_RESULT_FIELDS = ("experiment_name", "variants", "results_dir", "thresholds", "inference.prefetch_batches",
                     "dataset.hub_endpoint", "dataset.image_url_prefix",
                     "dataset.image_cache_dir", "dataset.download_workers", "dataset.allow_missing_images")


SNAPSHOT_ONLY_KEYS = ("fingerprint", "resolved")  # written into snapshots, derived, never read back


class ConfigError(ValueError):
    """A config problem, with a message meant for the person who wrote the YAML."""


def _help(text: str, default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING):
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class PrecisionConfig:
    language_model: str = _help("dtype of every layer that is not quantized: fp16, bf16 or fp32", "fp16")


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
    present_images_only: bool = _help("drop rows whose local image file is absent (a partial COCO folder)", False)
    shuffle: bool = _help("shuffle rows with `seed` before taking `limit` (default keeps source order)", False)


@dataclass(frozen=True)
class InferenceConfig:
    max_new_tokens: int = _help("tokens generated per caption at most", 40)
    min_new_tokens: Optional[int] = _help("force at least this many tokens (random weights never stop)", None)
    img_size: int = _help("each image is resized to img_size x img_size pixels before the processor", 1024)
    batch_size: int = _help("images per chunk (one CSV and one pytest case each); limit/5 in the seed", 1000)
    micro_batch_size: int = _help("images per generate() call on the device", 8)
    prompt: str = _help("the user instruction sent with each image",
                        "Describe this image in one short sentence.")
    prefetch_batches: int = _help("micro-batches read and preprocessed ahead of the device", 2)


@dataclass(frozen=True)
class ModelConfig:
    weights: str = _help("pretrained (from model_id), random (built from config.json, random weights) or embedded "
                         "(the tiny captioner shipped in vlmbench/assets/tiny_captioner; model_id is then a label)",
                         "pretrained")
    config_dir: Optional[str] = _help("folder with config.json for random weights (default: model_id)", None)
    tiny: bool = _help("shrink the architecture to a tiny Qwen2.5-VL (tests, offline smoke run)", False)
    processor: Optional[str] = _help("folder of processor files; 'builtin' = tiny byte-level processor in code; "
                                     "null = same place as the model", None)
    attn_implementation: str = _help("attention kernel for transformers: sdpa or eager", "sdpa")
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


@dataclass(frozen=True)
class GateConfig:
    default: Thresholds = _help("thresholds for every variant", factory=Thresholds)
    per_variant: dict = _help("variant name -> thresholds overriding the default", factory=dict)


@dataclass(frozen=True)
class ExperimentConfig:
    experiment_name: str = _help("a label for the run", "VLM_Quantization")
    model_id: str = _help("Hub id or local folder of the model", "Qwen/Qwen2.5-VL-3B-Instruct")
    quantizer: str = _help("how int8 variants quantize: bitsandbytes_linear8bitlt", "bitsandbytes_linear8bitlt")
    precision: PrecisionConfig = _help("dtypes", factory=PrecisionConfig)
    dataset: DatasetConfig = _help("where images and captions come from", factory=DatasetConfig)
    seed: int = _help("random seed (model init, shuffling, sampling of synthetic data)", 42)
    inference: InferenceConfig = _help("captioning settings", factory=InferenceConfig)
    variants: tuple = _help("variants to run, by registry name", ("fp16", "int8", "int8_vit"))
    model: ModelConfig = _help("how the model and processor are built", factory=ModelConfig)
    measure: MeasureConfig = _help("efficiency measurement settings", factory=MeasureConfig)
    thresholds: GateConfig = _help("regression gate against --vlm-baseline", factory=GateConfig)
    results_dir: str = _help("folder for CSVs, summaries and plots", "results")

    def __post_init__(self):
        _validate(self)

    @property
    def num_chunks(self) -> int:
        return -(-self.dataset.limit // self.inference.batch_size)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["variants"] = list(self.variants)
        return data

    def result_fields(self) -> dict:
        """The flattened fields that change results: what the fingerprint hashes."""
        flat = _flatten(self.to_dict())
        return {k: v for k, v in flat.items() if not any(k == n or k.startswith(n + ".") for n in NON_RESULT_FIELDS)}

    @property
    def fingerprint(self) -> str:
        blob = json.dumps(self.result_fields(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def replace(self, **changes) -> "ExperimentConfig":
        return dataclasses.replace(self, **changes)


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key != "per_variant":
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def diff_result_fields(old: dict, new: dict) -> list[str]:
    """Human-readable lines naming each results-relevant field that differs."""
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


# ---------------------------------------------------------------- validation of values
def _check(condition: bool, key: str, value: Any, allowed: str) -> None:
    if not condition:
        raise ConfigError(f"config key '{key}' has value {value!r}; allowed: {allowed}.")


def _validate(cfg: ExperimentConfig) -> None:
    from vlmbench.variants import known_variant_names  # registry lives with the variants

    _check(cfg.quantizer in QUANTIZERS, "quantizer", cfg.quantizer, ", ".join(QUANTIZERS))
    _check(cfg.precision.language_model in DTYPES, "precision.language_model", cfg.precision.language_model,
           ", ".join(DTYPES))
    _check(cfg.model.weights in MODEL_WEIGHTS, "model.weights", cfg.model.weights, ", ".join(MODEL_WEIGHTS))
    if cfg.model.weights == "embedded":
        _check(cfg.model.processor in (None, "builtin"), "model.processor", cfg.model.processor,
               "builtin or null with model.weights 'embedded' (the embedded captioner knows only the built-in "
               "byte-level tokenizer)")
    _check(cfg.model.device in ("auto", "cuda", "cpu"), "model.device", cfg.model.device, "auto, cuda, cpu")
    _check(cfg.model.attn_implementation in ("sdpa", "eager"), "model.attn_implementation",
           cfg.model.attn_implementation, "sdpa, eager")
    for key, value in (("dataset.limit", cfg.dataset.limit), ("inference.batch_size", cfg.inference.batch_size),
                       ("inference.micro_batch_size", cfg.inference.micro_batch_size),
                       ("inference.max_new_tokens", cfg.inference.max_new_tokens),
                       ("inference.img_size", cfg.inference.img_size),
                       ("dataset.download_workers", cfg.dataset.download_workers)):
        _check(value >= 1, key, value, "an integer >= 1")
    _check(cfg.inference.img_size >= 56, "inference.img_size", cfg.inference.img_size, "at least 56 pixels")
    if cfg.inference.min_new_tokens is not None:
        _check(0 <= cfg.inference.min_new_tokens <= cfg.inference.max_new_tokens, "inference.min_new_tokens",
               cfg.inference.min_new_tokens, f"null or 0..max_new_tokens ({cfg.inference.max_new_tokens})")
    _check(cfg.measure.latency_images >= 0, "measure.latency_images", cfg.measure.latency_images, "an integer >= 0")
    _validate_variants(cfg.variants, known_variant_names())
    _validate_sources(cfg.dataset)
    for name in cfg.thresholds.per_variant:
        _validate_variants((name,), known_variant_names(), key="thresholds.per_variant")


def _validate_variants(names, known, key: str = "variants") -> None:
    if not names:
        raise ConfigError(f"config key '{key}' is empty; allowed: one or more of {', '.join(known)}.")
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"config key '{key}' names unknown variant {name!r}.{hint} Known variants: "
                              f"{', '.join(known)}.")


def _validate_sources(ds: DatasetConfig) -> None:
    local = [k for k in ("parquet_path", "coco_dir", "synthetic_images") if getattr(ds, k) is not None]
    if len(local) > 1:
        raise ConfigError(f"config keys {', '.join('dataset.' + k for k in local)} are all set; choose one data "
                          "source (or none of them for the Hub parquet).")
    if not local and not (ds.hf_parquet_prefix and ds.split_file):
        raise ConfigError("no data source: set dataset.hf_parquet_prefix and dataset.split_file, or one of "
                          "dataset.parquet_path, dataset.coco_dir, dataset.synthetic_images.")
    if ds.hf_parquet_prefix and not local and not ds.hf_parquet_prefix.startswith("hf://datasets/"):
        raise ConfigError(f"config key 'dataset.hf_parquet_prefix' has value {ds.hf_parquet_prefix!r}; allowed: a "
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
            raise ConfigError(f"config key '{key}' must be a mapping of sub-keys, got {value!r}.")
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
    return value


def _coerce_per_variant(value: dict, key: str) -> dict:
    return {name: _coerce(th, Thresholds, f"{key}.{name}") for name, th in value.items()}


def build(cls, data: dict, prefix: str = ""):
    """Builds dataclass `cls` from `data`, refusing unknown keys with a did-you-mean hint."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in (data or {}).items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" Did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{prefix}{key}'.{hint} Allowed keys here: {', '.join(names)}.")
        kwargs[key] = _coerce(value, hints[key], prefix + key)
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
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a mapping of keys at the top level.")
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    return from_plain(data)


def from_plain(data: dict) -> ExperimentConfig:
    """An ExperimentConfig from YAML data; a snapshot's derived keys (fingerprint, resolved) are ignored."""
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
    return key.strip(), yaml.safe_load(value)


def config_to_yaml(cfg: ExperimentConfig, resolved: Optional[dict] = None) -> str:
    """The snapshot: the config, its fingerprint, and what the run resolved (Hub commit, image ids)."""
    data = cfg.to_dict()
    data["fingerprint"] = cfg.fingerprint
    if resolved:
        data["resolved"] = resolved
    return yaml.safe_dump(data, sort_keys=False)
