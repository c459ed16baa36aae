"""The vision-language families vlmbench knows, keyed by transformers' `model_type`.

Why it exists: the benchmark's question (what does quantizing the vision tower or the language model
cost?) is the same for every family, but each family names its parts differently. One small table says,
per family, which module-name prefixes make up each component (the quantizers' skip lists and the
census read them), where its in-code processor and shapes live (vlmbench.models.tiny.<module>), which
parts of the fast engine apply, and which checkpoints a user would point `model_id` at. A model whose
`model_type` is not here is refused (`get_family`) before any quantization config is built: a skip list
naming modules the model does not have matches nothing, and the whole model would be quantized silently.

The prefixes were read from tiny models built with `AutoModelForImageTextToText.from_config` in
transformers 5.24 (tests/test_families.py checks them against the installed transformers). "vision" is
the vision tower with its merger or projector: what turns pixels into language-model embeddings.

No torch or transformers import here: the config is validated against this table before they load.
"""
from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Mapping, Optional

DEFAULT_ARCHITECTURE = "qwen2_5_vl"  # model.architecture null, no config.json saying otherwise: the seed's family


@dataclass(frozen=True)
class Family:
    """One family: `vision` and `language_model` are module-name prefixes (full, from the model's root)."""

    model_type: str
    title: str
    vision: tuple[str, ...]
    language_model: tuple[str, ...]
    module: str  # under vlmbench.models.tiny: build_processor(), tiny_config_dict(p), real_config_dict(p)
    checkpoints: tuple[str, ...]  # Hub ids a user would point model_id at
    cu_seqlens_vision: bool = False  # Qwen-style packed vision tower: varlen attention, blocks at model.visual.blocks
    vision_loop: str = "one batched call over the padded images"  # how transformers runs its vision attention
    image_token_px: Optional[int] = None  # side of the image square one language-model token covers; None: not fixed
    no_flash_reason: Optional[str] = None  # why transformers refuses flash_attention_2 for it; None: it allows it

    @property
    def components(self) -> Mapping[str, tuple[str, ...]]:
        """component -> its module-name prefixes: vision, language_model, lm_head (in this order)."""
        return {"vision": self.vision, "language_model": self.language_model, "lm_head": ("lm_head",)}

    def tiny(self) -> ModuleType:
        """The family's in-code module (vlmbench.models.tiny.<module>), imported now.

        Raises ConfigError naming the missing module when this vlmbench has none for the family yet.
        """
        from vlmbench.config import ConfigError
        name = f"vlmbench.models.tiny.{self.module}"
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            raise ConfigError(f"family {self.model_type!r}: this vlmbench has no in-code processor and "
                              f"shapes for it ({name} is missing); use a checkpoint (model_id), or random weights "
                              "from a config.json of the family (model.config_dir, model.tiny false).") from None

    def image_tokens(self, img_size: int) -> Optional[int]:
        """Language-model tokens of one img_size x img_size image (the side rounded to the token's square, as
        the Qwen processors do); None for a family whose count does not follow from the size alone."""
        unit = self.image_token_px
        if unit is None:
            return None
        side = max(unit, round(img_size / unit) * unit)
        return (side // unit) ** 2


_QWEN_VISION = ("model.visual",)  # the tower, its merger (and Qwen3-VL's deepstack mergers) inside
_SIGLIP_PROJECTOR = ("model.vision_tower", "model.multi_modal_projector")
FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("qwen2_5_vl", "Qwen2.5-VL", _QWEN_VISION, ("model.language_model",), "qwen2_5_vl",
           ("Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen2.5-VL-32B-Instruct"),
           cu_seqlens_vision=True, vision_loop="per-window loop", image_token_px=28),
    Family("qwen2_vl", "Qwen2-VL", _QWEN_VISION, ("model.language_model",), "qwen2_vl",
           ("Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2-VL-7B-Instruct"), cu_seqlens_vision=True,
           vision_loop="per-image loop", image_token_px=28),
    Family("qwen3_vl", "Qwen3-VL", _QWEN_VISION, ("model.language_model",), "qwen3_vl",
           ("Qwen/Qwen3-VL-2B-Instruct", "Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen3-VL-8B-Instruct"),
           cu_seqlens_vision=True, vision_loop="per-image loop", image_token_px=32),
    Family("smolvlm", "SmolVLM", ("model.vision_model", "model.connector"), ("model.text_model",), "smolvlm",
           ("HuggingFaceTB/SmolVLM2-256M-Video-Instruct", "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
            "HuggingFaceTB/SmolVLM2-2.2B-Instruct")),  # SmolVLM (v1) checkpoints are model_type idefics3
    Family("gemma3", "Gemma 3", _SIGLIP_PROJECTOR, ("model.language_model",), "gemma3",
           ("google/gemma-3-4b-it", "google/gemma-3-12b-it", "google/gemma-3-27b-it"),
           no_flash_reason="transformers refuses it for Gemma3ForConditionalGeneration: flash attention drops the "
                           "bidirectional mask over image tokens"),
    Family("llava_onevision", "LLaVA-OneVision", _SIGLIP_PROJECTOR, ("model.language_model",), "llava_onevision",
           ("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "llava-hf/llava-onevision-qwen2-7b-ov-hf")),
)}


def known_families() -> list[str]:
    """The model types vlmbench knows, in the table's order."""
    return list(FAMILIES)


def get_family(model_type: Optional[str], where: str) -> Family:
    """The family of `model_type`; `where` names what declared it (a config key or a config.json path).

    Raises ConfigError naming the model type, the known families and the closest name.
    """
    if model_type in FAMILIES:
        return FAMILIES[model_type]
    from vlmbench.config import ConfigError
    close = closest_family(str(model_type))
    hint = f" Did you mean '{close}'?" if close else ""
    raise ConfigError(f"{where} names model type {model_type!r}, whose layout (vision tower, language model) vlmbench "
                      f"does not know, so it cannot tell which layers each variant quantizes.{hint} Known families: "
                      f"{', '.join(known_families())}.")


def closest_family(name: str) -> Optional[str]:
    """The known model type `name` most likely means: spelt as a title ('Qwen2.5-VL' -> qwen2_5_vl), a known type's
    start ('llava' -> llava_onevision), or a near spelling (difflib); None when nothing is close."""
    plain = name.strip().lower().replace(".", "_").replace("-", "_").replace(" ", "_")
    by_title = {f.title.lower().replace(".", "_").replace("-", "_").replace(" ", "_"): t for t, f in FAMILIES.items()}
    if plain in FAMILIES or plain in by_title:
        return FAMILIES[plain].model_type if plain in FAMILIES else by_title[plain]
    starts = [t for t in FAMILIES if plain and t.startswith(plain)]
    close = starts or difflib.get_close_matches(plain, known_families(), n=1)
    return close[0] if close else None


def family_of_model(model) -> Family:
    """The family of a loaded transformers model (its `config.model_type`); ConfigError if unknown."""
    return get_family(getattr(model.config, "model_type", None), f"the loaded {type(model).__name__}")
