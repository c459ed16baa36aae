"""The census on a tiny Qwen2.5-VL: each variant quantizes exactly the Linear layers it promises."""
import pytest

from vlmbench.quantize.census import CensusMismatch, check_census, has_method, take_census
from vlmbench.models.loading import build_processor, load_variant_model, weights_dir
from vlmbench.quantize.variants import get_variant


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    from tests.conftest import TINY
    from vlmbench.config import ExperimentConfig, build
    cfg = build(ExperimentConfig, TINY)
    processor = build_processor(cfg)
    return cfg, weights_dir(cfg, processor, "cpu")


@pytest.mark.parametrize("name, vision_int8, lm_int8", [("fp16", False, False), ("int8", True, True),
                                                        ("int8_vit", True, False)])
def test_census_matches_definition(tiny_source, name, vision_int8, lm_int8):
    cfg, source = tiny_source
    model = load_variant_model(cfg, get_variant(name), source, "cpu")
    census = take_census(model)
    vision, lm, head = census["vision"], census["language_model"], census["lm_head"]
    assert vision["linear"] > 0 and lm["linear"] > 0 and head == {"linear": 1, "quantized": 0, "methods": {}}
    assert vision["quantized"] == (vision["linear"] if vision_int8 else 0)
    assert lm["quantized"] == (lm["linear"] if lm_int8 else 0)
    check_census(census, get_variant(name))
    # what the fast engine asks to pick its vision-compile reason (it read a key the census no longer has)
    assert has_method(census, "vision", "bitsandbytes Linear8bitLt") is vision_int8


def test_mismatch_fails_loudly(tiny_source):
    cfg, source = tiny_source
    census = take_census(load_variant_model(cfg, get_variant("int8"), source, "cpu"))
    with pytest.raises(CensusMismatch, match=r"variant 'int8_vit' loaded wrongly \(language_model: 14 of 14"):
        check_census(census, get_variant("int8_vit"))
    census = take_census(load_variant_model(cfg, get_variant("fp16"), source, "cpu"))
    with pytest.raises(CensusMismatch, match="vision: 0 of 12 Linear layers quantized, expected all"):
        check_census(census, get_variant("int8"))


def test_skip_lists_use_full_prefixes():
    from vlmbench.models.families import FAMILIES
    qwen, gemma = FAMILIES["qwen2_5_vl"].components, FAMILIES["gemma3"].components
    assert get_variant("int8_vit").skip_modules(qwen) == ["model.language_model", "lm_head"]
    assert get_variant("int8").skip_modules(qwen) == ["lm_head"]
    assert get_variant("nf4_lm").skip_modules(gemma) == ["model.vision_tower", "model.multi_modal_projector", "lm_head"]
    with pytest.raises(KeyError, match="unknown variant 'int4'.*Known variants: fp16, int8, int8_vit, bf16, nf4"):
        get_variant("int4")


def test_a_bare_language_model_skip_would_quantize_everything(tiny_source):
    """The trap this project guards against: transformers 5 does not match 'language_model' mid-name."""
    from transformers import BitsAndBytesConfig, Qwen2_5_VLForConditionalGeneration
    cfg, source = tiny_source
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        source, quantization_config=BitsAndBytesConfig(load_in_8bit=True,
                                                       llm_int8_skip_modules=["language_model", "lm_head"]))
    census = take_census(model)
    assert census["language_model"]["quantized"] == census["language_model"]["linear"]
    with pytest.raises(CensusMismatch):
        check_census(census, get_variant("int8_vit"))
