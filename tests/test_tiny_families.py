"""SmolVLM2, Gemma 3 and LLaVA-OneVision built in code (vlmbench/models/tiny): offline, on a CPU.

Each family's processor builds with no file and no network and puts the family's number of image
tokens in the prompt; its tiny model generates on a left-padded batch; every Linear layer belongs to
exactly one component, and the component prefixes work as a bitsandbytes skip list in transformers 5;
the real-size config has the named checkpoint's parameter count.
"""
import socket

import pytest
import torch
from PIL import Image

from vlmbench.models.tiny import gemma3, llava_onevision, smolvlm

FAMILIES = {"smolvlm": smolvlm, "gemma3": gemma3, "llava_onevision": llava_onevision}
# Image tokens per image, worked out by hand from each family's rule (see the module docstrings):
# the real processors at the seed's 1024x1024; the tiny ones on a 100x80 image.
REAL_TOKENS_AT_1024 = {"smolvlm": 17 * 64, "gemma3": 256, "llava_onevision": 729 + 81 * 81 + 81}
TINY_TOKENS_AT_100X80 = {"smolvlm": 5 * 4,  # 64x52 padded to 2x2 tiles of 32 px + 1 global, 4 tokens each
                         "gemma3": 4,
                         # a 3x4 grid of 32 px crops: 12x16 features cut to 10x13, 10 newlines, 16 for the whole
                         "llava_onevision": 16 + 10 * 13 + 10}
PROMPTS = {"smolvlm": "<|im_start|>User:<image>Caption:<end_of_utterance>\nAssistant:",
           "gemma3": "<bos><start_of_turn>user\n<start_of_image>Caption:<end_of_turn>\n<start_of_turn>model\n",
           "llava_onevision": "<|im_start|>user <image>\nCaption:<|im_end|><|im_start|>assistant\n"}


def chat(processor, prompt: str = "Caption:") -> str:
    """The benchmark's prompt, through the processor's chat template."""
    return processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
        add_generation_prompt=True, tokenize=False)


def image_token_counts(processor, inputs) -> list[int]:
    return (inputs["input_ids"] == processor.tokenizer.image_token_id).sum(dim=1).tolist()


def linear_names(model) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]


def component_of(name: str, components: dict) -> list[str]:
    """Every component whose prefixes match `name` (a prefix matches itself or a dotted child)."""
    return [part for part, prefixes in components.items()
            if any(name == p or name.startswith(p + ".") for p in prefixes)]


@pytest.fixture
def no_network(monkeypatch):
    """Any host lookup or connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("the processor tried to reach the network")
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tiny(request):
    """(family module, tiny processor, tiny model in eval mode), built once per family."""
    from transformers import AutoConfig, AutoModelForImageTextToText
    family = FAMILIES[request.param]
    processor = family.build_processor(tiny=True)
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(AutoConfig.for_model(**family.tiny_config_dict(processor)))
    return family, processor, model.eval()


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_processors_build_offline_with_the_family_prompt_and_image_tokens(name, no_network):
    family = FAMILIES[name]
    for tiny, image, expected in ((True, Image.new("RGB", (100, 80), "red"), TINY_TOKENS_AT_100X80[name]),
                                  (False, Image.new("RGB", (1024, 1024), "red"), REAL_TOKENS_AT_1024[name])):
        processor = family.build_processor(tiny=tiny)
        assert type(processor).__name__ == {"smolvlm": "SmolVLMProcessor", "gemma3": "Gemma3Processor",
                                            "llava_onevision": "LlavaOnevisionProcessor"}[name]
        assert processor.tokenizer.padding_side == "left"
        assert chat(processor) == PROMPTS[name]
        inputs = processor(text=[chat(processor)], images=[[image]], return_tensors="pt")
        assert image_token_counts(processor, inputs) == [expected]


def test_tiny_model_generates_on_a_left_padded_batch_of_two(tiny):
    family, processor, model = tiny
    images = [[Image.new("RGB", (100, 80), "red")], [Image.new("RGB", (64, 64), "blue")]]
    texts = [chat(processor), chat(processor, "Caption this picture in one short sentence:")]
    inputs = processor(text=texts, images=images, padding=True, return_tensors="pt")
    mask = inputs["attention_mask"]
    assert not mask[:, 0].all() and mask[:, -1].all()  # the shorter prompt is padded on the left
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    new = out[:, inputs["input_ids"].shape[1]:]
    assert new.shape == (2, 3) and int(new.max()) < model.config.text_config.vocab_size


def test_every_linear_layer_is_in_exactly_one_component(tiny):
    family, _, model = tiny
    names = linear_names(model)
    assert {n: component_of(n, family.COMPONENTS) for n in names if len(component_of(n, family.COMPONENTS)) != 1} == {}
    modules = dict(model.named_modules())  # every prefix names a module: none is a typo
    assert [p for prefixes in family.COMPONENTS.values() for p in prefixes if p not in modules] == []


def test_skip_list_of_the_non_vision_prefixes_quantizes_exactly_the_vision_linears(tiny, tmp_path):
    from bitsandbytes.nn import Linear8bitLt
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig
    family, _, model = tiny
    model.save_pretrained(tmp_path)
    skip = [*family.COMPONENTS["language_model"], *family.COMPONENTS["lm_head"]]
    quantized = AutoModelForImageTextToText.from_pretrained(
        tmp_path, dtype=torch.float16, device_map={"": "cpu"},
        quantization_config=BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip))
    int8 = {n for n, m in quantized.named_modules() if isinstance(m, Linear8bitLt)}
    vision = {n for n in linear_names(model) if component_of(n, family.COMPONENTS) == ["vision"]}
    assert vision and int8 == vision


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_real_size_config_has_the_checkpoint_parameter_count(name):
    from transformers import AutoConfig, AutoModelForImageTextToText
    family = FAMILIES[name]
    processor = family.build_processor()
    config = AutoConfig.for_model(**family.real_config_dict(processor))
    assert config.model_type == family.MODEL_TYPE
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    count = sum(p.numel() for p in model.parameters())
    assert abs(count / family.CHECKPOINT_PARAMETERS - 1) < 0.10, (family.CHECKPOINT, count)
