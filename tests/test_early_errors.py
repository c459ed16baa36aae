"""A bad config or bad data is refused before torch and transformers are imported (issue 19, item 4).

Importing them takes 5-80 s on a loaded machine; a misspelt key must be refused in a second or two. The
check runs the real pytest command line in a fresh interpreter (cheaper than timing it) and looks at
`sys.modules` after pytest refused the run.
"""
import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT

PROBE = """
import json, sys, pytest
code = pytest.main(sys.argv[1:])
print(json.dumps({"exit": int(code), "heavy": sorted(m for m in ("torch", "transformers") if m in sys.modules)}))
"""


def _refused(config_path, tmp_path) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, "-c", PROBE, "benchmarks", "--vlm-config", str(config_path),
                           "--vlm-results", str(tmp_path / "results"), "-p", "no:cacheprovider"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def test_a_misspelt_key_is_refused_before_torch_is_imported(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"inference": {"max_new_tokns": 4}}))
    found, stderr = _refused(path, tmp_path)
    assert found == {"exit": pytest.ExitCode.USAGE_ERROR, "heavy": []}
    assert "unknown config key 'inference.max_new_tokns'. Did you mean 'inference.max_new_tokens'?" in stderr


def test_a_data_source_that_fails_its_checks_is_refused_before_torch_is_imported(tmp_path):
    coco = tmp_path / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "val2017").mkdir()
    (coco / "annotations" / "captions_val2017.json").write_text("not json")
    path = tmp_path / "bad-data.yaml"
    path.write_text(yaml.safe_dump({"dataset": {"coco_dir": str(coco), "limit": 2}}))
    found, stderr = _refused(path, tmp_path)
    assert found == {"exit": pytest.ExitCode.USAGE_ERROR, "heavy": []}, stderr
    assert "captions_val2017.json" in stderr and not (tmp_path / "results").exists()
