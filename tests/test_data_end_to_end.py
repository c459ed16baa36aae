"""Bad data as a user meets it in `pytest benchmarks`: refused before any model loads, or (a file name
that escapes its folder) one failed row with the reason while the run goes on. Each run is in-process
(tests/inprocess.py)."""
import csv
import json
import shutil

import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.inprocess import run_pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def run_suite(tmp_path, write_config):
    sandbox = tmp_path / "sandbox"
    shutil.copytree(ROOT / "benchmarks", sandbox / "benchmarks")
    results = sandbox / "results"

    def run(dataset):
        config = write_config({"results_dir": str(results), "dataset": {"synthetic_images": None, **dataset}})
        return run_pytest(sandbox, "benchmarks", "--vlm-config", str(config), "-p", "no:cacheprovider")
    return run, results


def _coco(root, annotate=lambda ann: ann, names=None):
    from vlmbench.data.sample import write_sample
    write_sample(root, 4, seed=1)
    path = root / "annotations" / "captions_val2017.json"
    doc = json.loads(path.read_text())
    doc["annotations"] = [annotate(a) for a in doc["annotations"]]
    for image, name in zip(doc["images"], names or [], strict=False):
        image["file_name"] = name
    path.write_text(json.dumps(doc))


def test_string_image_ids_stop_the_run_before_any_model_loads(run_suite, tmp_path):
    run, results = run_suite
    _coco(tmp_path / "coco", annotate=lambda a: {**a, "image_id": str(a["image_id"])})
    result = run({"coco_dir": str(tmp_path / "coco")})
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*captions_val2017.json' has 20 structural problem(s)*",
                                 "*annotations[[]0[]].image_id: is a str ('1') while the images' ids are int*"])
    assert not list(results.glob("variant_*.json")) and not list(results.glob("*.csv"))


def test_a_name_that_escapes_the_folder_is_a_failed_row(run_suite, tmp_path):
    run, results = run_suite
    Image.new("RGB", (32, 32), (0, 200, 0)).save(tmp_path / "escape.jpg")
    _coco(tmp_path / "coco", names=["000000000001.jpg", "../../escape.jpg"])
    refused = run({"coco_dir": str(tmp_path / "coco")})
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*1 of 4 images cannot be had (../../escape.jpg)*escapes the image folder*"])
    run({"coco_dir": str(tmp_path / "coco"), "allow_missing_images": True}).assert_outcomes(passed=2)
    with open(results / "fp16_batch_0.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["status"] for r in rows] == ["ok", "failed"] and "escapes the image folder" in rows[1]["error"]
