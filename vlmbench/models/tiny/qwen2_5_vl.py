"""Qwen2.5-VL in code: a byte-level processor, the tiny shape and the 3B shape (random weights).

Why it exists: the offline smoke run, the embedded captioner and the tests need a Qwen2.5-VL without
files or network. Moved here unchanged from vlmbench/models/loading.py when vlmbench learned other
families: the dicts below are what the random-weight cache key hashes, so they must not change for
the tiny model of earlier runs to keep its cached weights.
"""
from __future__ import annotations

from vlmbench.models.tiny.byte_level import byte_level_core

from collections.abc import Mapping
from types import MappingProxyType

# The shape of Qwen2.5-VL-3B shrunk to a few thousand parameters per layer: for tests and the
# offline smoke run. Token ids are filled in from the processor's tokenizer. Read-only (a mapping
# proxy holding tuples): transformers edits the config dicts it is given in place (rope_scaling), and
# a shared module-level dict edited once changed the random-weight cache key, so the tiny model was
# built twice on a fresh cache. `thawed` gives each caller its own plain copy.
CHECKPOINT = "Qwen/Qwen2.5-VL-3B-Instruct"  # the checkpoint whose shape real_config_dict builds (random weights)
TINY_TEXT = MappingProxyType(dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    rope_scaling=MappingProxyType({"type": "mrope", "mrope_section": (2, 3, 3)}), max_position_embeddings=4096))
TINY_VISION = MappingProxyType(dict(
    depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64, fullatt_block_indexes=(1,),
    window_size=112, patch_size=14, spatial_merge_size=2, temporal_patch_size=2, in_chans=3, hidden_act="silu"))
# Qwen/Qwen2.5-VL-3B-Instruct's config.json (text at the top level, as the checkpoint writes it)
REAL_TEXT = MappingProxyType(dict(
    hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16, num_key_value_heads=2,
    rope_scaling=MappingProxyType({"type": "mrope", "mrope_section": (16, 24, 24)}), max_position_embeddings=128000,
    sliding_window=32768, max_window_layers=70, use_sliding_window=False))
REAL_VISION = MappingProxyType(dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
    fullatt_block_indexes=(7, 15, 23, 31), window_size=112, patch_size=14, spatial_merge_size=2,
    temporal_patch_size=2, in_chans=3, hidden_act="silu", tokens_per_second=2))

REAL_VOCAB = 151936  # the embedding rows of Qwen's checkpoints (2.5-VL, 2-VL, 3-VL): the real lm_head's cost

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def thawed(value):
    """A plain, independent copy (dicts and lists) of read-only settings (mapping proxies and tuples)."""
    if isinstance(value, Mapping):
        return {k: thawed(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [thawed(v) for v in value]
    return value


def byte_level_tokenizer(special_tokens: list[str], eos: str = "<|im_end|>", pad: str = "<|endoftext|>"):
    """A fast tokenizer made in code: one token per byte (256) plus `special_tokens`; no merges, no files."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=byte_level_core(), eos_token=eos, pad_token=pad,
                                   additional_special_tokens=special_tokens)


def build_processor(tiny: bool = False):
    """A Qwen2.5-VL processor with a byte-level tokenizer made in code: no files, no network.

    Images are cut into 14 px patches, 2x2 patches merged into one language-model token (28 px per token side).

    `tiny` changes nothing: the tiny and the real shapes take the same images and tokens.
    """
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    image_processor = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056, patch_size=14,
                                            temporal_patch_size=2, merge_size=2)
    return Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=byte_level_tokenizer(SPECIAL_TOKENS),
                               video_processor=Qwen2VLVideoProcessor(), chat_template=CHAT_TEMPLATE)


def token_ids(tokenizer) -> dict:
    """The config.json token ids of a Qwen2-VL-style model (bos, eos, pad, vision markers), from `tokenizer`."""
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
            "vocab_size": len(processor.tokenizer), **token_ids(processor.tokenizer)}
    return data


def real_config_dict(processor) -> dict:
    """config.json contents of Qwen/Qwen2.5-VL-3B-Instruct's shape (3.75 B parameters), with its vocabulary size
    (151,936 rows, or `processor`'s if larger) and `processor`'s token ids."""
    data = tiny_config_dict(processor, REAL_TEXT, REAL_VISION)
    data["vocab_size"] = max(REAL_VOCAB, data["vocab_size"])
    return data


def shrunk(data: dict, processor) -> dict:
    """A Qwen2.5-VL config.json (`data`, edited in place and returned) shrunk to the tiny shape, with the
    vocabulary and token ids of `processor` (model.tiny with a config_dir or model_id)."""
    data.update(thawed(TINY_TEXT))
    data["vision_config"].update(thawed(TINY_VISION))
    data["vocab_size"] = len(processor.tokenizer)
    data.update(token_ids(processor.tokenizer))
    return data
