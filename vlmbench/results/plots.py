"""The PNG plots of a summary: a bar chart per metric, CIDEr-D trade-off scatters, the intervals.

Why it exists: the plots are what gets pasted into slides, so each must say on its own what it shows:
which way is better (a "better" corner on every trade-off scatter), value labels inside the frame, and
on a CPU run the timing plots (latency, throughput) stamped "CPU timing: not a measurement" inside the
image (timings on shared CPU cores change several-fold between identical runs). matplotlib's headless
Agg backend; every file is rendered in memory and written atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from vlmbench.paths import atomic_write_bytes

# metric key -> (axis label, higher is better)
PLOTTED = {"cider": ("CIDEr-D", True), "latency_s_p50": ("latency p50 (s / image)", False),
           "throughput_img_s": ("throughput (images / s)", True), "peak_vram_mib": ("peak VRAM (MiB)", False),
           "model_size_mb": ("model size on disk (MB)", False),
           "energy_j_per_image": ("energy (J / image)", False), "avg_power_w": ("average power (W)", False)}
TRADE_OFFS = ("throughput_img_s", "latency_s_p50", "peak_vram_mib", "model_size_mb", "energy_j_per_image")
TIMING = ("latency_s_p50", "throughput_img_s")  # stamped on a CPU run
CPU_STAMP = "CPU timing: not a measurement"
STAMP_COLOUR = "#C0392B"
HEADROOM = 0.18  # share of the data range left free beyond the outermost point, so labels stay inside the frame


def timed_on_cpu(summary: dict) -> bool:
    """Whether any variant of the summary ran on a CPU (its timings are then not measurements)."""
    return any(v.get("device_name") == "cpu" for v in summary["variants"].values())


def write_plots(summary: dict, plot_dir: Path, unwritten: Optional[list[str]] = None) -> list[str]:
    """Bar charts per metric and CIDEr-D trade-off scatters; returns the files written.

    With `unwritten` given, a plot that cannot be written (disk full) is noted there and the others
    are still tried; without it, the first failure raises WriteFailed.
    """
    import matplotlib
    matplotlib.use("Agg")

    variants, cpu = summary["variants"], timed_on_cpu(summary)
    written = []
    for metric in PLOTTED:
        points = {n: v.get(metric) for n, v in variants.items() if v.get(metric) is not None}
        if points:
            written.append(_save(bar_chart(metric, points, cpu), plot_dir / f"{metric}.png", unwritten))
    for metric in TRADE_OFFS:
        points = {n: (v.get(metric), v.get("cider")) for n, v in variants.items()
                  if v.get(metric) is not None and v.get("cider") is not None}
        if points:
            scatter = tradeoff_scatter(metric, points, cpu, warned_variants(variants))
            written.append(_save(scatter, plot_dir / f"tradeoff_cider_vs_{metric}.png", unwritten))
    written += write_interval_plot(summary, plot_dir, unwritten)
    return [name for name in written if name]


def bar_chart(metric: str, points: dict[str, float], cpu: bool):
    """The figure of one metric per variant (`points`: variant -> value), value labels inside the frame."""
    import matplotlib.pyplot as plt
    label, higher_better = PLOTTED[metric]
    fig, ax = plt.subplots(figsize=(6, 4))
    bars = ax.bar(list(points), list(points.values()), color="#4C72B0")
    ax.bar_label(bars, fmt="%.4g", padding=2)
    low, high = min(0.0, *points.values()), max(0.0, *points.values())
    span = (high - low) or 1.0
    ax.set_ylim(low - (HEADROOM * span if low < 0 else 0), high + HEADROOM * span)
    ax.set_ylabel(label)
    ax.set_title(f"{label} by variant ({'higher' if higher_better else 'lower'} is better)")
    if cpu and metric in TIMING:
        stamp_cpu_timing(fig)
    return fig


def warned_variants(variants: dict) -> set[str]:
    """The variants whose record carries a quality_warning (their CIDEr-D does not measure their method)."""
    return {name for name, v in variants.items() if isinstance(v.get("quality_warning"), dict)}


def tradeoff_scatter(metric: str, points: dict[str, tuple[float, float]], cpu: bool, warned: frozenset = frozenset()):
    """CIDEr-D (y) against one cost (x) per variant, the better corner marked, labels inside the frame; a variant in
    `warned` is drawn as a cross and labelled '(quality warning)', as report.html leaves it out of the fronts."""
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    rank = {name: k for k, name in enumerate(sorted(points, key=points.get))}
    for name, (x, y) in points.items():  # in variant order: a variant keeps its colour in every scatter
        ax.scatter([x], [y], s=60, marker="x" if name in warned else "o")
        label = f"{name} (quality warning)" if name in warned else name  # neighbours along x: above and below
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6 if rank[name] % 2 == 0 else -14))
    _pad_limits(ax, [x for x, _ in points.values()], [y for _, y in points.values()])
    mark_better_corner(ax, higher_x_better=PLOTTED[metric][1])
    ax.set_xlabel(PLOTTED[metric][0])
    ax.set_ylabel("CIDEr-D")
    ax.set_title(f"CIDEr-D vs {PLOTTED[metric][0]}")
    if cpu and metric in TIMING:
        stamp_cpu_timing(fig)
    return fig


def _pad_limits(ax, xs: list[float], ys: list[float]) -> None:
    """Axis limits with HEADROOM beyond the outermost points (more on the right, for the names)."""
    for values, setter, right_extra in ((xs, ax.set_xlim, 2.0), (ys, ax.set_ylim, 1.0)):
        low, high = min(values), max(values)
        span = (high - low) or (abs(high) or 1.0)
        setter(low - HEADROOM * span, high + right_extra * HEADROOM * span)


def better_corner(higher_x_better: bool) -> tuple[float, float]:
    """The corner where better variants lie, in axes fractions: CIDEr-D up; the cost left unless higher is better."""
    return (0.97 if higher_x_better else 0.03), 0.97


def mark_better_corner(ax, higher_x_better: bool) -> None:
    """'better' with an arrow into the better corner of a trade-off scatter, inside the free margin
    that _pad_limits leaves, so it covers no point."""
    x, y = better_corner(higher_x_better)
    text = "better \u2197" if higher_x_better else "\u2196 better"
    ax.text(x, y, text, transform=ax.transAxes, ha="right" if higher_x_better else "left", va="top",
            color="#137333", fontweight="bold", fontsize=10)


def stamp_cpu_timing(fig) -> None:
    """Writes CPU_STAMP across the figure: a timing plot of a CPU run must not pass for a measurement."""
    fig.text(0.5, 0.5, CPU_STAMP, ha="center", va="center", rotation=20, fontsize=20, fontweight="bold",
             color=STAMP_COLOUR, alpha=0.45, zorder=10)


def plots_not_drawn(summary: dict) -> dict[str, str]:
    """Plot file -> why write_plots draws it not: no variant has the metric (or, for a trade-off, the
    metric and CIDEr-D together); the reason is the first variant's null reason."""
    variants = summary["variants"]
    missing = {}
    for metric in PLOTTED:
        if all(v.get(metric) is None for v in variants.values()):
            missing[f"{metric}.png"] = _why_null(variants, metric)
    for metric in TRADE_OFFS:
        if all(v.get(metric) is None or v.get("cider") is None for v in variants.values()):
            lacking = metric if all(v.get(metric) is None for v in variants.values()) else "cider"
            missing[f"tradeoff_cider_vs_{metric}.png"] = _why_null(variants, lacking)
    return missing


def _why_null(variants: dict, metric: str) -> str:
    reasons = [v.get(f"{metric}_null_reason") for v in variants.values() if v.get(f"{metric}_null_reason")]
    return f"{metric} is null for every variant" + (f": {reasons[0]}" if reasons else "")


def write_interval_plot(summary: dict, plot_dir: Path, unwritten: Optional[list[str]] = None) -> list[str]:
    """CIDEr-D per variant and its paired delta against the baseline, both with bootstrap intervals."""
    import matplotlib.pyplot as plt

    cis = {n: v["cider_ci"] for n, v in summary["variants"].items() if v.get("cider_ci")}
    if not cis:
        return []
    deltas = {n: v["cider_delta_ci"] for n, v in summary["variants"].items() if v.get("cider_delta_ci")}
    base = (summary.get("quality") or {}).get("baseline", "fp16")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, points, title in ((axes[0], cis, "CIDEr-D"), (axes[1], deltas, f"CIDEr-D minus {base} (paired)")):
        names = list(points)
        ax.errorbar(range(len(names)), [points[n]["point"] for n in names], fmt="o", capsize=6,
                    yerr=[[points[n]["point"] - points[n]["low"] for n in names],
                          [points[n]["high"] - points[n]["point"] for n in names]])
        ax.set_xticks(range(len(names)), names)
        ax.set_xlim(-0.5, max(len(names), 1) - 0.5)  # an empty panel (no deltas) keeps a valid range
        ax.set_ylabel("CIDEr-D")
        ax.set_title(f"{title}, {int(round(100 * next(iter(cis.values()))['confidence']))}% bootstrap CI")
    axes[1].axhline(0, color="grey", linewidth=1)
    return [_save(fig, plot_dir / "cider_intervals.png", unwritten)]


def _save(fig, path: Path, unwritten: Optional[list[str]] = None) -> Optional[str]:
    """Renders into memory, then writes atomically (no half-written PNG, even on a full disk)."""
    import io

    import matplotlib.pyplot as plt
    try:
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120)
    finally:
        plt.close(fig)
    try:
        atomic_write_bytes(path, buffer.getvalue())
    except OSError as exc:
        if unwritten is None:
            raise
        unwritten.append(str(exc))
        return None
    return path.name


