"""Building the processor and loading each variant of the model.

Why it exists: the same loading code serves users with real weights (`from_pretrained(model_id)`
with a bitsandbytes config) and machines without them (the real or a tiny Qwen2.5-VL architecture
with random weights, saved once to a cache folder and then loaded through the very same
`from_pretrained` path, so every variant of a run starts from identical weights).
"""
from __future__ import annotations

import copy
import dataclasses
import gc
import hashlib
import json
import shutil
from collections.abc import Mapping
import warnings
from pathlib import Path
from typing import Optional
from types import MappingProxyType

import torch

from vlmbench.config import ConfigError, ExperimentConfig
from vlmbench.offline import hub_calls
from vlmbench.paths import cache_dir, owned_temp_dir
from vlmbench.quantize.methods import family_of
from vlmbench.quantize.variants import Variant, compute_dtype

TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}

# The shape of Qwen2.5-VL-3B shrunk to a few thousand parameters per layer: for tests and the
# offline smoke run. Token ids are filled in from the processor's tokenizer. Read-only (a mapping
# proxy holding tuples): transformers edits the config dicts it is given in place (rope_scaling), and
# a shared module-level dict edited once changed the random-weight cache key, so the tiny model was
# built twice on a fresh cache. `thawed` gives each caller its own plain copy.
TINY_TEXT = MappingProxyType(dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    rope_scaling=MappingProxyType({"type": "mrope", "mrope_section": (2, 3, 3)}), max_position_embeddings=4096))
TINY_VISION = MappingProxyType(dict(
    depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64, fullatt_block_indexes=(1,),
    window_size=112, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_chans=3, hidden_act="silu"))


def thawed(value):
    """A plain, independent copy (dicts and lists) of read-only settings (mapping proxies and tuples)."""
    if isinstance(value, Mapping):
        return {k: thawed(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [thawed(v) for v in value]
    return value
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


SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def resolve_device(cfg: ExperimentConfig) -> str:
    if cfg.model.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'model.device' is 'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'.")
    if cfg.model.device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return cfg.model.device


# ---------------------------------------------------------------- processor
def build_builtin_processor():
    """A Qwen2.5-VL processor with a byte-level tokenizer made in code: no files, no network."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLProcessor, Qwen2VLImageProcessor

    byte_chars = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(byte_chars))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        additional_special_tokens=SPECIAL_TOKENS)
    image_processor = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056, patch_size=14,
                                            temporal_patch_size=2, merge_size=2)
    from transformers import Qwen2VLVideoProcessor
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer,
                               video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)


def build_processor(cfg: ExperimentConfig):
    """The configured processor, with left padding for batched generation."""
    source = cfg.model.processor
    if source == "builtin" or cfg.model.weights == "embedded":
        processor = build_builtin_processor()
    else:
        from transformers import AutoProcessor
        folder = source or cfg.model.config_dir or cfg.model_id
        revision = hub_commit(cfg) if folder == cfg.model_id else None  # the model's own files: same commit
        with hub_calls() as local_only:
            processor = AutoProcessor.from_pretrained(folder, revision=revision, local_files_only=local_only)
    processor.tokenizer.padding_side = "left"
    return processor


# ---------------------------------------------------------------- random-weight models
def _token_ids(tokenizer) -> dict:
    ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in (
        ("bos_token_id", "<|endoftext|>"), ("eos_token_id", "<|im_end|>"), ("pad_token_id", "<|endoftext|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"),
        ("vision_token_id", "<|vision_pad|>"), ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"))}
    return ids


def tiny_config_dict(processor, text: Mapping = TINY_TEXT, vision: Mapping = TINY_VISION) -> dict:
    """config.json contents of a tiny Qwen2.5-VL: `text` and `vision` sizes, the processor's vocabulary."""
    data = {"model_type": "qwen2_5_vl", "architectures": ["Qwen2_5_VLForConditionalGeneration"],
            "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
            **thawed(text), "vision_config": thawed(vision),
            "vocab_size": len(processor.tokenizer), **_token_ids(processor.tokenizer)}
    return data


def random_model_config_dict(cfg: ExperimentConfig, processor) -> dict:
    """config.json contents for a random-weight model: the configured architecture, shrunk if tiny."""
    if cfg.model.config_dir is None and cfg.model.tiny:
        return tiny_config_dict(processor)
    path = Path(cfg.model.config_dir or cfg.model_id) / "config.json"
    if not path.is_file():
        raise ConfigError(f"model.weights is 'random' but {str(path)!r} does not exist; set model.config_dir to a "
                          "folder holding the architecture's config.json.")
    data = json.loads(path.read_text())
    if cfg.model.tiny:
        data.update(thawed(TINY_TEXT))
        data["vision_config"].update(thawed(TINY_VISION))
        data["vocab_size"] = len(processor.tokenizer)
        data.update(_token_ids(processor.tokenizer))
    return data


def random_weights_dir(cfg: ExperimentConfig, processor, device: str = "cpu") -> Path:
    """A cached folder holding the seeded random-weight model in 16-bit, made on first use.

    The weights are drawn on `device` (seconds on a GPU instead of minutes on a CPU for 3B), so the
    same seed gives different weights on CPU and GPU; the cache key includes the device.
    """
    from transformers import AutoConfig, Qwen2_5_VLForConditionalGeneration

    config_dict = random_model_config_dict(cfg, processor)
    key = hashlib.sha256(json.dumps([config_dict, cfg.seed, cfg.precision.language_model, device],
                                    sort_keys=True).encode()).hexdigest()[:16]
    target = cache_dir("random-weights") / key
    if (target / "config.json").is_file():
        return target
    model_config = AutoConfig.for_model(**copy.deepcopy(config_dict))
    torch.manual_seed(cfg.seed)
    with torch.device(device):
        model = Qwen2_5_VLForConditionalGeneration._from_config(model_config,
                                                                dtype=TORCH_DTYPES[cfg.precision.language_model])
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
def quantization_config(variant: Variant, dtype: torch.dtype):
    """transformers' quantization config for `variant` (built by its method's family module); None if unquantized."""
    if not variant.quantized:
        return None
    return family_of(variant.method_spec()).quantization_config(variant, dtype)


def load_variant_model(cfg: ExperimentConfig, variant: Variant, source: str, device: str,
                       revision: Optional[str] = None):
    """Loads `variant` from `source` (Hub id or folder; a Hub id at `revision`) onto `device`, in eval mode."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    dtype = TORCH_DTYPES[compute_dtype(variant, cfg.precision.language_model)]
    with hub_calls() as local_only:
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            source, revision=revision, dtype=dtype, quantization_config=quantization_config(variant, dtype),
            local_files_only=local_only,
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
