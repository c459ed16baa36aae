"""Splitting a sweep between GPUs and shards, and giving each xdist worker its GPU (pure functions)."""
import pytest

from vlmbench.config import ConfigError
from vlmbench.run.devices import check_worker_count, device_for_worker, visible_devices, worker_index
from vlmbench.run.scheduling import DONE_UNIT, plan_units
from vlmbench.run.sharding import Shard, case_from_nodeid, contiguous_slices, parse_shard, shard_from_env

VARIANTS = ("fp16", "int8", "int8_vit")


def sweep(chunks: int = 5) -> list[tuple[str, int]]:
    return [(v, c) for v in VARIANTS for c in range(chunks)]


@pytest.mark.parametrize("gpus", [2, 3, 8])
def test_slices_balance_the_sweep_and_load_each_variant_once_per_worker(gpus):
    slices = contiguous_slices(sweep(), gpus)
    assert sorted(case for part in slices for case in part) == sorted(sweep())
    sizes = [len(part) for part in slices]
    assert max(sizes) - min(sizes) <= 1 and max(sizes) == -(-15 // gpus)  # wall time close to total / N
    for part in slices:  # a worker's variants each come in one run: one load each
        runs = [v for i, (v, _) in enumerate(part) if i == 0 or part[i - 1][0] != v]
        assert len(runs) == len(set(runs))
    assert sum(len({v for v, _ in part}) for part in slices) <= len(VARIANTS) + gpus - 1


def test_more_gpus_than_variants_split_a_variant_across_workers():
    slices = contiguous_slices(sweep(), 8)
    workers_of_fp16 = [i for i, part in enumerate(slices) if any(v == "fp16" for v, _ in part)]
    assert len(workers_of_fp16) >= 2
    assert contiguous_slices([1, 2], 4) == [[1], [2], [], []]
    with pytest.raises(ValueError):
        contiguous_slices([1], 0)


def test_case_ids_are_read_back_from_node_ids():
    assert case_from_nodeid("benchmarks/test_caption.py::test_caption[int8_vit-batch12]") == ("int8_vit", 12)
    assert case_from_nodeid("benchmarks/test_caption.py::test_caption[fp16-batch0]@slice") == ("fp16", 0)
    assert case_from_nodeid("tests/test_x.py::test_y[1-2]") is None


def test_plan_gives_pending_cases_slices_and_finished_ones_their_own_unit():
    ids = [f"b.py::test_caption[{v}-batch{c}]" for v, c in sweep(2)] + ["b.py::test_other"]
    units = plan_units(ids, lambda v, c: v != "int8", workers=2)
    assert units["b.py::test_caption[int8-batch0]"] == DONE_UNIT
    assert [units[f"b.py::test_caption[fp16-batch{c}]"] for c in (0, 1)] == ["vlmbench: slice 0"] * 2
    assert [units[f"b.py::test_caption[int8_vit-batch{c}]"] for c in (0, 1)] == ["vlmbench: slice 1"] * 2
    assert units["b.py::test_other"] == "b.py::test_other"


# ---------------------------------------------------------------- shards
def test_shard_share_depends_on_the_case_list_only():
    shares = [Shard(i, 2).share(sweep()) for i in range(2)]
    assert shares[0] + shares[1] == sweep()
    assert parse_shard("1/4", {}) == Shard(1, 4)
    with pytest.raises(ConfigError, match=r"0-based, from 0 to count-1 \(the shares of 2 are 0/2 \.\.\. 1/2\)"):
        parse_shard("2/2", {})
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ConfigError, match="--vlm-shard|out of range"):
            parse_shard(bad, {})


@pytest.mark.parametrize("env, expected", [
    ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"}, (2, 4)),
    ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "2"}, (0, 2)),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "3",
      "SLURM_ARRAY_TASK_STEP": "2"}, (2, 3)),
    ({"JOB_COMPLETION_INDEX": "5", "VLMBENCH_SHARD_COUNT": "8"}, (5, 8)),
])
def test_auto_shard_from_slurm_or_kubernetes(env, expected):
    shard = parse_shard("auto", env)
    assert (shard.index, shard.count) == expected


@pytest.mark.parametrize("env, message", [
    ({}, "neither a Slurm array task.*nor a Kubernetes Indexed Job.*--vlm-shard K/N"),
    ({"JOB_COMPLETION_INDEX": "1"}, "VLMBENCH_SHARD_COUNT is not.*completions"),
    ({"SLURM_ARRAY_TASK_ID": "1"}, "SLURM_ARRAY_TASK_COUNT, SLURM_ARRAY_TASK_MIN is not"),
    ({"JOB_COMPLETION_INDEX": "3", "VLMBENCH_SHARD_COUNT": "3"}, "out of range"),
])
def test_auto_shard_without_a_scheduler_says_what_is_missing(env, message):
    with pytest.raises(ConfigError, match=message):
        shard_from_env(env)


# ---------------------------------------------------------------- devices
def test_visible_devices_from_cuda_visible_devices_or_nvml_count():
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "2,5"}, nvml_count=8) == ["2", "5"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "GPU-a, GPU-b"}, 8) == ["GPU-a", "GPU-b"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "0,-1,1"}, 8) == ["0"]
    assert visible_devices({"CUDA_VISIBLE_DEVICES": ""}, 8) == []
    assert visible_devices({}, 3) == ["0", "1", "2"] and visible_devices({}, None) == []


def test_each_worker_gets_its_own_device_and_a_restarted_worker_the_freed_one():
    devices = ["2", "5", "7"]
    assert [device_for_worker(f"gw{i}", devices) for i in range(3)] == ["2", "5", "7"]
    assert device_for_worker("gw3", devices, busy=["2", "7"]) == "5"  # gw1 died; its replacement is gw3
    assert device_for_worker("gw0", []) is None  # CPU run: nothing to pin
    with pytest.raises(ConfigError, match="held by other workers.*-n 3 or fewer"):
        device_for_worker("gw3", devices, busy=devices)
    with pytest.raises(ValueError):
        worker_index("main")


def test_more_workers_than_gpus_is_refused():
    check_worker_count(2, ["0", "1"])
    check_worker_count(4, [])  # CPU: xdist decides
    with pytest.raises(ConfigError, match="-n 3 asks for 3 workers but 2 GPU.*use -n 2"):
        check_worker_count(3, ["0", "1"])
