"""The PNG plots say on their own what they show: CPU timings stamped, the better corner, labels inside the frame."""
import io

import numpy as np
import pytest
from PIL import Image

from vlmbench.results.plots import CPU_STAMP, bar_chart, better_corner, tradeoff_scatter, write_plots


def _summary(device: str) -> dict:
    def entry(cider, latency, throughput, size):
        return {"cider": cider, "latency_s_p50": latency, "throughput_img_s": throughput, "model_size_mb": size,
                "device_name": device}
    return {"variants": {"fp16": entry(6.3, 0.05, 27.3, 1.64), "int8": entry(6.1, 0.19, 15.4, 0.99),
                         "int8_vit": entry(6.3, 0.045, 32.1, 1.28)}}


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def _reddish(pixels: np.ndarray) -> int:
    """Pixels of the stamp's red (bars are blue, text black, the background white)."""
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return int(((r > g + 40) & (r > b + 40)).sum())


def test_timing_plots_of_a_cpu_run_are_stamped_inside_the_png(tmp_path):
    cpu, gpu = tmp_path / "cpu", tmp_path / "gpu"
    write_plots(_summary("cpu"), cpu)
    write_plots(_summary("NVIDIA H200"), gpu)
    for name in ("latency_s_p50.png", "throughput_img_s.png"):
        assert _reddish(_pixels(cpu / name)) > 500 and _reddish(_pixels(gpu / name)) == 0
    for name in ("tradeoff_cider_vs_latency_s_p50.png", "tradeoff_cider_vs_throughput_img_s.png"):
        assert (_pixels(cpu / name) != _pixels(gpu / name)).any()
    for name in ("cider.png", "model_size_mb.png", "tradeoff_cider_vs_model_size_mb.png"):  # not timings
        assert (_pixels(cpu / name) == _pixels(gpu / name)).all()
    assert CPU_STAMP == "CPU timing: not a measurement"
    with Image.open(io.BytesIO((cpu / "latency_s_p50.png").read_bytes())) as image:
        assert image.format == "PNG" and image.size[0] > 300  # still a plain PNG


def _inside(fig, ax, margin_px: float = 1.0) -> list[str]:
    """Texts drawn in the axes whose box reaches the frame (within margin_px), by their text."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    touching = []
    for text in ax.texts:
        box = text.get_window_extent(renderer)
        if not (frame.x0 + margin_px < box.x0 and box.x1 < frame.x1 - margin_px and
                frame.y0 + margin_px < box.y0 and box.y1 < frame.y1 - margin_px):
            touching.append(text.get_text())
    return touching


@pytest.mark.parametrize("values", [{"fp16": 27.3, "int8": 15.4, "int8_vit": 32.1}, {"a": 5.0, "b": 5.0},
                                    {"fp16": 0.0009, "int8": 0.0011}])
def test_bar_value_labels_stay_inside_the_frame(values):
    import matplotlib.pyplot as plt
    fig = bar_chart("throughput_img_s", values, cpu=False)
    try:
        assert _inside(fig, fig.axes[0]) == []
        assert len(fig.axes[0].texts) == len(values)
    finally:
        plt.close(fig)


@pytest.mark.parametrize("metric, corner", [("latency_s_p50", "left"), ("throughput_img_s", "right")])
def test_tradeoff_scatter_marks_the_better_corner_and_keeps_names_inside(metric, corner):
    import matplotlib.pyplot as plt
    points = {"fp16": (1.64, 6.3), "int8": (0.99, 6.1), "int8_vit": (1.28, 6.3), "int4": (1.64, 5.0)}
    fig = tradeoff_scatter(metric, points, cpu=False)
    try:
        ax = fig.axes[0]
        assert _inside(fig, ax) == []
        better = next(t for t in ax.texts if "better" in t.get_text())
        x, y = better.get_position()
        assert (x, y) == better_corner(higher_x_better=corner == "right")
        assert (x < 0.5) == (corner == "left") and y > 0.9
    finally:
        plt.close(fig)


def test_a_variant_with_a_quality_warning_is_a_labelled_cross_on_the_scatters():
    """A trial saw nf4 drawn like any point while report.html left it out of every front for its CPU 4-bit defect."""
    import matplotlib.pyplot as plt
    points = {"fp16": (1.64, 6.3), "nf4": (0.69, 0.32)}
    fig = tradeoff_scatter("model_size_mb", points, cpu=False, warned=frozenset({"nf4"}))
    try:
        ax = fig.axes[0]
        labels = {t.get_text() for t in ax.texts}
        assert "nf4 (quality warning)" in labels and "fp16" in labels
        markers = [c.get_paths()[0].vertices.shape[0] for c in ax.collections]
        assert markers[0] != markers[1]  # a circle and a cross are different paths
    finally:
        plt.close(fig)
