"""Which GPU each pytest-xdist worker owns.

Why it exists: under `pytest benchmarks -n N` every worker must see exactly one GPU, and the choice
must be made before torch or bitsandbytes initialise CUDA (bitsandbytes fixes the visible devices
when it loads its native library; torch reads CUDA_VISIBLE_DEVICES once, at CUDA initialisation).
The controller lists the devices without touching CUDA (its own CUDA_VISIBLE_DEVICES, else NVML's
device count) and hands each new worker a device that no live worker holds; the worker writes it
into its CUDA_VISIBLE_DEVICES in its first `pytest_configure`. A worker that xdist starts again
after a crash takes the device its dead predecessor held.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from vlmbench.config import ConfigError


def visible_devices(env: Mapping[str, str], nvml_count: int | None) -> list[str]:
    """Device ids a worker may be given: the entries of CUDA_VISIBLE_DEVICES when set (indices, UUIDs
    or MIG ids, kept verbatim), else "0".."count-1" from NVML; [] when there is no GPU."""
    if "CUDA_VISIBLE_DEVICES" in env:
        entries = [e.strip() for e in env["CUDA_VISIBLE_DEVICES"].split(",") if e.strip()]
        # CUDA stops at the first invalid entry; "-1" is the usual way to hide every device
        return entries[:entries.index("-1")] if "-1" in entries else entries
    return [str(i) for i in range(nvml_count or 0)]


def nvml_device_count() -> int | None:
    """GPUs NVML sees, without initialising CUDA (None when NVML or its driver is absent)."""
    try:
        import pynvml
        pynvml.nvmlInit()
        try:
            return int(pynvml.nvmlDeviceGetCount())
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        return None


def worker_index(worker_id: str) -> int:
    """0 for xdist's `gw0`, 3 for `gw3`. Raises ValueError for anything else."""
    if not worker_id.startswith("gw") or not worker_id[2:].isdigit():
        raise ValueError(f"not an xdist worker id: {worker_id!r}")
    return int(worker_id[2:])


def device_for_worker(worker_id: str, devices: Sequence[str], busy: Sequence[str] = ()) -> str | None:
    """The device worker `worker_id` owns: devices[index] when free, else the first free one.

    None when there are no devices (a CPU run). Raises ConfigError when every device is held by a
    live worker (more workers than GPUs).
    """
    if not devices:
        return None
    free = [d for d in devices if d not in busy]
    if not free:
        raise ConfigError(f"worker {worker_id}: all {len(devices)} GPUs ({', '.join(devices)}) are held by other "
                          f"workers; each worker owns one GPU, so use -n {len(devices)} or fewer (or -n auto)")
    preferred = devices[worker_index(worker_id) % len(devices)]
    return preferred if preferred in free else free[0]


def check_worker_count(workers: int, devices: Sequence[str]) -> None:
    """Refuses more xdist workers than GPUs (two workers on one GPU share each other's timing and energy)."""
    if devices and workers > len(devices):
        raise ConfigError(f"-n {workers} asks for {workers} workers but {len(devices)} GPU(s) are visible "
                          f"({', '.join(devices)}); each worker owns one GPU: use -n {len(devices)} or -n auto")


def pin_worker_to_device(device: str | None, environ=os.environ) -> None:
    """Makes `device` the only GPU this process sees; refuses when CUDA is already initialised."""
    if device is None:
        return
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        raise ConfigError("CUDA was initialised before vlmbench could give this xdist worker its GPU (a plugin or "
                          "conftest used torch.cuda at import); the worker would see every GPU")
    environ["CUDA_VISIBLE_DEVICES"] = device
