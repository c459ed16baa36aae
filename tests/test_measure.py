"""Measurement code paths that need no GPU: units, null-with-reason, energy arithmetic, size on disk."""
from pathlib import Path

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


def test_size_on_disk_copy_lives_in_the_cache_and_is_removed(monkeypatch):
    """The copy goes to $VLMBENCH_CACHE/size-on-disk (swept by the next run), never the system temp folder."""
    import errno
    import tempfile
    from vlmbench.measure import size_on_disk_folder
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
    from vlmbench.modeling import TINY_TEXT, build_processor, random_model_config_dict, random_weights_dir
    with pytest.raises(TypeError):
        TINY_TEXT["hidden_size"] = 1
    cfg = build(ExperimentConfig, TINY)
    processor = build_processor(cfg)
    first = random_model_config_dict(cfg, processor)
    first["rope_scaling"]["rope_type"] = "edited by a caller"
    assert "rope_type" not in random_model_config_dict(cfg, processor)["rope_scaling"]
    assert random_weights_dir(cfg, processor) == random_weights_dir(cfg, processor)
