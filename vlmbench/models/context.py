"""How many new tokens fit: the model's context window minus the image and the prompt.

Why it exists: `inference.max_new_tokens` had no upper bound (10**9 was accepted and ran silently). A
model cannot generate past its context, `max_position_embeddings` in its config.json; the image and the
prompt take part of it. Where that config is knowable before any model loads (the embedded captioner,
random weights, a local folder, a Hub model whose config.json the identity lookup cached), a larger
value is refused with the largest that fits.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from vlmbench.config import ConfigError, ExperimentConfig
from vlmbench.engines.batch_size import image_tokens  # one image's language-model tokens (1024 px -> 1369)

# Tokens of the chat template around the prompt, an upper bound: Qwen2.5-VL's template adds the system
# message "You are a helpful assistant.", the role names and 8 special tokens (about 30 tokens); 64 is
# counted in bytes, which bound byte-level BPE tokens from above.
TEMPLATE_TOKENS = 64


def prompt_tokens_bound(prompt: str) -> int:
    """At most this many tokens for the prompt in its chat template (bytes bound byte-level BPE tokens)."""
    return len(prompt.encode("utf-8")) + TEMPLATE_TOKENS


def model_config_file(cfg: ExperimentConfig) -> Optional[Path]:
    """The config.json the model will be built from, when it can be read before any model loads; else None."""
    from vlmbench.models.loading import EMBEDDED_CAPTIONER_DIR, hub_commit
    if cfg.model.weights == "embedded":
        return EMBEDDED_CAPTIONER_DIR / "config.json"
    folder = Path(cfg.model.config_dir or cfg.model_id) if cfg.model.weights == "random" else Path(cfg.model_id)
    if folder.is_dir():
        return folder / "config.json"
    if cfg.model.weights == "random":
        return None
    return _cached_hub_config(cfg.model_id, hub_commit(cfg))


def _cached_hub_config(model_id: str, commit: Optional[str]) -> Optional[Path]:
    from huggingface_hub import try_to_load_from_cache
    found = try_to_load_from_cache(model_id, "config.json", revision=commit)
    return Path(found) if isinstance(found, str) else None


def context_length(cfg: ExperimentConfig) -> Optional[tuple[int, str]]:
    """(max_position_embeddings, where it was read) of the model `cfg` runs, or None when not knowable."""
    if cfg.model.weights == "random" and (cfg.model.tiny or cfg.model.architecture):
        return _in_code_context(cfg)
    path = model_config_file(cfg)
    try:
        data = json.loads(path.read_text()) if path is not None else {}
    except (OSError, ValueError):
        return None  # loading the model will say what is wrong with it
    value = _max_positions(data)
    return (value, str(path)) if isinstance(value, int) and value > 0 else None


def _max_positions(data: dict) -> Optional[int]:
    """max_position_embeddings of a config.json's language model (its text_config, else the top level)."""
    return (data.get("text_config") or {}).get("max_position_embeddings") or data.get("max_position_embeddings")


def _in_code_context(cfg: ExperimentConfig) -> tuple[int, str]:
    """The context of a random-weight model of an in-code shape (vlmbench.models.tiny) or shrunk from config_dir's
    config.json, from the config.json contents vlmbench builds for it."""
    from vlmbench.models.loading import build_builtin_processor, model_family, random_model_config_dict
    family = model_family(cfg)
    data = random_model_config_dict(cfg, build_builtin_processor(family, cfg.model.tiny))
    shape = "tiny" if cfg.model.tiny else "real-size"
    return _max_positions(data), f"the {shape} {family.title} model's text config"


def image_tokens_of(cfg: ExperimentConfig) -> Optional[int]:
    """Language-model tokens of one image of `cfg`'s model at inference.img_size; None when its family's count
    does not follow from the size alone (Family.image_tokens). Qwen2.5-VL's rule for a family not known yet."""
    from vlmbench.models.loading import model_family
    family = model_family(cfg)
    return image_tokens(cfg.inference.img_size) if family is None else family.image_tokens(cfg.inference.img_size)


def check_new_tokens_fit(cfg: ExperimentConfig) -> None:
    """ConfigError, with the largest value that fits, when inference.max_new_tokens cannot fit in the
    model's context after the image and the prompt. Nothing is checked when the context or the image's tokens
    are not knowable (a Hub model not cached yet; a family whose image tokens do not follow from img_size)."""
    known, image = context_length(cfg), image_tokens_of(cfg)
    if known is None or image is None:
        return
    context, source = known
    prompt = prompt_tokens_bound(cfg.inference.prompt)
    room = context - image - prompt
    if cfg.inference.max_new_tokens > room:
        raise ConfigError(
            f"config key 'inference.max_new_tokens' is {cfg.inference.max_new_tokens} but the model's context is "
            f"{context} tokens (max_position_embeddings, {source}), of which the image takes {image} (img_size "
            f"{cfg.inference.img_size}) and the prompt at most {prompt}; set inference.max_new_tokens to at most "
            f"{max(room, 0)}" + (" and lower inference.img_size" if room < 1 else "") + ".")
