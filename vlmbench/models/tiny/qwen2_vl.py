"""Qwen2-VL in code: a byte-level processor, the tiny shape and the 2B shape (random weights).

Why it exists: Qwen2-VL is the first family of Qwen's cu_seqlens vision towers (full attention per
image, no windows, LayerNorm + quick_gelu blocks); tests and offline runs need one without files.
It shares Qwen2.5-VL's tokens and chat template (vlmbench.models.tiny.qwen2_5_vl).
"""
from __future__ import annotations

from types import MappingProxyType

from vlmbench.models.tiny.qwen2_5_vl import (CHAT_TEMPLATE, REAL_VOCAB, SPECIAL_TOKENS, byte_level_tokenizer, thawed,
                                             token_ids)

CHECKPOINT = "Qwen/Qwen2-VL-2B-Instruct"  # the checkpoint whose shape real_config_dict builds (random weights)
TINY_TEXT = MappingProxyType(dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    max_position_embeddings=4096,
    rope_parameters=MappingProxyType({"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": (2, 3, 3)})))
TINY_VISION = MappingProxyType(dict(
    depth=2, embed_dim=64, hidden_size=64, mlp_ratio=2, num_heads=4, patch_size=14, spatial_merge_size=2,
    temporal_patch_size=2, in_channels=3, hidden_act="quick_gelu"))
# Qwen/Qwen2-VL-2B-Instruct (2.2 B parameters): vision `hidden_size` is the merger's output, the text width
REAL_TEXT = MappingProxyType(dict(
    hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_parameters=MappingProxyType({"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": (16, 24, 24)})))
REAL_VISION = MappingProxyType(dict(
    depth=32, embed_dim=1280, hidden_size=1536, mlp_ratio=4, num_heads=16, patch_size=14, spatial_merge_size=2,
    temporal_patch_size=2, in_channels=3, hidden_act="quick_gelu"))


def build_processor(tiny: bool = False):
    """A Qwen2-VL processor (14 px patches, 2x2 merged: 28 px per image token side) with a byte-level
    tokenizer made in code; no files, no network.

    `tiny` changes nothing: the tiny and the real shapes take the same images and tokens.
    """
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056, patch_size=14,
                                            temporal_patch_size=2, merge_size=2)
    return Qwen2VLProcessor(image_processor=image_processor, tokenizer=byte_level_tokenizer(SPECIAL_TOKENS),
                            video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)


TEXT_TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def split_config_dict(processor, text, vision, vocab: int, model_type: str, top_ids: tuple = ()) -> dict:
    """config.json contents of a Qwen family whose config splits into `text_config` and `vision_config` (Qwen2-VL,
    Qwen3-VL): `text`/`vision` sizes, `processor`'s vocabulary (or `vocab` rows if larger), the text token ids in
    text_config and the `top_ids` (every id when empty) at the top level, where each family's config class reads
    them."""
    tokenizer = processor.tokenizer
    ids = token_ids(tokenizer)
    architecture = {"qwen2_vl": "Qwen2VLForConditionalGeneration", "qwen3_vl": "Qwen3VLForConditionalGeneration"}
    return {"model_type": model_type, "architectures": [architecture[model_type]], "tie_word_embeddings": True,
            "text_config": {**thawed(text), "vocab_size": max(vocab, len(tokenizer)), "rms_norm_eps": 1e-6,
                            "hidden_act": "silu", "tie_word_embeddings": True, **{k: ids[k] for k in TEXT_TOKEN_IDS}},
            "vision_config": thawed(vision), **{k: v for k, v in ids.items() if not top_ids or k in top_ids}}


def _config_dict(processor, text, vision, vocab: int = 0) -> dict:
    """config.json contents for `text`/`vision` sizes; the vocabulary is `processor`'s, or `vocab` rows if larger."""
    return split_config_dict(processor, text, vision, vocab, "qwen2_vl")


def tiny_config_dict(processor) -> dict:
    """config.json contents of a tiny Qwen2-VL (2 + 2 layers of width 64) with `processor`'s vocabulary."""
    return _config_dict(processor, TINY_TEXT, TINY_VISION)


def real_config_dict(processor) -> dict:
    """config.json contents of Qwen/Qwen2-VL-2B-Instruct's shape (its 151,936-row vocabulary) with
    `processor`'s token ids."""
    return _config_dict(processor, REAL_TEXT, REAL_VISION, REAL_VOCAB)
