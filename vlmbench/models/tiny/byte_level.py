"""The byte-level tokenizer core every in-code processor shares.

Why it exists: tests and offline runs build each family's processor without files or network; its tokenizer
is one token per byte (the 256 printable stand-ins of GPT-2's byte-level alphabet), no merges, plus the
family's special tokens. Each family module wraps this core in `PreTrainedTokenizerFast` with its own
named tokens (bos/eos/pad, image tokens), which is where the families differ.
"""
from __future__ import annotations

from typing import Optional


def byte_level_core(special_tokens: Optional[list[str]] = None):
    """A `tokenizers.Tokenizer`: 256 byte tokens (ids 0-255, the alphabet sorted), then `special_tokens` in order.

    Byte-level pre-tokenizer without a prefix space or regex split, byte-level decoder: any text round-trips.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    if special_tokens:
        core.add_special_tokens(special_tokens)
    return core
