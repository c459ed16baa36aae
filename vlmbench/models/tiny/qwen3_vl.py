"""Qwen3-VL in code: a byte-level processor, the tiny shape and the 2B shape (random weights).

Why it exists: Qwen3-VL keeps Qwen's cu_seqlens vision tower (full attention per image) with 16 px
patches, learned position embeddings and "deepstack" mergers that feed vision features into the first
language-model layers; tests and offline runs need one without files. Tokens and chat template as
Qwen2.5-VL's (vlmbench.models.tiny.qwen2_5_vl).
"""
from __future__ import annotations

from types import MappingProxyType

from vlmbench.models.tiny.qwen2_5_vl import CHAT_TEMPLATE, REAL_VOCAB, SPECIAL_TOKENS, byte_level_tokenizer
from vlmbench.models.tiny.qwen2_vl import split_config_dict


def _rope(theta: float, section: tuple) -> MappingProxyType:
    """Interleaved multimodal rotary embedding; `section` sums to head_dim / 2."""
    return MappingProxyType({"rope_type": "default", "rope_theta": theta, "mrope_section": section,
                             "mrope_interleaved": True})


CHECKPOINT = "Qwen/Qwen3-VL-2B-Instruct"  # the checkpoint whose shape real_config_dict builds (random weights)
TINY_TEXT = MappingProxyType(dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    head_dim=16, max_position_embeddings=4096, rope_parameters=_rope(5000000.0, (2, 3, 3))))
TINY_VISION = MappingProxyType(dict(
    depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=64, patch_size=16,
    spatial_merge_size=2, temporal_patch_size=2, in_channels=3, num_position_embeddings=64,
    deepstack_visual_indexes=(1,), hidden_act="gelu_pytorch_tanh"))
# Qwen/Qwen3-VL-2B-Instruct (2.1 B parameters)
REAL_TEXT = MappingProxyType(dict(
    hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
    head_dim=128, max_position_embeddings=262144, rope_parameters=_rope(5000000.0, (24, 20, 20))))
REAL_VISION = MappingProxyType(dict(
    depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048, patch_size=16,
    spatial_merge_size=2, temporal_patch_size=2, in_channels=3, num_position_embeddings=2304,
    deepstack_visual_indexes=(5, 11, 17), hidden_act="gelu_pytorch_tanh"))


def build_processor(tiny: bool = False):
    """A Qwen3-VL processor (16 px patches, 2x2 merged: 32 px per image token side) with a byte-level
    tokenizer made in code; no files, no network.

    `tiny` changes nothing: the tiny and the real shapes take the same images and tokens.
    """
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=4096, max_pixels=16777216, patch_size=16,
                                            temporal_patch_size=2, merge_size=2, image_mean=[0.5] * 3,
                                            image_std=[0.5] * 3)
    return Qwen3VLProcessor(image_processor=image_processor, tokenizer=byte_level_tokenizer(SPECIAL_TOKENS),
                            video_processor=Qwen3VLVideoProcessor(), chat_template=CHAT_TEMPLATE)


VISION_TOKEN_IDS = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


def _config_dict(processor, text, vision, vocab: int = 0) -> dict:
    """config.json contents for `text`/`vision` sizes; the vocabulary is `processor`'s, or `vocab` rows if larger.
    Only the vision token ids sit at the top level (Qwen3VLConfig's own)."""
    return split_config_dict(processor, text, vision, vocab, "qwen3_vl", VISION_TOKEN_IDS)


def tiny_config_dict(processor) -> dict:
    """config.json contents of a tiny Qwen3-VL (2 + 2 layers, one deepstack merger) with `processor`'s vocabulary."""
    return _config_dict(processor, TINY_TEXT, TINY_VISION)


def real_config_dict(processor) -> dict:
    """config.json contents of Qwen/Qwen3-VL-2B-Instruct's shape (its 151,936-row vocabulary) with
    `processor`'s token ids."""
    return _config_dict(processor, REAL_TEXT, REAL_VISION, REAL_VOCAB)
