"""LLaVA-OneVision without files: its processor built in code, a tiny and a real-size model config.

Why it exists: vlmbench benchmarks a family with random weights (`model.weights: random`) on machines
with no Hub access, as it does for Qwen2.5-VL (vlmbench/models/loading.py). This module gives the
LLaVA-OneVision family (transformers `model_type` "llava_onevision",
LlavaOnevisionForConditionalGeneration) the same: the real LlavaOnevisionProcessor with the
checkpoint's image settings and a byte-level tokenizer carrying its special tokens, the config of a
tiny model that runs on a CPU in seconds, and the real-size architecture of
llava-hf/llava-onevision-qwen2-0.5b-ov-hf.

What differs from Qwen2.5-VL: Qwen2.5-VL spends one token per 28x28 px (1369 tokens at 1024x1024).
LLaVA-OneVision ("anyres_max_9") encodes a 384x384 view of the whole image (27x27 = 729 SigLIP
patches of 14 px, one token each) plus the image fitted into the best grid of 384 px crops (up to
6x6 = 2304 px), the crops' features with the letterbox padding removed, cut down to at most 9 crops'
worth, and one newline token per row: a 1024x1024 image takes a 3x3 grid, 729 + 81x81 + 81 = 7371
image tokens, the vision tower running on 10 crops. The count depends on the image's size and
aspect ratio. The prompt is `<|im_start|>user <image>\\n{prompt}<|im_end|><|im_start|>assistant\\n`
(no newline after `<|im_end|>`, unlike Qwen's) and a turn ends on `<|im_end|>`.
"""
from __future__ import annotations

from vlmbench.models.tiny.byte_level import byte_level_core

MODEL_TYPE = "llava_onevision"
CHECKPOINT = "llava-hf/llava-onevision-qwen2-0.5b-ov-hf"
CHECKPOINT_PARAMETERS = 894_000_000  # the Hub page's 894M (recalled): Qwen2-0.5B's 494M + a 26-layer SigLIP so400m, ~398M
IMAGE_SIZE = 384  # one crop, and the whole-image view, as the real vision tower sees them
PATCH_SIZE = 14  # 27x27 = 729 tokens per crop
TINY_IMAGE_SIZE = 32
TINY_PATCH_SIZE = 8  # 4x4 = 16 tokens per crop
MAX_CROPS_PER_SIDE = 6  # the checkpoint's grid pinpoints: 1 to 6 crops per side

# Modules whose Linear layers form each component (prefixes from the start of the module name).
COMPONENTS = {"vision": ("model.vision_tower", "model.multi_modal_projector"),
              "language_model": ("model.language_model",), "lm_head": ("lm_head",)}

EOS, PAD, IMAGE, VIDEO = "<|im_end|>", "<|endoftext|>", "<image>", "<video>"
SPECIAL_TOKENS = [PAD, "<|im_start|>", EOS, IMAGE, VIDEO]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }} "
    "{% if message['content'] is string %}{{ '\n' + message['content'] }}"
    "{% else %}{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}<image>{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ '\n' + part['text'] }}"
    "{% endfor %}{% endif %}<|im_end|>{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _tokenizer():
    """A byte-level BPE tokenizer (no merges) with the Qwen2 chat and image tokens; pads on the left."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=byte_level_core(SPECIAL_TOKENS),
                                   eos_token=EOS, pad_token=PAD, padding_side="left",
                                   extra_special_tokens={"image_token": IMAGE, "video_token": VIDEO})


def grid_pinpoints(crop: int) -> list[list[int]]:
    """The checkpoint's anyres grid: every (height, width) of 1 to 6 crops per side, in crop pixels."""
    sides = range(1, MAX_CROPS_PER_SIDE + 1)
    return [[crop * rows, crop * cols] for rows in sides for cols in sides]


def build_processor(tiny: bool = False):
    """LlavaOnevisionProcessor as llava-hf/llava-onevision-qwen2-0.5b-ov-hf ships it, tokenizer made in code.

    `tiny`: crops of TINY_IMAGE_SIZE px with 16 tokens each and the same 1-6 crops per side,
    matching `tiny_config_dict`; otherwise the checkpoint's 384 px crops with 729 tokens each.
    """
    from transformers import LlavaOnevisionImageProcessor, LlavaOnevisionProcessor, LlavaOnevisionVideoProcessor

    crop, patch = (TINY_IMAGE_SIZE, TINY_PATCH_SIZE) if tiny else (IMAGE_SIZE, PATCH_SIZE)
    image_processor = LlavaOnevisionImageProcessor(
        size={"height": crop, "width": crop}, image_grid_pinpoints=grid_pinpoints(crop), resample=3,  # BICUBIC
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    return LlavaOnevisionProcessor(image_processor=image_processor, tokenizer=_tokenizer(),
                                   video_processor=LlavaOnevisionVideoProcessor(),
                                   num_image_tokens=(crop // patch) ** 2, vision_feature_select_strategy="full",
                                   vision_aspect_ratio="anyres_max_9", chat_template=CHAT_TEMPLATE)


def _token_ids(tokenizer) -> dict:
    """Special token ids of the text config, from the tokenizer (the model must agree with the processor)."""
    ids = tokenizer.convert_tokens_to_ids
    return {"bos_token_id": ids(PAD), "eos_token_id": [ids(EOS), ids(PAD)], "pad_token_id": ids(PAD)}


def _config(processor, text: dict, vision: dict, vocab_size: int) -> dict:
    """config.json contents of a LlavaOnevisionForConditionalGeneration with these shapes."""
    tokenizer = processor.tokenizer
    crop = vision["image_size"]
    return {"model_type": MODEL_TYPE, "architectures": ["LlavaOnevisionForConditionalGeneration"],
            "image_token_index": tokenizer.image_token_id, "video_token_index": tokenizer.video_token_id,
            "vision_feature_select_strategy": "full", "vision_feature_layer": -1,
            "vision_aspect_ratio": "anyres_max_9", "image_grid_pinpoints": grid_pinpoints(crop),
            "projector_hidden_act": "gelu", "multimodal_projector_bias": True, "tie_word_embeddings": True,
            "text_config": {"model_type": "qwen2", "vocab_size": vocab_size, "hidden_act": "silu",
                            "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": True,
                            **text, **_token_ids(tokenizer)},
            "vision_config": {"model_type": "siglip_vision_model", "vision_use_head": False, **vision},
            **_token_ids(tokenizer)}


def tiny_config_dict(processor) -> dict:
    """A 2-layer LLaVA-OneVision of width 64 with a 2-block vision tower on 32 px crops (16 tokens per
    crop). Pair it with `build_processor(tiny=True)`.
    """
    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=4096)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=TINY_IMAGE_SIZE, patch_size=TINY_PATCH_SIZE)
    return _config(processor, text, vision, vocab_size=len(processor.tokenizer))


def real_config_dict(processor) -> dict:
    """The architecture of llava-hf/llava-onevision-qwen2-0.5b-ov-hf, special token ids from `processor`.

    Sure (the checkpoint's config.json, whose vision defaults transformers' LlavaOnevisionConfig
    repeats): text Qwen2-0.5B (hidden 896, intermediate 4864, 24 layers, 14 heads, 2 KV heads, tied
    embeddings, vocabulary 152000), vision SigLIP so400m cut to 26 layers, without its head (hidden
    1152, intermediate 4304, 16 heads, 384 px, patch 14), a 2-layer GELU projector with biases, all
    729 patch features kept ("full"), "anyres_max_9" on 1-6 crops per side. The vocabulary stays the
    checkpoint's 152000 rows (embedding and lm_head keep their real cost); the in-code tokenizer's ids
    all fall below it.
    """
    text = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                num_key_value_heads=2, max_position_embeddings=32768)
    vision = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=26, num_attention_heads=16,
                  image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
    return _config(processor, text, vision, vocab_size=max(152000, len(processor.tokenizer)))
