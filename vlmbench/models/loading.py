"""Building the processor and loading each variant of the model.

Why it exists: the same loading code serves users with real weights (`from_pretrained(model_id)`
with a bitsandbytes config) and machines without them (the real or a tiny architecture of a known
family with random weights, saved once to a cache folder and then loaded through the very same
`from_pretrained` path, so every variant of a run starts from identical weights). Every family loads
through transformers' auto classes (`AutoModelForImageTextToText`, `AutoProcessor`); which family a
run is, and so which modules each variant quantizes, is decided here before any model loads
(`model_family`, `source_family`; the table is vlmbench.models.families).
"""
from __future__ import annotations

import copy
import dataclasses
import gc
import hashlib
import json
import shutil
import warnings
from pathlib import Path
from typing import Optional
from types import MappingProxyType

import torch

from vlmbench.config import ConfigError, ExperimentConfig
from vlmbench.models.families import DEFAULT_ARCHITECTURE, Family, get_family
from vlmbench.models.tiny.qwen2_5_vl import (CHAT_TEMPLATE, SPECIAL_TOKENS, TINY_TEXT, TINY_VISION,  # noqa: F401
                                             thawed, tiny_config_dict)
from vlmbench.offline import hub_calls
from vlmbench.paths import cache_dir, owned_temp_dir
from vlmbench.quantize.methods import family_of
from vlmbench.quantize.variants import Variant, compute_dtype

TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}

# The embedded captioner (`model.weights: embedded`): the tiny shape widened enough to learn the drawn-shapes
# sample (scripts/train_tiny_captioner.py) on a CPU in minutes. head_dim 24, so mrope_section sums to 12.
TRAINED_TINY_TEXT = MappingProxyType(dict(hidden_size=96, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
                         num_key_value_heads=2, rope_scaling={"type": "mrope", "mrope_section": [4, 4, 4]},
                         max_position_embeddings=1024))
TRAINED_TINY_VISION = MappingProxyType(dict(depth=2, hidden_size=96, intermediate_size=192, num_heads=4, out_hidden_size=96,
                           fullatt_block_indexes=[0, 1], window_size=112, patch_size=14, spatial_merge_size=2,
                           temporal_patch_size=2, in_chans=3, hidden_act="silu"))
EMBEDDED_CAPTIONER_DIR = Path(__file__).parent.parent / "assets" / "tiny_captioner"
EMBEDDED_CAPTIONER_INPUT = {"img_size": 112, "prompt": "Caption:"}  # short: training time grows with it


def resolve_device(cfg: ExperimentConfig) -> str:
    if cfg.model.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'model.device' is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'.")
    if cfg.model.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.model.device


# ---------------------------------------------------------------- which family
def model_family(cfg: ExperimentConfig) -> Optional[Family]:
    """The family `cfg` runs, known before any model loads; None for a Hub model whose config.json is not
    cached yet (`load_variant_model` checks it once downloaded).

    Embedded: Qwen2.5-VL. Random weights: model.architecture, else the model_type of config_dir's (or
    model_id's) config.json, else (model.tiny without config_dir) DEFAULT_ARCHITECTURE. Pretrained: the
    model_type of model_id's config.json (a folder, or the Hub cache). ConfigError for a model type not in
    vlmbench.models.families, naming it and the known families.
    """
    if cfg.model.weights == "embedded":
        return get_family(DEFAULT_ARCHITECTURE, "the embedded captioner")
    if cfg.model.architecture is not None:
        return get_family(cfg.model.architecture, "config key 'model.architecture'")
    if cfg.model.weights == "random" and cfg.model.config_dir is None and cfg.model.tiny:
        return get_family(DEFAULT_ARCHITECTURE, "the default architecture")
    from vlmbench.models.context import model_config_file
    path = model_config_file(cfg)
    return None if path is None or not path.is_file() else config_json_family(path)


def config_json_family(path: Path) -> Family:
    """The family named by the `model_type` of config.json at `path`; ConfigError when unreadable or unknown."""
    try:
        model_type = json.loads(path.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{str(path)!r} is not a readable config.json ({exc}).") from None
    return get_family(model_type, f"{str(path)!r}")


def _in_code_family(cfg: ExperimentConfig) -> Family:
    """The family whose in-code processor `cfg` uses (model_family; Qwen2.5-VL when it is not known yet)."""
    return model_family(cfg) or get_family(DEFAULT_ARCHITECTURE, "the default architecture")


def attention_refusal(cfg: ExperimentConfig, device: str) -> Optional[str]:
    """Why `cfg`'s model.attn_implementation cannot run on `device`; None when it can (sdpa and eager always).

    flash_attention_2 needs the flash_attn package to import, a CUDA device, and a family transformers runs
    with it (Family.no_flash_reason). A Hub model whose config.json is not cached yet is left to transformers.
    """
    if cfg.model.attn_implementation != "flash_attention_2":
        return None
    why = flash_attn_import_error() or _flash_unsupported(cfg, device)
    return why and f"model.attn_implementation 'flash_attention_2' cannot run here: {why}; use sdpa"


def _flash_unsupported(cfg: ExperimentConfig, device: str) -> Optional[str]:
    """Why flash attention cannot run on `device` for `cfg`'s family (its package aside); None when it can."""
    if device != "cuda":
        return f"flash-attn runs on CUDA only; this run's device is {device}"
    family = model_family(cfg)
    if family is not None and family.no_flash_reason:
        return f"{family.title}: {family.no_flash_reason}"
    return None


def flash_attn_import_error() -> Optional[str]:
    """None when `import flash_attn` works, else why it does not (the exception, with the pip command)."""
    try:
        import flash_attn  # noqa: F401
    except Exception as exc:  # an ImportError, or a broken build failing on its CUDA extension
        return f"flash_attn does not import ({type(exc).__name__}: {exc}); pip install flash-attn"
    return None


# ---------------------------------------------------------------- processor
def build_builtin_processor(family: Optional[Family] = None, tiny: bool = False):
    """`family`'s processor made in code (byte-level tokenizer: no files, no network); Qwen2.5-VL's by default.
    `tiny`: the one matching the family's tiny shape (smaller images where the family fixes their size)."""
    family = family or get_family(DEFAULT_ARCHITECTURE, "the default architecture")
    return family.tiny().build_processor(tiny=tiny)


def uses_builtin_processor(cfg: ExperimentConfig) -> bool:
    """model.processor 'builtin' or the embedded captioner; with random weights and no processor folder named, a
    model.architecture (which names no files to read a processor from) or a tiny model of a family other than
    Qwen2.5-VL (whose tiny shapes take smaller images than the real processor makes)."""
    if cfg.model.processor == "builtin" or cfg.model.weights == "embedded":
        return True
    if cfg.model.weights != "random" or cfg.model.processor is not None:
        return False
    return cfg.model.architecture is not None or (cfg.model.tiny and _in_code_family(cfg).model_type !=
                                                  DEFAULT_ARCHITECTURE)


def build_processor(cfg: ExperimentConfig):
    """The configured processor, with left padding for batched generation."""
    source = cfg.model.processor
    if uses_builtin_processor(cfg):
        processor = build_builtin_processor(_in_code_family(cfg), tiny=cfg.model.tiny)
    else:
        from transformers import AutoProcessor
        folder = source or cfg.model.config_dir or cfg.model_id
        revision = hub_commit(cfg) if folder == cfg.model_id else None  # the model's own files: same commit
        with hub_calls() as local_only:
            processor = AutoProcessor.from_pretrained(folder, revision=revision, local_files_only=local_only)
    processor.tokenizer.padding_side = "left"
    return processor


# ---------------------------------------------------------------- random-weight models
def random_model_config_dict(cfg: ExperimentConfig, processor) -> dict:
    """config.json contents for a random-weight model: the configured architecture, shrunk if tiny.

    Without config_dir, model.architecture (or model.tiny alone: DEFAULT_ARCHITECTURE) gives the family's
    in-code shape: `tiny_config_dict` when tiny, else `real_config_dict`. Otherwise config_dir's (or
    model_id's) config.json; with model.tiny its family's tiny shape (Qwen2.5-VL: that config.json with
    the tiny sizes written over it, as before families existed).
    """
    if cfg.model.config_dir is None and (cfg.model.tiny or cfg.model.architecture is not None):
        family = _in_code_family(cfg).tiny()
        return family.tiny_config_dict(processor) if cfg.model.tiny else family.real_config_dict(processor)
    path = Path(cfg.model.config_dir or cfg.model_id) / "config.json"
    if not path.is_file():
        raise ConfigError(f"model.weights is 'random' but {str(path)!r} does not exist; set model.config_dir to a "
                          "folder holding the architecture's config.json, or set model.architecture.")
    family = config_json_family(path)
    data = json.loads(path.read_text())
    if not cfg.model.tiny:
        return data
    if family.model_type == DEFAULT_ARCHITECTURE:
        return family.tiny().shrunk(data, processor)
    return family.tiny().tiny_config_dict(processor)


def random_weights_dir(cfg: ExperimentConfig, processor, device: str = "cpu") -> Path:
    """A cached folder holding the seeded random-weight model in 16-bit, made on first use.

    The weights are drawn on `device` (seconds on a GPU instead of minutes on a CPU for 3B), so the
    same seed gives different weights on CPU and GPU; the cache key includes the device.
    """
    from transformers import AutoConfig, AutoModelForImageTextToText

    config_dict = random_model_config_dict(cfg, processor)
    key = hashlib.sha256(json.dumps([config_dict, cfg.seed, cfg.precision.language_model, device],
                                    sort_keys=True).encode()).hexdigest()[:16]
    target = cache_dir("random-weights") / key
    if (target / "config.json").is_file():
        return target
    model_config = AutoConfig.for_model(**copy.deepcopy(config_dict))
    torch.manual_seed(cfg.seed)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(model_config, dtype=TORCH_DTYPES[cfg.precision.language_model])
    staging = owned_temp_dir(target.parent, ".staging-")  # a killed build's is swept by the next run
    try:
        model.save_pretrained(staging / "model")
        (staging / "model").rename(target)
    except OSError:
        if not (target / "config.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    del model
    free_device_memory()
    return target


def _require_embedded_weights() -> None:
    """ConfigError naming the fix when the packaged captioner's weights are missing."""
    if not (EMBEDDED_CAPTIONER_DIR / "model.safetensors").is_file():
        raise ConfigError(f"model.weights is 'embedded' but {str(EMBEDDED_CAPTIONER_DIR)!r} holds no "
                          "model.safetensors; reinstall vlmbench, or recreate the weights with "
                          "scripts/train_tiny_captioner.py.")


def embedded_captioner_dir(cfg: ExperimentConfig) -> Path:
    """The packaged tiny captioner's folder (config.json + model.safetensors), checked before any load.

    It was trained on one prompt and one image size (EMBEDDED_CAPTIONER_INPUT, see its TRAINING.md);
    other values still run but caption worse, so they are warned about.
    """
    _require_embedded_weights()
    used = {"img_size": cfg.inference.img_size, "prompt": cfg.inference.prompt}
    for key, trained in EMBEDDED_CAPTIONER_INPUT.items():
        if used[key] != trained:
            warnings.warn(f"the embedded captioner was trained with inference.{key} = {trained!r}; this run uses "
                          f"{used[key]!r}, so expect worse captions.", stacklevel=2)
    return EMBEDDED_CAPTIONER_DIR


def weights_dir(cfg: ExperimentConfig, processor, device: str) -> str:
    """Where from_pretrained reads the variant: model_id, the cached random-weight folder or the embedded one."""
    if cfg.model.weights == "random":
        return str(random_weights_dir(cfg, processor, device))
    if cfg.model.weights == "embedded":
        return str(embedded_captioner_dir(cfg))
    return cfg.model_id


# ---------------------------------------------------------------- which model is measured
# files whose bytes decide what a local model folder computes (config and weights, not the processor)
MODEL_FILE_PATTERNS = ("config.json", "generation_config.json", "*.safetensors", "*.safetensors.index.json", "*.bin",
                       "*.bin.index.json")


def local_model_identity(folder: Path) -> str:
    """'local:<16 hex>' from the name, size and mtime_ns of each config and weight file, and the JSON files' bytes.

    Cheap (no weight bytes are read): replacing or rewriting a weight file changes its mtime_ns, so the
    identity changes; so does copying the folder without keeping times (the chunks are then recomputed,
    which costs time but never mixes two models).
    """
    files = sorted({p for pattern in MODEL_FILE_PATTERNS for p in folder.glob(pattern) if p.is_file()})
    if not any(p.suffix in (".safetensors", ".bin") for p in files):
        raise ConfigError(f"model_id {str(folder)!r} is a folder without weight files (*.safetensors or *.bin); "
                          "point model_id at a saved model, or set model.weights: random.")
    entries = []
    for path in files:
        stat = path.stat()
        content = hashlib.sha256(path.read_bytes()).hexdigest() if path.suffix == ".json" else None
        entries.append([path.name, stat.st_size, stat.st_mtime_ns, content])
    return "local:" + hashlib.sha256(json.dumps(entries).encode()).hexdigest()[:16]


def model_identity(cfg: ExperimentConfig) -> Optional[str]:
    """The identity of the model `cfg` measures, for model.identity.

    Random weights: None (the config and the seed identify them). The embedded captioner:
    `embedded_model_identity` (a retrained model never shares chunks with the old one). A local folder: its
    `local_model_identity`. A Hub id: 'hub:<commit>' that model.revision (null: main) resolves to.
    """
    if cfg.model.weights == "random":
        return None
    if cfg.model.weights == "embedded":
        return embedded_model_identity()
    if Path(cfg.model_id).is_dir():
        return local_model_identity(Path(cfg.model_id))
    from vlmbench.data.hub import resolve_model_commit
    return f"hub:{resolve_model_commit(cfg.model_id, cfg.model.revision)}"


def embedded_model_identity() -> str:
    """'embedded:<16 hex>': sha256 over the name and bytes of the packaged captioner's config and weight files.

    The bytes, not the times (as `local_model_identity` uses): the folder is small (a few MB, hashed in
    milliseconds) and ships inside the package, so every install of the same weights gets the same identity
    and a retrained model always gets a new one. ConfigError if the weights are missing.
    """
    _require_embedded_weights()
    digest = hashlib.sha256()
    files = {p for pattern in MODEL_FILE_PATTERNS for p in EMBEDDED_CAPTIONER_DIR.glob(pattern) if p.is_file()}
    for path in sorted(files):
        digest.update(json.dumps([path.name, path.stat().st_size]).encode())
        digest.update(path.read_bytes())
    return "embedded:" + digest.hexdigest()[:16]


def with_model_identity(cfg: ExperimentConfig) -> ExperimentConfig:
    """`cfg` with model.identity computed now (it enters the fingerprint)."""
    return with_identity(cfg, model_identity(cfg))


def with_identity(cfg: ExperimentConfig, identity: str | None) -> ExperimentConfig:
    """`cfg` with model.identity set to `identity` (a `model_identity` value), resolving nothing."""
    return cfg.replace(model=dataclasses.replace(cfg.model, identity=identity))


def hub_commit(cfg: ExperimentConfig) -> Optional[str]:
    """The Hub commit the model is loaded at: the resolved one once known, else model.revision."""
    identity = cfg.model.identity or ""
    return identity.removeprefix("hub:") if identity.startswith("hub:") else cfg.model.revision


# ---------------------------------------------------------------- variants
def quantization_config(variant: Variant, dtype: torch.dtype, family: Family, source: Optional[str] = None,
                        revision: Optional[str] = None):
    """transformers' quantization config for `variant` (built by its method's family module) on a model of
    `family` (its component prefixes make the skip list); None if unquantized. Where the method names layers to
    leave 16-bit by their shapes (its module's `needs_skeleton`), the checkpoint at `source` is built on the meta
    device for it (`meta_skeleton`: no weights read)."""
    if not variant.quantized:
        return None
    methods = family_of(variant.method_spec())
    if source is not None and getattr(methods, "needs_skeleton", lambda v: False)(variant):
        return methods.quantization_config(variant, dtype, family.components, skeleton=meta_skeleton(source, revision))
    return methods.quantization_config(variant, dtype, family.components)


def meta_skeleton(source: str, revision: Optional[str] = None):
    """The model of the checkpoint at `source` built from its config.json on the meta device: every module with
    its shapes, no memory, no weights read (through the offline switch, as the load)."""
    from transformers import AutoConfig, AutoModelForImageTextToText
    with hub_calls() as local_only:
        config = AutoConfig.from_pretrained(source, revision=revision, local_files_only=local_only)
    with torch.device("meta"):
        return AutoModelForImageTextToText.from_config(config)


def source_family(source: str, revision: Optional[str] = None) -> Family:
    """The family of the checkpoint at `source` (Hub id or folder; a Hub id at `revision`), from the model_type of
    its config.json (read as a dict, so a type transformers does not know is refused by vlmbench, naming the
    families; a Hub id downloads config.json alone where allowed). ConfigError for a model type not in the table."""
    from transformers import PreTrainedConfig
    with hub_calls() as local_only:
        data, _ = PreTrainedConfig.get_config_dict(source, revision=revision, local_files_only=local_only)
    return get_family(data.get("model_type"), f"the config.json of {source!r}")


def load_variant_model(cfg: ExperimentConfig, variant: Variant, source: str, device: str,
                       revision: Optional[str] = None):
    """Loads `variant` from `source` (Hub id or folder; a Hub id at `revision`) onto `device`, in eval mode.

    The checkpoint's family is checked first (ConfigError for an unknown one), before its quantization
    config is built; the model loads through `AutoModelForImageTextToText`.
    """
    from transformers import AutoModelForImageTextToText

    family = source_family(source, revision)
    dtype = TORCH_DTYPES[compute_dtype(variant, cfg.precision.language_model)]
    quantization = quantization_config(variant, dtype, family, source, revision)
    # passed only when there is one: the auto class hands its kwargs to the config, where quantization_config=None
    # would erase a prequantized checkpoint's own
    extra = {} if quantization is None else {"quantization_config": quantization}
    with hub_calls() as local_only:
        model = AutoModelForImageTextToText.from_pretrained(
            source, revision=revision, dtype=dtype, local_files_only=local_only, **extra,
            device_map={"": 0 if device == "cuda" else "cpu"}, attn_implementation=cfg.model.attn_implementation)
    if variant.quantized:
        after_load = getattr(family_of(variant.method_spec()), "after_load", None)
        if after_load:
            after_load(model, device)
    return model.eval()


def free_device_memory() -> None:
    """Returns the memory of objects nobody references any more (a released model) to the device."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
