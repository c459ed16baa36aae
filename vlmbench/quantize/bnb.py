"""bitsandbytes methods: LLM.int8 (`int8`), expressed as transformers' own BitsAndBytesConfig.

Why it exists: the one place that knows how a bitsandbytes variant is configured (which modules
to skip, which options) and how its layers look once loaded (for the census). bitsandbytes itself is
imported by transformers when the config is used, never here at import time.
"""
from __future__ import annotations

from torch import nn

# census: class name of a loaded bitsandbytes layer -> the label the census reports
LAYER_KINDS = {"Linear8bitLt": "bitsandbytes Linear8bitLt (int8)"}


def quantization_config(variant, dtype):
    """transformers' BitsAndBytesConfig for `variant` (Variant) computing in `dtype` (torch dtype).

    The skip list holds full module-name prefixes (see Variant.skip_modules): transformers 5 matches
    a prefix from the start of the name or a suffix, and any list replaces the default one.
    """
    from transformers import BitsAndBytesConfig
    options = variant.option_values()
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=variant.skip_modules(),
                              llm_int8_threshold=options["threshold"])


def layer_kind(module: nn.Module):
    """The census label of a bitsandbytes layer, None for anything else."""
    return LAYER_KINDS.get(type(module).__name__)
