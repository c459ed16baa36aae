"""Measurement code paths that need no GPU: units, null-with-reason, energy arithmetic, size on disk."""
import json
from pathlib import Path

import pytest

from vlmbench.run.measure import (EnergyWindow, Nvml, Reading, average_power, energy_between, folder_bytes,
                              idle_power, peak_memory, per_image, size_on_disk_mb)


class FakeNvml:
    """A counter in millijoules that advances by a fixed step per reading, like NVML's."""
    reason = energy_reason = None

    def __init__(self, readings):
        self.readings = list(readings)

    def energy_mj(self):
        return self.readings.pop(0)


def fake_clock(*seconds):
    """perf_counter readings for an EnergyWindow: start, end."""
    return iter(seconds).__next__


def test_energy_window_from_a_fake_counter():
    with EnergyWindow(FakeNvml([1_000_000, 1_450_500]), clock=fake_clock(10.0, 12.0)) as window:
        pass
    assert window.joules.value == pytest.approx(450.5)
    assert per_image(window.joules, 10).value == pytest.approx(45.05)
    assert average_power(Reading(450.5), 2.0).value == pytest.approx(225.25)


def test_missing_energy_stays_null_with_reason():
    missing = energy_between(None, 5, "NVML unavailable: x")
    assert missing.value is None and missing.reason == "NVML unavailable: x"
    assert per_image(missing, 10).reason == "NVML unavailable: x"
    assert average_power(missing, 1.0).value is None
    assert per_image(Reading(5.0), 0).reason == "no image captioned in the window"


def test_cpu_has_reasons_not_zeros():
    nvml = Nvml("cpu")
    assert nvml.energy_mj() is None and "no CUDA device" in nvml.reason
    assert idle_power(nvml).value is None
    assert nvml.process_used_mib().value is None
    peaks = peak_memory("cpu")
    assert all(r.value is None and "no CUDA device" in r.reason for r in peaks.values())
    assert nvml.device_info()["gpu_name"] is None


def test_size_on_disk_is_a_real_save(tmp_path):
    from tests.conftest import TINY
    from vlmbench.config import ExperimentConfig, build
    from vlmbench.models.loading import build_processor, load_variant_model, weights_dir
    from vlmbench.quantize.variants import get_variant
    cfg = build(ExperimentConfig, TINY)
    source = weights_dir(cfg, build_processor(cfg), "cpu")
    for name in ("fp16", "int8"):
        model = load_variant_model(cfg, get_variant(name), source, "cpu")
        measured = size_on_disk_mb(model)
        model.save_pretrained(tmp_path / name)
        assert measured.value == pytest.approx(folder_bytes(tmp_path / name) / 1e6)
    # int8 stores int8 weights plus scales: smaller than fp16 once Linear layers dominate
    assert size_on_disk_mb(model, enabled=False).reason.startswith("disabled in config")


# ---------------------------------------------------------------- NVML calls that fail
class NVMLError(Exception):
    pass


class NVMLError_NotSupported(NVMLError):
    def __str__(self):
        return "Not Supported"


def fake_pynvml(fails=("nvmlDeviceGetPowerUsage",)):
    """A stand-in for pynvml on a GPU whose energy counter works but some queries answer NotSupported."""
    import types
    counter = iter(range(1_000_000, 10_000_000, 250_000))

    def calls(name, value):
        def call(*args):
            if name in fails:
                raise NVMLError_NotSupported()
            return value() if callable(value) else value
        return call
    module = types.SimpleNamespace(NVMLError=NVMLError, nvmlInit=lambda: None,
                                   nvmlDeviceGetHandleByUUID=lambda uuid: "handle-0")
    for name, value in {"nvmlDeviceGetTotalEnergyConsumption": lambda: next(counter),
                        "nvmlDeviceGetPowerUsage": 70_000, "nvmlDeviceGetName": b"Fake GPU",
                        "nvmlSystemGetDriverVersion": "550.1", "nvmlDeviceGetComputeRunningProcesses": []}.items():
        setattr(module, name, calls(name, value))
    return module


@pytest.fixture
def nvml_with(monkeypatch):
    import sys
    import vlmbench.run.measure as measure

    def make(fails):
        monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fails))
        monkeypatch.setattr(measure, "_torch_device_uuid", lambda: "GPU-fake")
        return Nvml("cuda")
    return make


def test_power_not_supported_leaves_energy_and_makes_idle_power_null(nvml_with):
    nvml = nvml_with(fails=("nvmlDeviceGetPowerUsage",))
    idle = idle_power(nvml, samples=2, interval_s=0)
    assert idle.value is None and "nvmlDeviceGetPowerUsage failed: NVMLError_NotSupported: Not Supported" in idle.reason
    with EnergyWindow(nvml, clock=fake_clock(0.0, 1.0)) as window:
        pass
    assert window.joules.value == pytest.approx(250.0)
    assert nvml.device_info() == {"gpu_name": "Fake GPU", "driver": "550.1", "gpu_uuid": nvml.uuid}


def test_every_failing_nvml_query_is_null_with_its_reason(nvml_with):
    nvml = nvml_with(fails=("nvmlDeviceGetPowerUsage", "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetName",
                            "nvmlSystemGetDriverVersion", "nvmlDeviceGetComputeRunningProcesses"))
    with EnergyWindow(nvml) as window:
        pass
    assert window.joules.value is None and "nvmlDeviceGetTotalEnergyConsumption failed" in window.joules.reason
    assert "nvmlDeviceGetComputeRunningProcesses failed" in nvml.process_used_mib().reason
    info = nvml.device_info()
    assert info["gpu_name"] is None and "NotSupported" in info["gpu_name_null_reason"]
    assert info["driver"] is None and "nvmlSystemGetDriverVersion failed" in info["driver_null_reason"]


def test_a_counter_that_goes_backwards_is_not_a_negative_energy():
    assert "went backwards" in energy_between(5_000, 1_000, None).reason


@pytest.mark.parametrize("readings_mj, seconds, reason", [
    ((1_000_000, 1_000_000), (0.0, 0.04), "shorter than the counter's resolution"),  # between two steps
    ((1_000_000, 1_012_000), (0.0, 0.04), "shorter than the counter's resolution"),  # one whole step
    ((1_000_000, 1_000_000), (0.0, 0.5), "did not move over the 0.500 s window"),
])
def test_a_window_the_counter_cannot_resolve_is_null_never_0_joules(readings_mj, seconds, reason):
    with EnergyWindow(FakeNvml(readings_mj), clock=fake_clock(*seconds)) as window:
        pass
    assert window.joules.value is None and reason in window.joules.reason
    assert per_image(window.joules, 4).value is None and reason in per_image(window.joules, 4).reason
    assert average_power(window.joules, window.seconds).value is None


def test_a_chunk_case_runs_on_a_gpu_that_cannot_report_power(nvml_with, tmp_path, monkeypatch):
    """The session path a case takes (idle power, variant record, chunk CSV) survives NotSupported."""
    import vlmbench.run.measure as measure
    monkeypatch.setattr(measure, "ENERGY_COUNTER_STEP_S", 0.0)  # a CPU chunk of 2 images may take under 0.1 s
    from tests.conftest import TINY
    from vlmbench.config import ExperimentConfig, build
    from vlmbench.results.records import read_chunk_csv
    from vlmbench.run.session import BenchSession
    session = BenchSession(build(ExperimentConfig, {**TINY, "results_dir": str(tmp_path)}), tmp_path)
    session.__dict__["nvml"] = nvml_with(fails=("nvmlDeviceGetPowerUsage", "nvmlDeviceGetName"))
    session.start()
    assert session.read_idle_power().value is None
    loaded = session.load_variant("fp16")
    session.run_chunk(loaded, 0)
    from vlmbench.results.variant_records import read_variant_records
    [record] = read_variant_records(tmp_path, "fp16").values()  # one writer: this process
    assert record["idle_power_w"] is None and "NotSupported" in record["idle_power_w_null_reason"]
    assert record["gpu_name"] is None and "nvmlDeviceGetName failed" in record["gpu_name_null_reason"]
    assert (record["decode_workers"], record["prefetch_batches"]) == (8, 2)  # the speed settings that ran
    rows = read_chunk_csv(tmp_path / "fp16_batch_0.csv")
    assert [r["status"] for r in rows] == ["ok", "ok"] and float(rows[0]["chunk_energy_j"]) == pytest.approx(250.0)
    timed = sum(r["latency_s"] not in ("", None) for r in rows)
    assert json.loads(rows[0]["measure_notes"])["latency_s"].startswith(
        f"timed alone (micro-batch 1) for the first {timed} readable image(s) of the chunk only")


def test_size_on_disk_copy_lives_in_the_cache_and_is_removed(monkeypatch):
    """The copy goes to $VLMBENCH_CACHE/size-on-disk (swept by the next run), never the system temp folder."""
    import errno
    import tempfile
    from vlmbench.run.measure import size_on_disk_folder
    seen = []

    class Model:
        def save_pretrained(self, folder, safe_serialization):
            seen.append(Path(folder))
            (Path(folder) / "model.safetensors").write_bytes(b"x" * 2000)

    assert size_on_disk_mb(Model()).value == pytest.approx(0.002)
    assert seen[0].parent == size_on_disk_folder() and not seen[0].exists()
    assert not str(seen[0]).startswith(tempfile.gettempdir() + "/vlmbench-size-")

    class FullDisk:
        def save_pretrained(self, folder, safe_serialization):
            (Path(folder) / "part").write_bytes(b"x")
            raise OSError(errno.ENOSPC, "No space left on device")

    reading = size_on_disk_mb(FullDisk())
    assert reading.value is None and "No space left on device" in reading.reason
    assert list(size_on_disk_folder().iterdir()) == []


def test_tiny_model_settings_are_read_only_and_the_model_is_built_once():
    from tests.conftest import TINY
    from vlmbench.config import ExperimentConfig, build
    from vlmbench.models.loading import TINY_TEXT, build_processor, random_model_config_dict, random_weights_dir
    with pytest.raises(TypeError):
        TINY_TEXT["hidden_size"] = 1
    cfg = build(ExperimentConfig, TINY)
    processor = build_processor(cfg)
    first = random_model_config_dict(cfg, processor)
    first["rope_scaling"]["rope_type"] = "edited by a caller"
    assert "rope_type" not in random_model_config_dict(cfg, processor)["rope_scaling"]
    assert random_weights_dir(cfg, processor) == random_weights_dir(cfg, processor)


# ---------------------------------------------------------------- MIG instances
class NVMLError_NotFound(NVMLError):
    def __str__(self):
        return "Not Found"


def fake_mig_pynvml():
    """NVML on a GPU split into MIG instances: torch's device is instance 'MIG-1234' of 'GPU-parent'."""
    import ctypes
    module = fake_pynvml(fails=())
    handles = {"MIG-1234": "mig-handle", "GPU-parent": "gpu-handle"}

    def by_uuid(uuid):
        if uuid not in handles:
            raise NVMLError_NotFound()
        return handles[uuid]
    module.nvmlDeviceGetHandleByUUID = by_uuid
    module.nvmlDeviceIsMigDeviceHandle = lambda handle: ctypes.c_uint(handle == "mig-handle")  # as pynvml answers
    module.nvmlDeviceGetDeviceHandleFromMigDeviceHandle = lambda handle: "gpu-handle"
    module.nvmlDeviceGetUUID = lambda handle: {v: k for k, v in handles.items()}[handle].encode()
    return module


def test_a_mig_instance_has_null_energy_and_power_naming_mig_and_records_its_parent_gpu(monkeypatch):
    import sys
    import vlmbench.run.measure as measure
    monkeypatch.setitem(sys.modules, "pynvml", fake_mig_pynvml())
    monkeypatch.setattr(measure, "_torch_device_uuid", lambda: "1234")  # torch prints the bare UUID
    nvml = Nvml("cuda")
    assert (nvml.uuid, nvml.parent_uuid) == ("MIG-1234", "GPU-parent")  # ids that name devices
    with EnergyWindow(nvml, clock=fake_clock(0.0, 5.0)) as window:
        pass
    for reading in (window.joules, idle_power(nvml, samples=1, interval_s=0)):
        assert reading.value is None and "MIG instance MIG-1234 of GPU GPU-parent" in reading.reason
    assert "not available per MIG instance" in window.joules.reason
    assert nvml.device_info()["gpu_parent_uuid"] == "GPU-parent"


def test_a_gpu_whose_uuid_nvml_does_not_know_names_what_was_tried(monkeypatch):
    import sys
    import vlmbench.run.measure as measure
    monkeypatch.setitem(sys.modules, "pynvml", fake_mig_pynvml())
    monkeypatch.setattr(measure, "_torch_device_uuid", lambda: "ffff")
    nvml = Nvml("cuda")
    assert nvml.handle is None and nvml.uuid == "ffff" and "GPU-ffff or MIG-ffff" in nvml.reason


def test_a_whole_gpu_in_mig_mode_has_null_energy_too(monkeypatch):
    """When torch names the parent GPU, its counter would count every MIG instance's work."""
    import sys
    import vlmbench.run.measure as measure
    module = fake_pynvml(fails=())
    module.nvmlDeviceIsMigDeviceHandle = lambda handle: False
    module.nvmlDeviceGetMigMode = lambda handle: (1, 1)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    monkeypatch.setattr(measure, "_torch_device_uuid", lambda: "GPU-fake")
    nvml = Nvml("cuda")
    assert nvml.parent_uuid is None and nvml.energy_mj() is None
    assert nvml.energy_reason.startswith("GPU GPU-fake is in MIG mode: NVML's total-energy counter")
