"""End tokens: which token ids end a caption, and where a generated sequence ends.

Why it exists: Qwen2.5-VL declares two end tokens (`<|im_end|>` and `<|endoftext|>`); stopping on
one alone lets decoding run on past the model's real end (wasted time) and keeps text after it in the
caption. Every engine builds its GenerationConfig from `end_tokens`, and the runner cuts each
sequence with `until_end`, so both agree on where a caption ends.
"""
from __future__ import annotations

import torch


# Qwen2.5-VL's own end tokens: its generation_config.json lists both as eos_token_id
# ([151645, 151643] in the real tokenizer): <|im_end|> closes a chat turn, <|endoftext|> a document.
KNOWN_END_TOKENS = ("<|im_end|>", "<|endoftext|>")


def _as_list(ids) -> list[int]:
    if ids is None:
        return []
    return [int(i) for i in ids] if isinstance(ids, (list, tuple)) else [int(ids)]


def end_tokens(model, tokenizer) -> dict[int, str]:
    """Every token id that ends a caption, id -> token text, in the order found.

    Merged from the checkpoint's `model.generation_config.eos_token_id` (an id or a list), the
    tokenizer's `eos_token_id`, and those of KNOWN_END_TOKENS that the tokenizer holds as added tokens.
    """
    declared = _as_list(getattr(getattr(model, "generation_config", None), "eos_token_id", None))
    added = tokenizer.get_added_vocab()
    ids = declared + _as_list(tokenizer.eos_token_id) + [added[t] for t in KNOWN_END_TOKENS if t in added]
    return {i: tokenizer.convert_ids_to_tokens(i) for i in dict.fromkeys(ids)}


def stop_ids(generation_config) -> set[int]:
    """The end tokens of a GenerationConfig plus its padding token (what follows a finished sequence)."""
    return set(_as_list(generation_config.eos_token_id)) | set(_as_list(generation_config.pad_token_id))


def until_end(sequence: torch.Tensor, generation_config) -> list[int]:
    """The generated token ids before the first end or padding token: the caption's tokens."""
    tokens, stops = sequence.tolist(), stop_ids(generation_config)
    for position, token in enumerate(tokens):
        if token in stops:
            return tokens[:position]
    return tokens
