"""The cluster examples parse, and their commands and variables are the ones vlmbench reads."""
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT
from vlmbench.run.sharding import shard_from_env

EXAMPLES = ROOT / "examples"


def _vlm_options() -> set[str]:
    return set(re.findall(r'addoption\("(--vlm-[a-z-]+)"', (ROOT / "vlmbench" / "plugin.py").read_text()))


def _report_script() -> str:
    return re.search(r'^(\S+) = "vlmbench\.cli:main"', (ROOT / "pyproject.toml").read_text(), re.M)[1]


def test_slurm_script_parses_and_runs_shards_then_the_report():
    script = (EXAMPLES / "slurm_array.sh").read_text()
    if shutil.which("bash"):
        subprocess.run(["bash", "-n", str(EXAMPLES / "slurm_array.sh")], check=True)
    shard_line = next(line for line in script.splitlines() if line.startswith("pytest benchmarks"))
    words = shlex.split(shard_line)
    assert words[words.index("--vlm-shard") + 1] == "auto"
    assert {w for w in words if w.startswith("--vlm-")} <= _vlm_options()
    assert f"--wrap \"{_report_script()} " in script and "--dependency=\"afterany:" in script
    first, last = map(int, re.search(r"#SBATCH --array=(\d+)-(\d+)", script).groups())
    env = {"SLURM_ARRAY_TASK_ID": str(last), "SLURM_ARRAY_TASK_MIN": str(first),
           "SLURM_ARRAY_TASK_COUNT": str(last - first + 1)}  # what Slurm sets in the last task
    assert (shard_from_env(env).index, shard_from_env(env).count) == (last - first, last - first + 1)


def _container(path):
    job = yaml.safe_load(path.read_text())
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    return job, job["spec"]["template"]["spec"]["containers"][0]


def test_kubernetes_indexed_job_passes_its_completions_as_the_shard_count():
    job, container = _container(EXAMPLES / "k8s" / "shards.yaml")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["VLMBENCH_SHARD_COUNT"]) == spec["completions"]
    command = container["command"]
    assert command[:2] == ["pytest", "benchmarks"] and command[command.index("--vlm-shard") + 1] == "auto"
    assert {w for w in command if w.startswith("--vlm-")} <= _vlm_options()
    shard = shard_from_env({"JOB_COMPLETION_INDEX": str(spec["completions"] - 1), **env})
    assert (shard.index, shard.count) == (spec["completions"] - 1, spec["completions"])

    _, report = _container(EXAMPLES / "k8s" / "report.yaml")
    results = command[command.index("--vlm-results") + 1]
    assert report["command"] == [_report_script(), results]


@pytest.mark.parametrize("name", ["k8s/shards.yaml", "k8s/report.yaml"])
def test_both_jobs_mount_the_same_results_volume(name):
    job, container = _container(EXAMPLES / name)
    claim = job["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == "vlmbench-results" and container["volumeMounts"][0]["mountPath"] == "/results"
