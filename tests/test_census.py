"""The census on a tiny Qwen2.5-VL: each variant quantizes exactly the Linear layers it promises."""
import pytest

from vlmbench.models.families import FAMILIES
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
    qwen, gemma = FAMILIES["qwen2_5_vl"].components, FAMILIES["gemma3"].components
    assert get_variant("int8_vit").skip_modules(qwen) == ["model.language_model", "lm_head"]
    assert get_variant("int8").skip_modules(qwen) == ["lm_head"]
    assert get_variant("nf4_lm").skip_modules(gemma) == ["model.vision_tower", "model.multi_modal_projector", "lm_head"]
    with pytest.raises(KeyError, match="unknown variant 'int4'.*Known variants: fp16, int8, int8_vit, int8_lm, bf16, nf4"):
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


QWEN = FAMILIES["qwen2_5_vl"].components  # a stand-in has no config to read its family from


def _three_layer_vision():
    """A stand-in with the component names of Qwen2.5-VL: a vision tower of widths 32 -> 40 -> 32 (40 is not a
    multiple of 16, as the 3B tower's 3420-wide MLP is not), one language-model layer and lm_head."""
    import torch
    from torch import nn
    model = nn.Module()
    model.model = nn.Module()
    model.model.visual = nn.Sequential(nn.Linear(32, 40), nn.Linear(40, 32), nn.Linear(32, 32))
    model.model.language_model = nn.Sequential(nn.Linear(32, 24))
    model.lm_head = nn.Linear(32, 24)
    return model.to(torch.bfloat16)


def test_layers_torchao_cannot_take_are_counted_as_ineligible_not_as_a_broken_variant():
    """torchao 0.18 leaves fp8-incompatible shapes 16-bit without a word; the census names them and expects the rest."""
    census = take_census(_three_layer_vision(), get_variant("fp8_vit"), QWEN)
    reason = "fp8: in/out features not multiples of 16 (torch._scaled_mm)"
    assert census["vision"] == {"linear": 3, "quantized": 0, "methods": {}, "ineligible": 2,
                                "ineligible_reasons": {reason: 2}}
    assert "ineligible" not in census["language_model"]  # not a component fp8_vit quantizes: not asked
    with pytest.raises(CensusMismatch, match=r"vision: 0 of 3 Linear layers quantized, expected the 1 its kernels "
                                             r"take \(2 ineligible: fp8: in/out features"):
        check_census(census, get_variant("fp8_vit"))
    census["vision"].update(quantized=1, methods={"torchao Float8Tensor + dynamic activations": 1})
    check_census(census, get_variant("fp8_vit"))  # the one eligible layer quantized: what fp8 can do
    census["vision"].update(quantized=3, methods={"torchao Float8Tensor + dynamic activations": 3})
    with pytest.raises(CensusMismatch, match="vision: 3 of 3"):  # quantized where the rule says it cannot be
        check_census(census, get_variant("fp8_vit"))
    from vlmbench.quantize.census import census_cell
    assert census_cell(take_census(_three_layer_vision(), get_variant("fp8"), QWEN)).startswith(
        "vision:0/3 (2 ineligible)")


@pytest.mark.parametrize("in_features, out_features", [(32, 40), (40, 32), (48, 32), (3420, 1280), (1280, 3420)])
def test_the_ineligibility_rules_agree_with_torchao(in_features, out_features):
    """The rules restate torchao's private checks; this catches a torchao release that changes them."""
    import torch
    from torchao.quantization.quant_api import _int4_weight_only_quantize_tensor
    from torchao.quantization.utils import _fp8_mm_compat
    from vlmbench.quantize.torchao import ineligible_reason, torchao_config
    layer = torch.nn.Linear(in_features, out_features, dtype=torch.bfloat16)
    assert (ineligible_reason(get_variant("fp8"), layer) is None) == _fp8_mm_compat(layer.weight)
    w4a16 = get_variant("w4a16")
    config = torchao_config("w4a16", w4a16.option_values())
    if ineligible_reason(w4a16, layer) is not None:  # torchao hands the weight back untouched
        assert _int4_weight_only_quantize_tensor(layer.weight, config) is layer.weight
    else:
        assert in_features % config.group_size == 0


def _tiny_with_vision_mlp_width(tiny_source, tmp_path, width: int):
    """The tiny checkpoint saved again with a vision MLP `width` wide (random weights, same everything else)."""
    import json
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText
    config = AutoConfig.from_pretrained(tiny_source)
    config.vision_config.intermediate_size = width
    torch.manual_seed(0)
    AutoModelForImageTextToText.from_config(config).save_pretrained(tmp_path / "narrow")
    assert json.loads((tmp_path / "narrow" / "config.json").read_text())["vision_config"]["intermediate_size"] == width
    return tmp_path / "narrow"


def test_w8a8_keeps_layers_int_mm_cannot_take_16bit_and_the_census_says_why(tiny_source, tmp_path):
    """On an H200, torchao quantized Qwen2.5-VL-3B's 3420-wide vision MLP for w8a8 and torch._int_mm refused it at
    the first forward; vlmbench now keeps such layers 16-bit by name, the same on a CPU (whose kernel would take them)."""
    cfg, source = tiny_source
    narrow = _tiny_with_vision_mlp_width(source, tmp_path, 36)  # 36: not a multiple of 8, as 3420 is not
    model = load_variant_model(cfg, get_variant("w8a8"), str(narrow), "cpu")
    census = take_census(model, get_variant("w8a8"), QWEN)
    vision = census["vision"]
    assert vision["ineligible"] == 6 and vision["quantized"] == vision["linear"] - 6  # gate, up, down of 2 blocks
    assert vision["ineligible_reasons"] == {"w8a8: in/out features not multiples of 8 (torch._int_mm on CUDA)": 6}
    assert census["language_model"]["quantized"] == census["language_model"]["linear"]
    check_census(census, get_variant("w8a8"))
    assert all(not type(m.weight).__module__.startswith("torchao")
               for n, m in model.named_modules() if n.endswith(("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"))
               and "visual" in n)


def test_the_layers_kept_16bit_are_named_in_full_and_only_for_w8a8():
    from vlmbench.quantize.torchao import layers_kept_16bit
    model = _three_layer_vision()
    model.model.visual[1] = __import__("torch").nn.Linear(36, 32)  # in_features 36: int_mm cannot take it
    assert layers_kept_16bit(get_variant("w8a8"), model, QWEN) == ["model.visual.1"]
    assert layers_kept_16bit(get_variant("w8a8_lm"), model, QWEN) == []  # the vision tower is not w8a8_lm's
    assert layers_kept_16bit(get_variant("fp8"), model, QWEN) == []  # torchao skips fp8's itself
