"""Generation stops where the model ends its caption: every end token the checkpoint declares."""
import types

import pytest
import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList

from tests.conftest import TINY, merge
from vlmbench.config import ExperimentConfig, build
from vlmbench.results.records import read_chunk_csv
from vlmbench.run.runner import end_tokens, until_end
from vlmbench.run.session import BenchSession


class Script(LogitsProcessor):
    """Forces the generated tokens to follow `script` (its last token repeats): a model we control."""

    def __init__(self, prompt_length: int, script: list[int]):
        self.prompt_length, self.script = prompt_length, script

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_length
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.script[min(step, len(self.script) - 1)]] = 0.0
        return forced


def test_caption_ends_at_endoftext_as_third_token(tmp_path, monkeypatch):
    cfg = build(ExperimentConfig, merge(TINY, {"inference": {"max_new_tokens": 8}, "results_dir": str(tmp_path)}))
    session = BenchSession(cfg, tmp_path)
    session.start()
    loaded = session.load_variant("fp16")
    tok = session.processor.tokenizer
    a, b, z = tok.convert_tokens_to_ids(["a", "b", "z"])
    endoftext = tok.convert_tokens_to_ids("<|endoftext|>")
    lengths = []
    original = loaded.model.generate

    def scripted_generate(**kwargs):
        prompt = kwargs["input_ids"].shape[1]
        out = original(**kwargs, logits_processor=LogitsProcessorList([Script(prompt, [a, b, endoftext, z])]))
        lengths.append(out.shape[1] - prompt)
        return out
    monkeypatch.setattr(loaded.model, "generate", scripted_generate)
    session.run_chunk(loaded, 0)
    rows = read_chunk_csv(tmp_path / "fp16_batch_0.csv")
    assert [(r["caption"], r["generated_tokens"]) for r in rows] == [("ab", "2"), ("ab", "2")]
    assert lengths and set(lengths) == {3}  # decoding stopped at the end token, not at max_new_tokens
    from vlmbench.results.variant_records import read_variant_records
    [record] = read_variant_records(tmp_path, "fp16").values()  # one writer: this process
    assert set(record["end_token_ids"]) == {tok.convert_tokens_to_ids("<|im_end|>"), endoftext}
    assert set(record["end_tokens"]) == {"<|im_end|>", "<|endoftext|>"}
    assert record["warmup_s"] > 0  # the warm-up is timed and recorded per variant (issue 20)
    assert record["compile_cache"]["state"] == "nothing compiled"  # stock engine on a CPU compiles nothing


def test_real_qwen_checkpoint_end_tokens(qwen_files):
    from transformers import AutoTokenizer
    model = types.SimpleNamespace(generation_config=GenerationConfig.from_pretrained(qwen_files))
    assert end_tokens(model, AutoTokenizer.from_pretrained(qwen_files)) == {151645: "<|im_end|>",
                                                                            151643: "<|endoftext|>"}


def test_end_tokens_merge_generation_config_and_tokenizer():
    tokenizer = types.SimpleNamespace(eos_token_id=7, get_added_vocab=lambda: {"<|endoftext|>": 5, "<x>": 6},
                                      convert_ids_to_tokens=lambda i: f"t{i}")
    model = types.SimpleNamespace(generation_config=GenerationConfig(eos_token_id=[9, 7]))
    assert list(end_tokens(model, tokenizer)) == [9, 7, 5]


@pytest.mark.parametrize("eos, expected", [([2, 3], [10, 11]), (2, [10, 11, 3, 12])])
def test_caption_tokens_stop_at_the_first_end_or_pad(eos, expected):
    config = GenerationConfig(eos_token_id=eos, pad_token_id=0)
    assert until_end(torch.tensor([10, 11, 3, 12, 2, 0]), config) == expected
