"""The `stock` engine: plain transformers `generate`, as a user of transformers gets it untuned.

Why it exists: it is the reference that the `fast` engine is compared with, and what a user runs to
reproduce plain transformers numbers. Greedy decoding with every generation setting explicit.
"""
from __future__ import annotations

from typing import Optional

import torch

from vlmbench.models.end_tokens import end_tokens


def _vision_loop(model) -> str:
    """How transformers runs the vision attention of `model`'s family (Family.vision_loop); 'per-window loop'
    (Qwen2.5-VL's) for a model without a known family (test doubles)."""
    from vlmbench.models.families import FAMILIES, DEFAULT_ARCHITECTURE
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return FAMILIES.get(model_type, FAMILIES[DEFAULT_ARCHITECTURE]).vision_loop


class StockEngine:
    """Greedy `model.generate` with explicit settings; no change to the model.

    `report` says per variant what the engine used (written into `variant_<name>.json`).
    """

    name = "stock"

    def __init__(self, model, processor, cfg, variant, device: str):
        self.model, self.processor, self.cfg, self.variant, self.device = model, processor, cfg, variant, device
        self.end_tokens = end_tokens(model, processor.tokenizer)  # id -> token text
        self.generation_config = self._generation_config()
        self.report: dict = {"engine": self.name, "vision_attention": f"transformers' own ({_vision_loop(model)} with "
                             f"{cfg.model.attn_implementation})", "kv_cache": "dynamic", "decode_compiled": False,
                             "decode_compiled_reason": "stock engine: plain generate"}

    def _generation_config(self):
        """Greedy decoding that stops at every end token the checkpoint or tokenizer declares (a list)."""
        from transformers import GenerationConfig
        tok = self.processor.tokenizer
        inf = self.cfg.inference
        return GenerationConfig(max_new_tokens=inf.max_new_tokens, min_new_tokens=inf.min_new_tokens or 0,
                                do_sample=False, num_beams=1, repetition_penalty=1.0,
                                eos_token_id=list(self.end_tokens), pad_token_id=tok.pad_token_id)

    def padded_size(self, images: int, micro_batch_size: int) -> Optional[int]:
        """The batch size a micro-batch of `images` is run at; None = as it is (no padding)."""
        return None

    @torch.inference_mode()
    def generate(self, on_device: dict) -> torch.Tensor:
        """Token ids, shape (batch, prompt + new tokens), for inputs already on the model's device."""
        return self.model.generate(**on_device, generation_config=self.generation_config)
