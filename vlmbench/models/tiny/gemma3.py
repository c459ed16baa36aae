"""Gemma 3 without files: its processor built in code, a tiny and a real-size model config.

Why it exists: vlmbench benchmarks a family with random weights (`model.weights: random`) on machines
with no Hub access, as it does for Qwen2.5-VL (vlmbench/models/loading.py). This module gives the
Gemma 3 family (transformers `model_type` "gemma3", Gemma3ForConditionalGeneration) the same: the
real Gemma3Processor with the checkpoint's image settings and a byte-level tokenizer carrying its
special tokens, the config of a tiny model that runs on a CPU in seconds, and the real-size
architecture of google/gemma-3-4b-it.

What differs from Qwen2.5-VL: Qwen2.5-VL keeps the image's aspect ratio and spends one token per
28x28 px (1369 tokens at 1024x1024). Gemma 3 squashes every image to a fixed 896x896 (no aspect
ratio kept, pan-and-scan off as in the checkpoint), encodes 64x64 SigLIP patches of 14 px and
average-pools them 4x4 into 256 tokens: always 256 image tokens per image, whatever its size,
between `\\n\\n<start_of_image>` and `<end_of_image>\\n\\n`. The prompt is
`<bos><start_of_turn>user\\n<start_of_image>{prompt}<end_of_turn>\\n<start_of_turn>model\\n` and a turn
ends on `<end_of_turn>` (the checkpoint also stops on `<eos>`). Its projector is a plain weight
matrix (`mm_input_projection_weight`), not an nn.Linear, so bitsandbytes leaves it in 16 bit: the
vision component's int8 layers are the SigLIP tower's.
"""
from __future__ import annotations

from vlmbench.models.tiny.byte_level import byte_level_core

MODEL_TYPE = "gemma3"
CHECKPOINT = "google/gemma-3-4b-it"
CHECKPOINT_PARAMETERS = 4_300_000_000  # "4.3B params" on the checkpoint's Hub page
IMAGE_SIZE = 896  # every image is resized to this square
IMAGE_TOKENS = 256  # 64x64 patches of 14 px, average-pooled 4x4
TINY_IMAGE_SIZE = 32
TINY_PATCH_SIZE, TINY_IMAGE_TOKENS = 8, 4  # 4x4 patches pooled 2x2

# Modules whose Linear layers form each component (prefixes from the start of the module name).
COMPONENTS = {"vision": ("model.vision_tower", "model.multi_modal_projector"),
              "language_model": ("model.language_model",), "lm_head": ("lm_head",)}

BOS, EOS, PAD, END_OF_TURN = "<bos>", "<eos>", "<pad>", "<end_of_turn>"
BOI, EOI, IMAGE = "<start_of_image>", "<end_of_image>", "<image_soft_token>"
SPECIAL_TOKENS = [PAD, EOS, BOS, "<unk>", "<start_of_turn>", END_OF_TURN, BOI, EOI, IMAGE]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'image' %}<start_of_image>"
    "{% elif part['type'] == 'text' %}{{ part['text'] | trim }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")


def _tokenizer():
    """A byte-level BPE tokenizer (no merges) with Gemma 3's special tokens; pads on the left.

    Gemma3Processor reads the tokenizer's named `boi_token`, `eoi_token` and `image_token`. No
    `<bos>` is added on encoding: the chat template writes it, once.
    """
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=byte_level_core(SPECIAL_TOKENS),
                                   bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   unk_token="<unk>", padding_side="left",
                                   extra_special_tokens={"boi_token": BOI, "eoi_token": EOI, "image_token": IMAGE})


def build_processor(tiny: bool = False):
    """Gemma3Processor as google/gemma-3-4b-it ships it, tokenizer made in code.

    `tiny`: images resized to TINY_IMAGE_SIZE and 4 tokens each, matching `tiny_config_dict`;
    otherwise the checkpoint's 896 px and 256 tokens.
    """
    from transformers import Gemma3ImageProcessor, Gemma3Processor

    side = TINY_IMAGE_SIZE if tiny else IMAGE_SIZE
    image_processor = Gemma3ImageProcessor(size={"height": side, "width": side}, resample=2,  # 2 = BILINEAR
                                           image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
                                           do_pan_and_scan=False)
    return Gemma3Processor(image_processor=image_processor, tokenizer=_tokenizer(), chat_template=CHAT_TEMPLATE,
                           image_seq_length=TINY_IMAGE_TOKENS if tiny else IMAGE_TOKENS)


def _token_ids(tokenizer) -> dict:
    """Special token ids of the text config, from the tokenizer (the model must agree with the processor)."""
    ids = tokenizer.convert_tokens_to_ids
    return {"bos_token_id": ids(BOS), "eos_token_id": [ids(EOS), ids(END_OF_TURN)], "pad_token_id": ids(PAD)}


def _config(processor, text: dict, vision: dict, mm_tokens_per_image: int, vocab_size: int) -> dict:
    """config.json contents of a Gemma3ForConditionalGeneration with these shapes."""
    tokenizer = processor.tokenizer
    return {"model_type": MODEL_TYPE, "architectures": ["Gemma3ForConditionalGeneration"],
            "mm_tokens_per_image": mm_tokens_per_image, "boi_token_index": tokenizer.boi_token_id,
            "eoi_token_index": tokenizer.eoi_token_id, "image_token_index": tokenizer.image_token_id,
            "text_config": {"model_type": "gemma3_text", "vocab_size": vocab_size, **text, **_token_ids(tokenizer)},
            "vision_config": {"model_type": "siglip_vision_model", "vision_use_head": False, **vision},
            **_token_ids(tokenizer)}


def tiny_config_dict(processor) -> dict:
    """A 2-layer Gemma 3 of width 64 (one sliding-window, one full-attention layer) with a 2-block
    vision tower on 32 px images (4 tokens per image). Pair it with `build_processor(tiny=True)`.
    """
    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, sliding_window=16,
                layer_types=["sliding_attention", "full_attention"], max_position_embeddings=4096)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=TINY_IMAGE_SIZE, patch_size=TINY_PATCH_SIZE)
    return _config(processor, text, vision, mm_tokens_per_image=TINY_IMAGE_TOKENS, vocab_size=len(processor.tokenizer))


def real_config_dict(processor) -> dict:
    """The architecture of google/gemma-3-4b-it, special token ids from `processor`.

    Sure (the checkpoint's config.json and transformers' Gemma3TextConfig defaults, which the
    checkpoint leaves unset): text hidden 2560, intermediate 10240, 34 layers, 8 heads, 4 KV heads,
    head_dim 256, query_pre_attn_scalar 256, sliding window 1024 on 5 layers of every 6, rope theta
    1e6 with linear scaling 8 on the full-attention layers and 1e4 on the sliding ones, tied
    embeddings; vision SigLIP so400m without its head (hidden 1152, intermediate 4304, 27 layers,
    16 heads, 896 px, patch 14); 256 tokens per image. The vocabulary stays the checkpoint's 262208
    rows (embedding and lm_head keep their real cost: a sixth of the parameters); the in-code
    tokenizer's ids all fall below it.
    """
    text = dict(hidden_size=2560, intermediate_size=10240, num_hidden_layers=34, num_attention_heads=8,
                num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256, sliding_window=1024,
                sliding_window_pattern=6, max_position_embeddings=131072,
                rope_parameters={"full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                                 "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}})
    vision = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                  image_size=IMAGE_SIZE, patch_size=14)
    return _config(processor, text, vision, mm_tokens_per_image=IMAGE_TOKENS,
                   vocab_size=max(262208, len(processor.tokenizer)))
