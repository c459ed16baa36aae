"""Per-variant fingerprints end to end: a finished experiment is extended by a new user-defined variant
without recomputing the others, and an edited definition makes only that variant's chunks foreign.

Two in-process runs compute (one chunk per variant); the refused run loads no model."""
import json
import shutil

import pytest

from tests.conftest import ROOT
from tests.inprocess import run_pytest
from vlmbench.config import load_config
from vlmbench.results.records import read_chunk_csv

pytestmark = pytest.mark.slow

LM4 = {"method": "nf4", "components": ["language_model"]}
VIT4 = {"method": "nf4", "components": ["vision"]}


@pytest.fixture
def bench(tmp_path, write_config):
    """Runs `pytest benchmarks` on one results folder with the given variants and definitions (one chunk
    of two images each); returns (run, results_dir)."""
    sandbox = tmp_path / "sandbox"
    shutil.copytree(ROOT / "benchmarks", sandbox / "benchmarks")
    results = sandbox / "results"

    def run(definitions: dict):
        config = write_config({"results_dir": str(results), "variants": ["fp16", *definitions],
                               "variant_definitions": definitions, "dataset": {"limit": 2}})
        return run_pytest(sandbox, "benchmarks", "--vlm-config", str(config), "-p", "no:cacheprovider", "-rs"), config
    return run, results


def _session(config, results):
    """The run's session for `config` (engine resolved as the run resolves it), to read chunk states."""
    from vlmbench.run.session import BenchSession
    return BenchSession(load_config(config), results)


def _files(results):
    return {p.name: p.read_bytes() for p in sorted(results.iterdir()) if p.is_file() and not p.name.startswith("summary_")
            and not p.name.startswith("report")}


def test_a_new_definition_extends_the_experiment_and_an_edited_one_is_refused_by_name(bench):
    run, results = bench
    first, _ = run({"lm4": LM4})
    first.assert_outcomes(passed=2)
    finished = {name: (results / name).stat().st_mtime_ns for name in ("fp16_batch_0.csv", "lm4_batch_0.csv")}

    extended, config = run({"lm4": LM4, "vit4": VIT4})
    extended.assert_outcomes(passed=1, skipped=2)  # only vit4 is computed
    extended.stdout.fnmatch_lines(["*fp16_batch_0.csv is complete for this experiment*"])
    extended.stdout.fnmatch_lines(["*lm4_batch_0.csv is complete for this experiment*"])
    assert {name: (results / name).stat().st_mtime_ns for name in finished} == finished
    cfg = _session(config, results).cfg
    for variant in ("fp16", "lm4", "vit4"):
        rows = read_chunk_csv(results / f"{variant}_batch_0.csv")
        assert {r["config_fingerprint"] for r in rows} == {cfg.variant_fingerprint(variant)}, variant
    assert cfg.variant_fingerprint("fp16") == cfg.fingerprint != cfg.variant_fingerprint("lm4")
    summary = json.loads(sorted(results.glob("summary_*.json"))[-1].read_text())
    assert set(summary["variants"]) == {"fp16", "lm4", "vit4"} and summary["variants_not_run"] == []
    census = {v: summary["variants"][v]["census"] for v in ("lm4", "vit4")}  # the records of lm4's first run count
    assert census["lm4"]["language_model"]["quantized"] > 0 == census["lm4"]["vision"]["quantized"], census
    assert census["vit4"]["vision"]["quantized"] > 0 == census["vit4"]["language_model"]["quantized"], census

    before = _files(results)
    edited, config = run({"lm4": {**LM4, "options": {"double_quant": True}}, "vit4": VIT4})
    assert edited.ret == pytest.ExitCode.USAGE_ERROR
    edited.stderr.fnmatch_lines(["*lm4_batch_0.csv was made with another definition of variant 'lm4'*changed "
                                 "definition: variant_definitions.lm4.options.double_quant: False -> True*other "
                                 "variants' finished chunks are unaffected*its own variant name*"])
    assert _files(results) == before  # refused before any write: no snapshot, no CSV touched
    session = _session(config, results)
    assert {v: session.fresh_chunk_status(v, 0) for v in ("fp16", "lm4", "vit4")} == \
        {"fp16": "complete", "lm4": "foreign", "vit4": "complete"}
