"""SmolVLM2 without files: its processor built in code, a tiny and a real-size model config.

Why it exists: vlmbench benchmarks a family with random weights (`model.weights: random`) on machines
with no Hub access, as it does for Qwen2.5-VL (vlmbench/models/loading.py). This module gives the
SmolVLM family (transformers `model_type` "smolvlm", SmolVLMForConditionalGeneration) the same: the
real SmolVLMProcessor with the checkpoint's image settings and a byte-level tokenizer carrying its
special tokens, the config of a tiny model that runs on a CPU in seconds, and the real-size
architecture of HuggingFaceTB/SmolVLM2-256M-Video-Instruct.

What differs from Qwen2.5-VL: Qwen2.5-VL keeps the image's aspect ratio and spends one token per
28x28 px (1369 tokens at 1024x1024). SmolVLM resizes the longest edge to 2048 px (upsampling smaller
images), cuts the result into 512x512 tiles plus one 512x512 global view, and encodes each tile in
64 tokens (SigLIP patch 16, then a pixel shuffle of 4x4 patches into one token): a square image of
any size becomes 4x4 tiles + 1 global = 17 x 64 = 1088 image tokens, each tile introduced by
`<fake_token_around_image><row_r_col_c>`. The prompt is `<|im_start|>User:<image>{prompt}
<end_of_utterance>\\nAssistant:` and a turn ends on `<end_of_utterance>`.

Two things the caller must know: SmolVLMProcessor takes images as one list per prompt
(`images=[[image] for image in images]`; a flat list is read as every image of a single prompt and
refused), and it refuses to build without the `num2words` package (which it uses for video prompts).
"""
from __future__ import annotations

from vlmbench.models.tiny.byte_level import byte_level_core

MODEL_TYPE = "smolvlm"
CHECKPOINT = "HuggingFaceTB/SmolVLM2-256M-Video-Instruct"
CHECKPOINT_PARAMETERS = 256_000_000  # "256M" on the checkpoint's model card and in its release blog post
IMAGE_SIZE = 512  # the side of one tile, what the real vision tower encodes at once
PATCH_SIZE, SCALE_FACTOR = 16, 4  # 32x32 patches per tile, pixel-shuffled 4x4 into one token: 64 tokens
MAX_TILES_PER_SIDE = 4  # the real processor resizes the longest edge to 4 tiles (size = 4 * max_image_size)
TINY_IMAGE_SIZE = 32  # the tiny vision tower's tile
TINY_PATCH_SIZE, TINY_SCALE_FACTOR = 8, 2  # 4x4 patches per tile, shuffled 2x2: 4 tokens
TINY_TILES_PER_SIDE = 2  # the tiny processor: 2x2 tiles + 1 global view

# Modules whose Linear layers form each component (prefixes from the start of the module name).
COMPONENTS = {"vision": ("model.vision_model", "model.connector"), "language_model": ("model.text_model",),
              "lm_head": ("lm_head",)}

BOS, EOS, PAD = "<|im_start|>", "<end_of_utterance>", "<|im_end|>"
TILE_TOKENS = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]  # the real tokenizer's 6x6
SPECIAL_TOKENS = ["<|endoftext|>", BOS, PAD, "<fake_token_around_image>", "<image>", EOS, "<global-img>",
                  "<video>", *TILE_TOKENS]
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{ message['role'] | capitalize }}"
    "{% if message['content'] is string %}{{ ': ' + message['content'] }}"
    "{% else %}{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
    "{% for part in message['content'] %}{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% elif part['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}")


def _tokenizer():
    """A byte-level BPE tokenizer (no merges) with SmolVLM2's special tokens; pads on the left.

    `image_token` is named, so `tokenizer.image_token_id` finds it as in the other families.
    """
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=byte_level_core(SPECIAL_TOKENS),
                                   bos_token=BOS, eos_token=EOS, pad_token=PAD,
                                   unk_token="<|endoftext|>", padding_side="left",
                                   extra_special_tokens={"image_token": "<image>"})


def _image_seq_len(tile: int, patch: int, scale_factor: int) -> int:
    """Tokens per tile: (tile / patch)^2 patches, pixel-shuffled scale_factor^2 into one."""
    return (tile // patch) ** 2 // scale_factor ** 2


def build_processor(tiny: bool = False):
    """SmolVLMProcessor as HuggingFaceTB/SmolVLM2-256M-Video-Instruct ships it, tokenizer made in code.

    `tiny`: tiles of TINY_IMAGE_SIZE px, TINY_TILES_PER_SIDE per side, 4 tokens each, matching
    `tiny_config_dict`; otherwise the checkpoint's 512 px tiles, up to 4 per side, 64 tokens each.
    """
    from transformers import SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    tile, patch, scale, per_side = ((TINY_IMAGE_SIZE, TINY_PATCH_SIZE, TINY_SCALE_FACTOR, TINY_TILES_PER_SIDE)
                                    if tiny else (IMAGE_SIZE, PATCH_SIZE, SCALE_FACTOR, MAX_TILES_PER_SIDE))
    image_processor = SmolVLMImageProcessor(
        do_image_splitting=True, max_image_size={"longest_edge": tile}, size={"longest_edge": per_side * tile},
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5], resample=1)  # 1 = LANCZOS, as the checkpoint
    return SmolVLMProcessor(image_processor=image_processor, tokenizer=_tokenizer(),
                            video_processor=SmolVLMVideoProcessor(), image_seq_len=_image_seq_len(tile, patch, scale),
                            chat_template=CHAT_TEMPLATE)


def _token_ids(tokenizer) -> dict:
    """Special token ids of the config, from the tokenizer (the model must agree with the processor)."""
    ids = tokenizer.convert_tokens_to_ids
    return {"bos_token_id": ids(BOS), "eos_token_id": [ids(EOS)], "pad_token_id": ids(PAD)}


def _config(processor, text: dict, vision: dict, scale_factor: int, vocab_size: int) -> dict:
    """config.json contents of a SmolVLMForConditionalGeneration with these shapes."""
    tokenizer = processor.tokenizer
    text_config = {"model_type": "llama", "hidden_act": "silu", "rms_norm_eps": 1e-5, "vocab_size": vocab_size,
                   "tie_word_embeddings": False, **text, **_token_ids(tokenizer)}
    return {"model_type": MODEL_TYPE, "architectures": ["SmolVLMForConditionalGeneration"],
            "scale_factor": scale_factor, "image_token_id": tokenizer.convert_tokens_to_ids("<image>"),
            "tie_word_embeddings": False, "text_config": text_config,
            "vision_config": {"model_type": "smolvlm_vision", "num_channels": 3, **vision},
            "vocab_size": vocab_size, **_token_ids(tokenizer)}


def tiny_config_dict(processor) -> dict:
    """A 2-layer SmolVLM of width 64 with a 2-block vision tower on 32 px tiles (4 tokens per tile).

    Pair it with `build_processor(tiny=True)`.
    """
    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, head_dim=16, max_position_embeddings=4096, rope_theta=100000.0)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=TINY_IMAGE_SIZE, patch_size=TINY_PATCH_SIZE)
    return _config(processor, text, vision, scale_factor=TINY_SCALE_FACTOR, vocab_size=len(processor.tokenizer))


def real_config_dict(processor) -> dict:
    """The architecture of HuggingFaceTB/SmolVLM2-256M-Video-Instruct, vocabulary from `processor`.

    Sure (the checkpoint family's config.json, mirrored by HuggingFaceTB/SmolVLM-256M-Instruct, which
    SmolVLM2-256M is fine-tuned from, and the model card): text SmolLM2-135M (Llama, hidden 576,
    intermediate 1536, 30 layers, 9 heads, 3 KV heads, head_dim 64, untied lm_head), vision SigLIP
    base patch16-512 without its head (hidden 768, intermediate 3072, 12 layers, 12 heads, 512 px,
    patch 16), pixel-shuffle scale factor 4 (64 tokens per 512 px tile). Less sure: rope_theta
    100000 and max_position_embeddings 8192 (neither changes a parameter count).
    The vocabulary stays the checkpoint's 49280 rows (embedding and lm_head keep their real cost);
    the in-code tokenizer's ids all fall below it.
    """
    text = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                num_key_value_heads=3, head_dim=64, max_position_embeddings=8192, rope_theta=100000.0)
    vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                  image_size=IMAGE_SIZE, patch_size=PATCH_SIZE)
    return _config(processor, text, vision, scale_factor=SCALE_FACTOR, vocab_size=max(49280, len(processor.tokenizer)))
