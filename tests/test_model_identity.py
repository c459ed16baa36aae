"""The fingerprint knows which model it measured; chunks say which libraries and GPU made them (issue 8.6)."""
import json
import os
import shutil

import pytest

from tests.results_factory import tiny_config, write_results
from vlmbench.config import ConfigError, load_config
from vlmbench.models.loading import EMBEDDED_CAPTIONER_DIR, hub_commit, load_variant_model, local_model_identity, \
    model_identity, with_model_identity
from vlmbench.results.records import CSV_COLUMNS, chunk_csv_path, library_versions, write_chunk_csv
from vlmbench.results.report import report
from vlmbench.run.session import BenchSession
from vlmbench.quantize.variants import get_variant

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _model_folder(path, weights=b"\x00" * 64):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    (path / "model.safetensors").write_bytes(weights)
    return path


def _local_cfg(tmp_path, folder):
    return load_config(overrides={"model_id": str(folder), "results_dir": str(tmp_path / "results"),
                                  "dataset": {"synthetic_images": 4, "limit": 4}, "inference": {"batch_size": 2, "micro_batch_size": 2},
                                  "variants": ["fp16"]})


def test_local_identity_changes_when_weights_are_replaced(tmp_path):
    folder = _model_folder(tmp_path / "model")
    first = local_model_identity(folder)
    assert first.startswith("local:") and local_model_identity(folder) == first
    weights = folder / "model.safetensors"
    weights.write_bytes(b"\x01" * 64)  # same size, new bytes
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    assert local_model_identity(folder) != first
    second = local_model_identity(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl", "hidden_size": 8}))
    assert local_model_identity(folder) != second
    (folder / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="without weight files"):
        local_model_identity(folder)


def test_replaced_local_weights_make_old_chunks_foreign(tmp_path):
    folder = _model_folder(tmp_path / "model")
    first = BenchSession(_local_cfg(tmp_path, folder), tmp_path / "results", stamp="20260101T000000")
    (tmp_path / "results").mkdir()
    first.identify_model()
    first.start()
    assert first.cfg.model.identity == local_model_identity(folder)
    snapshot = next((tmp_path / "results").glob("experiment_config_*.yaml")).read_text()
    assert f"identity: {first.cfg.model.identity}" in snapshot
    rows = [{"image_id": r.image_id, "file_name": r.file_name, "variant": "fp16", "chunk_id": 0, "status": "ok",
             "error": "", "caption": "x", "generated_tokens": 1, "micro_batch_index": 0, "micro_batch_size": 2,
             "chunk_wall_s": 1.0, "chunk_images_ok": 2, "measure_notes": "{}",
             "config_fingerprint": first.cfg.fingerprint}
            for r in first.chunks[0]]
    write_chunk_csv(chunk_csv_path(first.results_dir, "fp16", 0), rows)
    assert first.chunk_is_done("fp16", 0)

    weights = folder / "model.safetensors"
    weights.write_bytes(b"\x07" * 64)
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 1_000_000))
    second = BenchSession(_local_cfg(tmp_path, folder), tmp_path / "results", stamp="20260101T000001")
    second.identify_model()
    second.start()
    assert second.cfg.fingerprint != first.cfg.fingerprint
    with pytest.raises(ConfigError, match=f"model.identity: '{first.cfg.model.identity}' -> "
                                          f"'{second.cfg.model.identity}'"):
        second.chunk_is_done("fp16", 0)


@pytest.fixture
def offline_hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache holding config.json of org/model at COMMIT (main points there), read offline."""
    from huggingface_hub import constants
    repo = tmp_path / "hf-cache" / "models--org--model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "snapshots" / COMMIT / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return repo


@pytest.mark.parametrize("revision", [None, COMMIT])
def test_hub_model_identity_is_the_resolved_commit(offline_hub_cache, tmp_path, revision):
    cfg = load_config(overrides={"model_id": "org/model", "model": {"revision": revision},
                                 "results_dir": str(tmp_path / "results"),
                                 "dataset": {"synthetic_images": 2, "limit": 2}, "variants": ["fp16"]})
    assert model_identity(cfg) == f"hub:{COMMIT}"
    session = BenchSession(cfg, tmp_path / "results")
    session.results_dir.mkdir()
    session.identify_model()
    session.start()
    assert hub_commit(session.cfg) == COMMIT and session.resolved()["model_revision"] == COMMIT
    snapshot = next((tmp_path / "results").glob("experiment_config_*.yaml")).read_text()
    assert f"model_revision: {COMMIT}" in snapshot and f"identity: hub:{COMMIT}" in snapshot


def test_a_hub_model_that_cannot_be_resolved_stops_with_the_fix(offline_hub_cache):
    cfg = load_config(overrides={"model_id": "org/other"})
    with pytest.raises(ConfigError, match="'org/other' .revision main. is not in the Hugging Face cache"):
        model_identity(cfg)


def test_the_resolved_commit_reaches_from_pretrained(monkeypatch):
    from transformers import AutoModelForImageTextToText, PreTrainedConfig
    seen = []

    class Loaded:
        def eval(self):
            return self

    def fake_from_pretrained(source, **kwargs):
        seen.append((source, kwargs["revision"]))
        return Loaded()

    def fake_config_dict(source, **kwargs):
        fake_from_pretrained(source, **kwargs)
        return {"model_type": "qwen2_5_vl"}, {}
    monkeypatch.setattr(PreTrainedConfig, "get_config_dict", fake_config_dict)
    monkeypatch.setattr(AutoModelForImageTextToText, "from_pretrained", fake_from_pretrained)
    load_variant_model(load_config(), get_variant("fp16"), "org/model", "cpu", COMMIT)
    assert seen == [("org/model", COMMIT)] * 2  # the config (the family) and the weights, at one commit


# configs/smoke.yaml as it was with random weights (it now uses the embedded captioner)
RANDOM_SMOKE_YAML = """experiment_name: smoke
model_id: Qwen/Qwen2.5-VL-3B-Instruct
quantizer: bitsandbytes_linear8bitlt
precision: {language_model: fp16}
dataset: {synthetic_images: 24, limit: 12}
seed: 42
inference: {max_new_tokens: 8, img_size: 112, batch_size: 4, micro_batch_size: 4}
variants: [fp16, int8, int8_vit]
model: {weights: random, tiny: true, processor: builtin}
measure: {latency_images: 2, model_size: true}
results_dir: results/smoke
"""


def test_random_weights_keep_their_identity_and_fingerprint(tmp_path):
    (tmp_path / "smoke.yaml").write_text(RANDOM_SMOKE_YAML)
    cfg = load_config(tmp_path / "smoke.yaml")
    assert model_identity(cfg) is None
    assert "model.identity" not in cfg.result_fields() and "model.revision" not in cfg.result_fields()
    assert with_model_identity(cfg).fingerprint == cfg.fingerprint  # random-weight results stay valid


def test_chunks_record_library_versions_and_a_mixed_summary_says_so(tmp_path):
    assert {"torch_version", "transformers_version", "bitsandbytes_version"} <= set(CSV_COLUMNS)
    import torch
    assert library_versions()["torch_version"] == torch.__version__.split("+")[0] or \
        library_versions()["torch_version"] == torch.__version__
    results = tmp_path / "results"
    cfg = tiny_config(results, 12, chunks=2)
    write_results(cfg, results, chunk_cells={("int8", 1): {"torch_version": "2.0.0", "device_name": "NVIDIA H100"}})
    summary, _ = report(results, cfg, 0.0, None, "nltk-treebank")
    mixed = summary["mixed_environment"]
    assert set(mixed["values"]) == {"torch_version", "device_name"}
    assert mixed["values"]["torch_version"]["2.0.0"] == ["int8_batch_1"]
    assert "device_name cpu (3 chunks) / NVIDIA H100 (1 chunks)" in mixed["warning"]
    assert "WARNING mixed environment:" in (results / "summary_latest.md").read_text()
    uniform = tmp_path / "uniform"
    write_results(tiny_config(uniform, 12, chunks=2), uniform)
    assert report(uniform, tiny_config(uniform, 12, chunks=2), 0.0, None, "nltk-treebank")[0]["mixed_environment"] is None


def test_embedded_identity_is_the_weights_digest_and_changes_with_them(tmp_path, monkeypatch):
    """A retrained embedded captioner gets a new identity, so its chunks never mix with the old model's."""
    cfg = load_config("configs/smoke.yaml")
    shipped = model_identity(cfg)  # no Hub lookup for the packaged folder
    assert shipped.startswith("embedded:") and shipped == model_identity(cfg)
    folder = tmp_path / "tiny_captioner"
    shutil.copytree(EMBEDDED_CAPTIONER_DIR, folder)  # new mtimes, same bytes: same identity
    monkeypatch.setattr("vlmbench.models.loading.EMBEDDED_CAPTIONER_DIR", folder)
    assert model_identity(cfg) == shipped
    shipped_fingerprint = with_model_identity(cfg).fingerprint
    weights = bytearray((folder / "model.safetensors").read_bytes())
    weights[-1] ^= 1  # one retrained bit
    (folder / "model.safetensors").write_bytes(bytes(weights))
    retrained = with_model_identity(cfg)
    assert retrained.model.identity.startswith("embedded:") and retrained.model.identity != shipped
    assert retrained.fingerprint != shipped_fingerprint
    (folder / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="holds no model.safetensors"):
        model_identity(cfg)


# ---------------------------------------------------------------- pytest-xdist: the controller resolves, workers adopt
WORKER_CONFTEST = """
def pytest_configure(config):
    config.workerinput = {"workerid": "gw0", "vlmbench_model_identity": %r}
"""
CASES_WITHOUT_A_MODEL = """
import pytest

@pytest.fixture(scope="session")
def vlm_variant(request):  # the case ids and skip rules of the suite, no model loaded
    return request.param

def test_caption(vlm_variant, vlm_chunk):
    pass
"""


def _hub_config(path, results):
    """A Hub model (org/model) on 4 synthetic images in 2 chunks, written as YAML for --vlm-config."""
    import yaml
    path.write_text(yaml.safe_dump({"model_id": "org/model", "results_dir": str(results), "variants": ["fp16"],
                                    "dataset": {"synthetic_images": 4, "limit": 4}, "model": {"processor": "builtin"},
                                    "inference": {"batch_size": 2, "micro_batch_size": 2}}))
    return path


def _complete_chunk(session, variant, chunk_id):
    """Writes a complete CSV of the chunk under the session's current fingerprint."""
    rows = [{"image_id": r.image_id, "file_name": r.file_name, "variant": variant, "chunk_id": chunk_id,
             "status": "ok", "error": "", "caption": "x", "generated_tokens": 1, "micro_batch_index": 0,
             "micro_batch_size": 2, "chunk_wall_s": 1.0, "chunk_images_ok": 2, "measure_notes": "{}",
             "config_fingerprint": session.cfg.fingerprint} for r in session.chunks[chunk_id]]
    write_chunk_csv(chunk_csv_path(session.results_dir, variant, chunk_id), rows)


def _no_resolving(monkeypatch):
    def resolve(cfg):
        raise AssertionError("model identity resolved again")
    monkeypatch.setattr("vlmbench.models.loading.model_identity", resolve)


def test_an_xdist_worker_uses_the_controllers_identity_and_never_resolves(pytester, tmp_path, monkeypatch):
    """A worker judges finished chunks under the identity the controller sent; the resolver is never called
    (the old worker resolved the identity itself: one Hub lookup per worker, another commit if a branch moved)."""
    results = tmp_path / "results"
    config = _hub_config(tmp_path / "hub.yaml", results)
    owner = BenchSession(load_config(config), results)
    owner.use_model_identity(f"hub:{COMMIT}")
    results.mkdir()
    _complete_chunk(owner, "fp16", 0)
    _no_resolving(monkeypatch)
    pytester.makeconftest(WORKER_CONFTEST % ({"identity": f"hub:{COMMIT}"},))
    pytester.makepyfile(test_cases=CASES_WITHOUT_A_MODEL)
    run = pytester.runpytest_inprocess("--vlm-config", str(config), "-p", "no:xdist", "-p", "no:randomly",
                                       "-p", "no:cacheprovider", "-rs")
    run.assert_outcomes(passed=1, skipped=1)
    run.stdout.fnmatch_lines(["*fp16_batch_0.csv is complete for this experiment*"])
    assert not list(results.glob("summary_*")) and not list(results.glob("experiment_config_*"))  # owner's work


def test_a_worker_given_the_controllers_failure_stops_with_it(pytester, tmp_path, monkeypatch):
    config = _hub_config(tmp_path / "hub.yaml", tmp_path / "results")
    _no_resolving(monkeypatch)
    pytester.makeconftest(WORKER_CONFTEST % ({"error": "model 'org/model' is not in the Hugging Face cache"},))
    pytester.makepyfile(test_cases=CASES_WITHOUT_A_MODEL)
    run = pytester.runpytest_inprocess("--vlm-config", str(config), "-p", "no:xdist", "-p", "no:randomly",
                                       "-p", "no:cacheprovider")
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    run.stderr.fnmatch_lines(["*vlmbench: model 'org/model' is not in the Hugging Face cache*"])


def _fake_node(config, worker):
    from types import SimpleNamespace
    return SimpleNamespace(config=config, workerinput={"workerid": worker})


def test_the_controller_resolves_once_for_every_worker(pytester, tmp_path, monkeypatch):
    """Each starting worker (a restarted one too) gets the one identity the controller resolved."""
    from vlmbench import plugin
    calls = []
    monkeypatch.setattr("vlmbench.models.loading.model_identity", lambda cfg: calls.append(1) or f"hub:{len(calls)}")
    config = pytester.parseconfigure("--vlm-config", str(_hub_config(tmp_path / "hub.yaml", tmp_path / "results")))
    nodes = [_fake_node(config, worker) for worker in ("gw0", "gw1", "gw0")]
    for node in nodes:
        plugin.pytest_configure_node(node)
    assert [n.workerinput[plugin.IDENTITY_INPUT] for n in nodes] == [{"identity": "hub:1"}] * 3 and len(calls) == 1
    session = plugin._session(config)
    plugin._identify_as_owner(config, session)  # the controller's own checks reuse it
    assert session.cfg.model.identity == "hub:1" and len(calls) == 1


def test_a_controller_without_vlmbench_options_reads_no_config_and_workers_resolve(pytester, monkeypatch):
    """`pytest tests -n 2` with vlmbench installed: the controller neither reads a config nor asks the Hub."""
    from vlmbench import plugin
    monkeypatch.setattr("vlmbench.models.loading.model_identity", lambda cfg: pytest.fail("the controller resolved"))
    config = pytester.parseconfigure()
    node = _fake_node(config, "gw0")
    plugin.pytest_configure_node(node)
    assert node.workerinput[plugin.IDENTITY_INPUT] == {} and plugin.SESSION_KEY not in config.stash


def test_a_controller_that_cannot_resolve_passes_the_failure_on(pytester, tmp_path, monkeypatch):
    """No exception at worker start (a run of other tests is not stopped); the owner's checks raise it, no retry."""
    from vlmbench import plugin
    calls = []

    def unreachable(cfg):
        calls.append(1)
        raise ConfigError("model 'org/model' is not in the Hugging Face cache")
    monkeypatch.setattr("vlmbench.models.loading.model_identity", unreachable)
    config = pytester.parseconfigure("--vlm-config", str(_hub_config(tmp_path / "hub.yaml", tmp_path / "results")))
    node = _fake_node(config, "gw0")
    plugin.pytest_configure_node(node)
    assert node.workerinput[plugin.IDENTITY_INPUT] == {"error": "model 'org/model' is not in the Hugging Face cache"}
    with pytest.raises(ConfigError, match="not in the Hugging Face cache"):
        plugin._identify_as_owner(config, plugin._session(config))
    assert len(calls) == 1
