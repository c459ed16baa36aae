"""Measurement code paths that need no GPU: units, null-with-reason, energy arithmetic, size on disk."""
import pytest

from vlmbench.measure import (EnergyWindow, Nvml, Reading, average_power, energy_between, folder_bytes,
                              idle_power, peak_memory, per_image, size_on_disk_mb)


class FakeNvml:
    """A counter in millijoules that advances by a fixed step per reading, like NVML's."""
    reason = energy_reason = None

    def __init__(self, readings):
        self.readings = list(readings)

    def energy_mj(self):
        return self.readings.pop(0)


def test_energy_window_from_a_fake_counter():
    with EnergyWindow(FakeNvml([1_000_000, 1_450_500])) as window:
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
    from vlmbench.modeling import build_processor, load_variant_model, weights_dir
    from vlmbench.variants import get_variant
    cfg = build(ExperimentConfig, TINY)
    source = weights_dir(cfg, build_processor(cfg), "cpu")
    for name in ("fp16", "int8"):
        model = load_variant_model(cfg, get_variant(name), source, "cpu")
        measured = size_on_disk_mb(model)
        model.save_pretrained(tmp_path / name)
        assert measured.value == pytest.approx(folder_bytes(tmp_path / name) / 1e6)
    # int8 stores int8 weights plus scales: smaller than fp16 once Linear layers dominate
    assert size_on_disk_mb(model, enabled=False).reason.startswith("disabled in config")
