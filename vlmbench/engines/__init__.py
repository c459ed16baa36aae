"""Inference engines: how a loaded variant turns prepared inputs into generated tokens.

Why it exists: the same captioning loop (vlmbench.run.runner) runs either plain transformers `generate`
(`stock`, what a user of transformers gets without tuning) or a tuned path (`fast`, see
vlmbench.engines.fast). The choice is `inference.engine` in the config; `auto` resolves to `fast` on
CUDA and `stock` on CPU, and the resolved name is what the snapshot and the fingerprint hold.
"""
from __future__ import annotations

ENGINES = ("stock", "fast")
ENGINE_CHOICES = ("auto",) + ENGINES


def resolve_engine(requested: str, device: str) -> str:
    """`auto` -> `fast` on CUDA, `stock` elsewhere; an explicit name is kept.

    Raises ValueError for a name outside ENGINE_CHOICES (the config validates it earlier).
    """
    if requested not in ENGINE_CHOICES:
        raise ValueError(f"unknown inference engine {requested!r}; allowed: {', '.join(ENGINE_CHOICES)}")
    if requested != "auto":
        return requested
    return "fast" if device == "cuda" else "stock"


def build_engine(name: str, model, processor, cfg, variant, device: str):
    """The engine object for a loaded model; `name` must be resolved already (not `auto`)."""
    from vlmbench.engines.stock import StockEngine
    if name == "stock":
        return StockEngine(model, processor, cfg, variant, device)
    if name == "fast":
        from vlmbench.engines.fast import FastEngine
        return FastEngine(model, processor, cfg, variant, device)
    raise ValueError(f"engine {name!r} is not resolved; call resolve_engine first")
