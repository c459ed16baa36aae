"""Splitting a sweep's cases between workers (GPUs of one host) and shards (hosts of a cluster).

Why it exists: a sweep of V variants in C chunks should finish in about total/N on N GPUs, and each
GPU should load a variant at most once (loading a 3B model takes tens of seconds and warms up
kernels again). Both needs are met by one rule, McNaughton's wrap-around rule for scheduling
identical jobs on parallel machines (R. McNaughton, "Scheduling with deadlines and loss functions",
Management Science 6(1), 1959): lay the cases out variant by variant, chunk by chunk, and cut that
line into N contiguous slices whose sizes differ by at most one. A contiguous slice touches each
variant in one run, so a worker loads each of its variants once; at most N-1 variants are split
between two workers, so the sweep loads at most V+N-1 models in all. 3 variants x 5 chunks on
2 GPUs: 8 and 7 cases (fp16 + 3 chunks of int8 / 2 chunks of int8 + int8_vit); on 8 GPUs: slices
of 2 cases, each worker loading one or two variants.

The same rule gives a shard its share of the cases (`--vlm-shard K/N`, or `auto` from Slurm or a
Kubernetes Indexed Job). A shard's share is a function of the selected cases only, never of what
is already finished, so shards started at different times still cover every case exactly once;
finished cases inside a share are skipped as usual, and claim files (vlmbench/results/claims.py) keep two
processes off one chunk.
"""
from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from vlmbench.config import ConfigError

T = TypeVar("T")
CASE_ID = re.compile(r"\[(?P<variant>[^\[\]]+)-batch(?P<chunk>\d+)\]")


def contiguous_slices(cases: Sequence[T], parts: int) -> list[list[T]]:
    """`cases` cut into `parts` contiguous slices whose lengths differ by at most one (first ones longer).

    Slices beyond the number of cases are empty. Raises ValueError for parts < 1.
    """
    if parts < 1:
        raise ValueError(f"parts must be at least 1, got {parts}")
    base, extra = divmod(len(cases), parts)
    slices, start = [], 0
    for index in range(parts):
        end = start + base + (1 if index < extra else 0)
        slices.append(list(cases[start:end]))
        start = end
    return slices


def case_from_nodeid(nodeid: str) -> tuple[str, int] | None:
    """(variant, chunk id) of a case id such as `benchmarks/test_caption.py::test_caption[int8-batch3]`."""
    match = CASE_ID.search(nodeid)
    return (match["variant"], int(match["chunk"])) if match else None


# ---------------------------------------------------------------- shards
@dataclass(frozen=True)
class Shard:
    """Shard `index` (0-based) of `count`; `source` says where the numbers came from."""
    index: int
    count: int
    source: str = "--vlm-shard"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def share(self, cases: Sequence[T]) -> list[T]:
        return contiguous_slices(cases, self.count)[self.index]


def parse_shard(text: str, env: Mapping[str, str]) -> Shard:
    """`K/N` (0 <= K < N) or `auto` (from the scheduler's environment); ConfigError with the fix otherwise."""
    if text.strip().lower() == "auto":
        return shard_from_env(env)
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ConfigError(f"--vlm-shard {text!r} is not K/N or auto; e.g. --vlm-shard 0/4 runs the first of 4 shares")
    return _checked(int(match[1]), int(match[2]), "--vlm-shard")


def _checked(index: int, count: int, source: str) -> Shard:
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard {index}/{count} from {source} is out of range: the index is 0-based, from 0 to "
                          f"count-1 (the shares of {max(count, 1)} are {_first_and_last(max(count, 1))}), and the "
                          "count at least 1")
    return Shard(index, count, source)


def _first_and_last(count: int) -> str:
    return f"0/{count}" if count == 1 else f"0/{count} ... {count - 1}/{count}"


def _int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise ConfigError(f"{name}={env[name]!r} is not an integer") from None


def shard_from_env(env: Mapping[str, str]) -> Shard:
    """The shard of a Slurm array task or a Kubernetes Indexed Job pod.

    Slurm: index = (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) / SLURM_ARRAY_TASK_STEP (an array
    `--array=1-4` starts at 1), count = SLURM_ARRAY_TASK_COUNT. Kubernetes: index =
    JOB_COMPLETION_INDEX (set by the Job controller), count = VLMBENCH_SHARD_COUNT (set it to the
    Job's `completions`; Kubernetes does not pass that number to the pod).
    """
    if "SLURM_ARRAY_TASK_ID" in env:
        missing = [n for n in ("SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN") if n not in env]
        if missing:
            raise ConfigError(f"--vlm-shard auto: SLURM_ARRAY_TASK_ID is set but {', '.join(missing)} is not; "
                              "run inside `sbatch --array` or pass --vlm-shard K/N")
        step = _int(env, "SLURM_ARRAY_TASK_STEP") if env.get("SLURM_ARRAY_TASK_STEP") else 1
        index = (_int(env, "SLURM_ARRAY_TASK_ID") - _int(env, "SLURM_ARRAY_TASK_MIN")) // max(step, 1)
        return _checked(index, _int(env, "SLURM_ARRAY_TASK_COUNT"), "Slurm array (SLURM_ARRAY_TASK_*)")
    if "JOB_COMPLETION_INDEX" in env:
        if not env.get("VLMBENCH_SHARD_COUNT"):
            raise ConfigError("--vlm-shard auto: JOB_COMPLETION_INDEX is set (Kubernetes Indexed Job) but "
                              "VLMBENCH_SHARD_COUNT is not; set it to the Job's spec.completions")
        return _checked(_int(env, "JOB_COMPLETION_INDEX"), _int(env, "VLMBENCH_SHARD_COUNT"),
                        "Kubernetes Indexed Job (JOB_COMPLETION_INDEX, VLMBENCH_SHARD_COUNT)")
    raise ConfigError("--vlm-shard auto found no scheduler: neither a Slurm array task (SLURM_ARRAY_TASK_ID, "
                      "SLURM_ARRAY_TASK_COUNT, SLURM_ARRAY_TASK_MIN) nor a Kubernetes Indexed Job "
                      "(JOB_COMPLETION_INDEX with VLMBENCH_SHARD_COUNT); pass --vlm-shard K/N instead")
