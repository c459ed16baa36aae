"""Efficiency measurements: time, device memory, energy and size on disk.

Why it exists: each number has one definition and one implementation here, and each can say why it
is missing. A metric that cannot be measured on this machine is `None` with a reason, never 0.

- Time: `time.perf_counter` with the CUDA device synchronized before each reading.
- Memory: torch's max allocated / max reserved (peak stats reset after load), plus the memory
  NVML reports for this process.
- Energy: NVML's total-energy counter (mJ) read around a window; NVML's device is matched to
  torch's by UUID because NVML ignores CUDA_VISIBLE_DEVICES. The counter moves in steps, so a window
  shorter than one step, or one over which it did not move, is no measurement (null, never 0 J).
  A MIG instance has no counter of its own: energy and power are null there, and the parent GPU's
  UUID is recorded beside the instance's.
- Size on disk: the bytes `save_pretrained` writes (safetensors, quantization state included).
"""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from vlmbench.paths import cache_dir, owned_temp_dir

MIB = 1024 * 1024
# NVML's total-energy counter does not tick continuously: it updates in steps (on an H200, 2026-12-02: every
# 0.100 s idle and under load, 30 updates in 3 s, 12-44 J each; pyJoules#17 and pynvml#18 report 20-100 ms).
# A window shorter than this reads 0 J or one whole step, neither of which is the window's energy.
ENERGY_COUNTER_STEP_S = 0.1
MIG_COUNTERS = ("NVML's total-energy counter and power reading are not available per MIG instance (the "
                "whole GPU's would count every instance's work)")


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(device: str, fn: Callable, *args, **kwargs):
    """Runs fn with the device synchronized before and after; returns (result, seconds)."""
    synchronize(device)
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    synchronize(device)
    return result, time.perf_counter() - start


@dataclass
class Reading:
    """A measured value, or None with the reason it could not be measured."""
    value: Optional[float]
    reason: Optional[str] = None

    @classmethod
    def missing(cls, reason: str) -> "Reading":
        return cls(None, reason)


# ---------------------------------------------------------------- NVML
class Nvml:
    """NVML handle for the device torch uses, or the reason there is none.

    Every NVML query goes through `query`: a failing call (NVMLError_NotSupported on a GPU that
    reports energy but no power, a binding too old to know the function, a driver hiccup) makes
    that one metric None with the reason, and never raises into a benchmark case.
    """

    def __init__(self, device: str, energy: bool = True):
        self.handle, self.reason, self._nvml, self.uuid = None, None, None, None
        self.parent_uuid: Optional[str] = None  # the GPU a MIG instance is part of (None: not a MIG instance)
        self.mig_reason: Optional[str] = None  # why energy and power are null on a MIG instance
        self.energy_enabled = energy
        self.energy_failure: Optional[str] = None
        if device != "cuda":
            self.reason = "no CUDA device (run on CPU)"
            return
        try:
            import pynvml
            pynvml.nvmlInit()
            self._nvml = pynvml
            self.uuid = _torch_device_uuid()
            self.handle, self.uuid = find_device(pynvml, self.uuid)
        except Exception as exc:  # NVML missing, driver too old, UUID lookup failed
            self.reason = f"NVML unavailable: {type(exc).__name__}: {exc}"
            return
        self._note_mig()

    def _note_mig(self) -> None:
        """Sets parent_uuid and mig_reason when torch's device is a MIG instance; mig_reason alone when
        NVML found a whole GPU that is in MIG mode (torch named the parent: this process runs on one of
        its instances)."""
        self.parent_uuid = mig_parent_uuid(self._nvml, self.handle)
        if self.parent_uuid is not None:
            self.mig_reason = f"MIG instance {self.uuid} of GPU {self.parent_uuid}: {MIG_COUNTERS}"
        elif in_mig_mode(self._nvml, self.handle):
            self.mig_reason = f"GPU {self.uuid} is in MIG mode: {MIG_COUNTERS}"

    def query(self, function: str, *args) -> Reading:
        """`pynvml.<function>(handle, *args)` as a Reading; any failure is None with the reason."""
        if self.handle is None:
            return Reading.missing(self.reason)
        try:
            return Reading(getattr(self._nvml, function)(self.handle, *args))
        except Exception as exc:  # pynvml.NVMLError_* (NotSupported, NoPermission, ...), AttributeError
            return Reading.missing(f"NVML {function} failed: {type(exc).__name__}: {exc}")

    @property
    def energy_reason(self) -> Optional[str]:
        if not self.energy_enabled:
            return "disabled in config (measure.energy: false)"
        return self.energy_failure or self.reason or self.mig_reason

    def energy_mj(self) -> Optional[int]:
        """NVML's total-energy counter (millijoules since the driver loaded), or None (see energy_reason)."""
        if not self.energy_enabled or self.mig_reason:
            return None
        reading = self.query("nvmlDeviceGetTotalEnergyConsumption")
        if reading.value is None:
            self.energy_failure = reading.reason
            return None
        return int(reading.value)

    def power_w(self) -> Reading:
        """Board power draw in watts (NVML reports milliwatts); None with the reason on a MIG instance."""
        if self.mig_reason and self.handle is not None:
            return Reading.missing(self.mig_reason)
        reading = self.query("nvmlDeviceGetPowerUsage")
        return reading if reading.value is None else Reading(reading.value / 1000.0)

    def process_used_mib(self) -> Reading:
        reading = self.query("nvmlDeviceGetComputeRunningProcesses")
        if reading.value is None:
            return reading
        mine = [p.usedGpuMemory for p in reading.value if p.pid == os.getpid() and p.usedGpuMemory is not None]
        if not mine:
            return Reading.missing("NVML lists no memory for this process (containerised PID namespace?)")
        return Reading(sum(mine) / MIB)

    def device_info(self) -> dict:
        """GPU name, driver version, UUID (and a MIG instance's parent GPU UUID); each None with
        `<key>_null_reason` when NVML cannot say."""
        ids = {"gpu_uuid": self.uuid} | ({"gpu_parent_uuid": self.parent_uuid} if self.parent_uuid else {})
        if self.handle is None:
            return {"gpu_name": None, **ids, "driver": None, "gpu_null_reason": self.reason}
        info = {"gpu_name": self.query("nvmlDeviceGetName"), "driver": self._driver_version()}
        out = {key: None if r.value is None else _str(r.value) for key, r in info.items()} | ids
        out.update({f"{key}_null_reason": r.reason for key, r in info.items() if r.value is None})
        return out

    def _driver_version(self) -> Reading:
        try:
            return Reading(self._nvml.nvmlSystemGetDriverVersion())
        except Exception as exc:
            return Reading.missing(f"NVML nvmlSystemGetDriverVersion failed: {type(exc).__name__}: {exc}")


def _str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _torch_device_uuid() -> str:
    """torch's UUID of the current device: the bare hex form torch prints (or with its GPU-/MIG- prefix)."""
    return str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)


def find_device(pynvml, uuid: str):
    """(NVML handle, full UUID) of torch's device: `uuid` as NVML spells a whole GPU (`GPU-...`) or, failing
    that, a MIG instance (`MIG-...`; cuDeviceGetUuid_v2 gives a MIG instance's UUID under MIG).

    Raises LookupError naming every UUID tried (and NVML's last answer) when neither names a device."""
    bare = uuid.removeprefix("GPU-").removeprefix("MIG-")
    tried = [uuid] if uuid != bare else [f"GPU-{bare}", f"MIG-{bare}"]
    for name in tried:
        try:
            return pynvml.nvmlDeviceGetHandleByUUID(name), name
        except pynvml.NVMLError as exc:
            error = exc
    raise LookupError(f"no NVML device has UUID {' or '.join(tried)} ({type(error).__name__}: {error})")


def mig_parent_uuid(pynvml, handle) -> Optional[str]:
    """The parent GPU's UUID when `handle` is a MIG instance's, else None (also when an old binding or
    driver lacks the MIG calls)."""
    try:
        is_mig = pynvml.nvmlDeviceIsMigDeviceHandle(handle)  # pynvml returns a ctypes c_uint (seen on an H200)
        if getattr(is_mig, "value", is_mig):
            return _str(pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)))
    except Exception:  # NVMLError_NotSupported, AttributeError (old pynvml)
        pass
    return None


def in_mig_mode(pynvml, handle) -> bool:
    """Whether the whole GPU `handle` names has MIG mode enabled (False when NVML cannot say)."""
    try:
        return pynvml.nvmlDeviceGetMigMode(handle)[0] == getattr(pynvml, "NVML_DEVICE_MIG_ENABLE", 1)
    except Exception:  # NVMLError_NotSupported (a GPU without MIG), AttributeError (old pynvml)
        return False


def idle_power(nvml: Nvml, samples: int = 5, interval_s: float = 0.2) -> Reading:
    """Mean board power (W) over `samples` readings `interval_s` apart; None with the first failure's reason."""
    if nvml.handle is None:
        return Reading.missing(nvml.reason)
    values = []
    for _ in range(samples):
        reading = nvml.power_w()
        if reading.value is None:
            return reading
        values.append(reading.value)
        time.sleep(interval_s)
    return Reading(sum(values) / len(values))


# ---------------------------------------------------------------- energy windows
@dataclass
class EnergyWindow:
    """Energy over a window from NVML's cumulative counter (millijoules)."""
    nvml: Nvml
    start_mj: Optional[int] = None
    start_s: float = 0.0
    joules: Reading = field(default_factory=lambda: Reading.missing("window not closed"))
    seconds: float = 0.0
    clock: Callable[[], float] = time.perf_counter  # seconds; a fake one in tests

    def __enter__(self):
        self.start_mj = self.nvml.energy_mj()
        self.start_s = self.clock()
        return self

    def __exit__(self, *exc):
        end_mj = self.nvml.energy_mj()
        self.seconds = self.clock() - self.start_s
        self.joules = energy_between(self.start_mj, end_mj, self.nvml.energy_reason, self.seconds)
        return False


def energy_between(start_mj: Optional[int], end_mj: Optional[int], reason: Optional[str],
                   seconds: Optional[float] = None) -> Reading:
    """Joules between two counter readings over a window of `seconds` (None: not checked).

    None with the reason when either reading is missing, the counter went back, the window is shorter
    than the counter's step (ENERGY_COUNTER_STEP_S), or the counter did not move over a non-empty window:
    each of those would read as 0 J (or one whole step) without being the window's energy."""
    if start_mj is None or end_mj is None:
        return Reading.missing(reason or "energy counter unavailable")
    if end_mj < start_mj:
        return Reading.missing(f"NVML energy counter went backwards ({start_mj} -> {end_mj} mJ): driver reset?")
    if seconds is not None and (why := _window_too_short(end_mj - start_mj, seconds)):
        return Reading.missing(why)
    return Reading((end_mj - start_mj) / 1000.0)


def _window_too_short(delta_mj: int, seconds: float) -> Optional[str]:
    """Why a counter delta over `seconds` is no measurement, or None when it is one."""
    step = f"NVML's total-energy counter moves in steps of about {ENERGY_COUNTER_STEP_S} s"
    if seconds < ENERGY_COUNTER_STEP_S:
        return f"energy window of {seconds:.3f} s is shorter than the counter's resolution ({step})"
    if delta_mj == 0:
        return f"NVML's total-energy counter did not move over the {seconds:.3f} s window ({step}); 0 J is no reading"
    return None


def divide(total: Reading, by: float, why_empty: str) -> Reading:
    """total / by, keeping a missing total's reason; `why_empty` when there is nothing to divide by."""
    if total.value is None:
        return total
    return Reading(total.value / by) if by > 0 else Reading.missing(why_empty)


def per_image(total: Reading, images: int) -> Reading:
    return divide(total, images, "no image captioned in the window")


def average_power(joules: Reading, seconds: float) -> Reading:
    return divide(joules, seconds, "empty time window")


# ---------------------------------------------------------------- memory
def reset_peak_memory(device: str) -> None:
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_memory(device: str) -> dict[str, Reading]:
    if device != "cuda":
        why = "no CUDA device (run on CPU): torch tracks no peak memory"
        return {"peak_alloc_mib": Reading.missing(why), "peak_reserved_mib": Reading.missing(why)}
    return {"peak_alloc_mib": Reading(torch.cuda.max_memory_allocated() / MIB),
            "peak_reserved_mib": Reading(torch.cuda.max_memory_reserved() / MIB)}


def allocated_mib(device: str) -> Reading:
    if device != "cuda":
        return Reading.missing("no CUDA device (run on CPU)")
    return Reading(torch.cuda.memory_allocated() / MIB)


# ---------------------------------------------------------------- size on disk
def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def size_on_disk_folder() -> Path:
    """Where the size-on-disk copies are saved: `$VLMBENCH_CACHE/size-on-disk`, swept at each run's start
    (a copy left by a killed run is several GB for the 3B model, so it must not sit in the system temp)."""
    return cache_dir("size-on-disk")


def checkpoint_size_mb(folder: Path) -> Reading:
    """Megabytes (10^6 bytes) of a saved checkpoint folder's config and weight files, as downloaded."""
    from vlmbench.models.loading import MODEL_FILE_PATTERNS
    files = {p for pattern in MODEL_FILE_PATTERNS for p in Path(folder).glob(pattern) if p.is_file()}
    return Reading(sum(p.stat().st_size for p in files) / 1e6)


def size_on_disk_mb(model, enabled: bool = True) -> Reading:
    """Megabytes (10^6 bytes) that `model.save_pretrained` writes: weights, quantization state, configs.

    The copy goes to a folder named after this process in `size_on_disk_folder()` and is removed
    at once; a full disk makes the metric null with the reason instead of stopping the run.
    """
    if not enabled:
        return Reading.missing("disabled in config (measure.model_size: false)")
    tmp = None
    try:
        tmp = owned_temp_dir(size_on_disk_folder(), ".size-")
        model.save_pretrained(tmp, safe_serialization=True)
        return Reading(folder_bytes(tmp) / 1e6)
    except OSError as exc:
        return Reading.missing(f"could not save a copy to measure ({exc.strerror or exc}) in {size_on_disk_folder()}")
    except NotImplementedError as exc:  # transformers 5.24 cannot reverse a loaded checkpoint's weight conversion
        return Reading.missing(f"transformers cannot save this model again ({type(exc).__name__} in save_pretrained"
                               f"{': ' + str(exc) if str(exc) else ''}), so its size on disk is not measured")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- device idle share
def idle_share(wall_s: float, generate_s: float) -> Reading:
    """Share of a window's wall time spent outside `generate`: (wall_s - generate_s) / wall_s, in [0, 1].

    `generate_s` is the sum of the synchronized `generate` calls inside the window. The device is
    busy only inside `generate` (preprocessing on the device is tiny next to it), so this is the share
    of the chunk that the device waits on the host: reading, preprocessing, decoding text, Python.
    """
    if wall_s <= 0:
        return Reading.missing("empty time window")
    if generate_s < 0 or generate_s > wall_s * (1 + 1e-6):
        return Reading.missing(f"generate time {generate_s:.3f} s outside the window's {wall_s:.3f} s")
    return Reading(max(0.0, (wall_s - generate_s) / wall_s))


def cpu_threads(requested: Optional[int], usable_cores: Optional[int] = None) -> tuple[int, str]:
    """torch's intra-op thread count for a CPU run, and where it came from ("config" or "default").

    The default is half the cores this process may use (os.sched_getaffinity), at least 1: torch's own
    default (every core) made one image 10x slower than one thread on a 2-core machine shared with other work.
    """
    if requested is not None:
        return requested, "config"
    if usable_cores is None:
        usable_cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, usable_cores // 2), "default"


def set_cpu_threads(requested: Optional[int]) -> dict:
    """Sets torch's intra-op threads for a CPU run; returns the record fields `cpu_threads`, `cpu_threads_source`."""
    threads, source = cpu_threads(requested)
    torch.set_num_threads(threads)
    return {"cpu_threads": torch.get_num_threads(), "cpu_threads_source": source}
