"""The embedded tiny captioner (`model.weights: embedded`): it loads like any model, and it really captions.

The quality tests run the shipped weights through the benchmark's own loading path and hot loop on
held-out drawn images (the smoke run's sample stream, seed 42; training drew from the stream
"train-0"), and score them with the benchmark's CIDEr-D.
"""
import warnings
from pathlib import Path

import pytest

from vlmbench.config import ConfigError, load_config
from vlmbench.data import load_rows
from vlmbench.metrics import cider
from vlmbench.modeling import EMBEDDED_CAPTIONER_DIR, build_processor, load_variant_model, weights_dir
from vlmbench.runner import Captioner, micro_batches
from vlmbench.variants import get_variant

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
HELDOUT_IMAGES = 48
# Stated floor for fp16 on the 48 held-out images: the shipped weights measured 0.76 (TRAINING.md, fp32)
# and 0.758 in fp16 on the smoke run's 24; a retrained model must clear it too.
FP16_CIDER_FLOOR = 0.5


def smoke_config(**overrides):
    return load_config(SMOKE, overrides={"dataset.synthetic_images": HELDOUT_IMAGES,
                                         "dataset.limit": HELDOUT_IMAGES, **overrides})


def test_embedded_weights_are_packaged_and_small():
    files = {p.name for p in EMBEDDED_CAPTIONER_DIR.iterdir()}
    assert {"config.json", "model.safetensors", "TRAINING.md"} <= files
    assert (EMBEDDED_CAPTIONER_DIR / "model.safetensors").stat().st_size < 5e6


def test_embedded_needs_the_builtin_processor():
    with pytest.raises(ConfigError, match="'model.processor' has value '/some/dir'.*builtin or null"):
        load_config(SMOKE, overrides={"model.processor": "/some/dir"})


def test_missing_embedded_weights_are_named_before_loading(monkeypatch, tmp_path):
    monkeypatch.setattr("vlmbench.modeling.EMBEDDED_CAPTIONER_DIR", tmp_path)
    cfg = smoke_config()
    with pytest.raises(ConfigError, match="holds no model.safetensors; reinstall vlmbench"):
        weights_dir(cfg, None, "cpu")


def test_other_prompt_or_image_size_is_warned_about():
    with pytest.warns(UserWarning, match="trained with inference.img_size = 112; this run uses 224"):
        weights_dir(smoke_config(**{"inference.img_size": 224}), None, "cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        weights_dir(smoke_config(), None, "cpu")


def caption_all(variant: str, limit: int = HELDOUT_IMAGES) -> tuple[dict, dict]:
    """Captions of the first `limit` held-out images by `variant`, and their references."""
    cfg = smoke_config(**{"inference.batch_size": 16, "inference.micro_batch_size": 16})
    processor = build_processor(cfg)
    model = load_variant_model(cfg, get_variant(variant), weights_dir(cfg, processor, "cpu"), "cpu")
    captioner = Captioner(model, processor, cfg, "cpu")
    rows = load_rows(cfg)[:limit]
    captions = []
    for group in micro_batches(rows, cfg.inference.micro_batch_size):
        captions += captioner.generate(captioner.prepare(0, group))[0]
    assert all(n < cfg.inference.max_new_tokens for _, n in captions), "a caption did not end on <|im_end|>"
    return ({r.image_id: text for r, (text, _) in zip(rows, captions, strict=True)},
            {r.image_id: list(r.captions) for r in rows})


@pytest.mark.slow
def test_fp16_captions_held_out_images_above_the_floor():
    predictions, references = caption_all("fp16")
    score = cider(references, predictions).score
    assert score > FP16_CIDER_FLOOR, f"fp16 CIDEr-D {score:.3f} on {HELDOUT_IMAGES} held-out images"


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["int8", "int8_vit"])
def test_int8_variants_caption(variant):
    predictions, _ = caption_all(variant, limit=8)
    assert all(len(text.split()) >= 3 for text in predictions.values()), predictions
