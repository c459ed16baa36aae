"""Turning a summary into what people read: the JSON file, plots, a markdown table, a verdict.

Why it exists: the end of a run (the pytest session-finish hook or `vlmbench-report`) does the same
four things; they live here, apart from how the numbers were made. Plots use matplotlib's headless
Agg backend.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from vlmbench.config import ExperimentConfig, Thresholds
from vlmbench.paths import atomic_write_bytes, atomic_write_text
from vlmbench.records import timestamp, unique_path, write_json
from vlmbench.summary import build_summary

# metric key -> (axis label, higher is better)
PLOTTED = {"cider": ("CIDEr-D", True), "latency_s_p50": ("latency p50 (s / image)", False),
           "throughput_img_s": ("throughput (images / s)", True), "peak_vram_mib": ("peak VRAM (MiB)", False),
           "model_size_mb": ("model size on disk (MB)", False),
           "energy_j_per_image": ("energy (J / image)", False), "avg_power_w": ("average power (W)", False)}
TRADE_OFFS = ("latency_s_p50", "peak_vram_mib", "model_size_mb", "energy_j_per_image")
# threshold field -> (summary metric, direction, kind): direction +1 = an increase is bad
GATES = {"cider_drop_abs": ("cider", -1, "abs"), "cider_drop_pct": ("cider", -1, "pct"),
         "latency_increase_pct": ("latency_s_mean", +1, "pct"), "throughput_drop_pct": ("throughput_img_s", -1, "pct"),
         "peak_vram_increase_pct": ("peak_vram_mib", +1, "pct"), "energy_increase_pct": ("energy_j_per_image", +1, "pct")}
DATASET_IDENTITY = ("hf_parquet_prefix", "split_file", "parquet_path", "coco_dir", "synthetic_images", "limit",
                    "shuffle")


@dataclass
class Verdict:
    text: str
    failed: bool = False
    breaches: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- table
def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _census_cell(census: Optional[dict]) -> str:
    if not census:
        return "n/a"
    return " ".join(f"{c}:{e['int8']}/{e['linear']}" for c, e in census.items() if c != "other")


def table_caption(summary: dict) -> str:
    """What the table's numbers were measured on, so that the table can be read on its own."""
    scoring = summary.get("cider_scoring") or {}
    devices = sorted({v.get("device_name") or "?" for v in summary["variants"].values()})
    micro = (summary.get("config") or {}).get("inference", {}).get("micro_batch_size")
    return (f"{summary.get('experiment_name', '?')} on {', '.join(devices)}: CIDEr-D on the "
            f"{scoring.get('common_images', '?')} images every variant captioned ({scoring.get('tokenizer') or 'not scored'}"
            f" tokenizer); latency = one image alone; throughput at micro-batch {micro}, loading included")


def markdown_table(summary: dict) -> str:
    head = ("| variant | CIDEr | latency p50 (s) | throughput (img/s) | peak VRAM (MiB) | size (MB) | energy (J/img) "
            "| power (W) | images ok/failed | int8 Linear layers |")
    lines = [table_caption(summary), "", head, "|" + "---|" * 10]
    for name, v in summary["variants"].items():
        lines.append(f"| {name} | {_fmt(v.get('cider'))} | {_fmt(v.get('latency_s_p50'))} | "
                     f"{_fmt(v.get('throughput_img_s'))} | {_fmt(v.get('peak_vram_mib'), 5)} | "
                     f"{_fmt(v.get('model_size_mb'), 5)} | {_fmt(v.get('energy_j_per_image'))} | "
                     f"{_fmt(v.get('avg_power_w'))} | {v['images_captioned']}/{v['images_failed']} | "
                     f"{_census_cell(v.get('census'))} |")
    missing = sorted({f"{k.removesuffix('_null_reason')}: {r}" for v in summary["variants"].values()
                      for k, r in v.items() if k.endswith("_null_reason") and r})
    if missing:
        lines.append("")
        lines += [f"n/a {m}" for m in missing]
    return "\n".join(lines)


# ---------------------------------------------------------------- plots
def write_plots(summary: dict, plot_dir: Path, unwritten: Optional[list[str]] = None) -> list[str]:
    """Bar charts per metric and CIDEr trade-off scatters; returns the files written.

    With `unwritten` given, a plot that cannot be written (disk full) is noted there and the others
    are still tried; without it, the first failure raises WriteFailed.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = summary["variants"]
    written = []
    for metric, (label, higher_better) in PLOTTED.items():
        points = {n: v.get(metric) for n, v in variants.items() if v.get(metric) is not None}
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        bars = ax.bar(list(points), list(points.values()), color="#4C72B0")
        ax.bar_label(bars, fmt="%.4g")
        ax.set_ylabel(label)
        ax.set_title(f"{label} by variant ({'higher' if higher_better else 'lower'} is better)")
        written.append(_save(fig, plot_dir / f"{metric}.png", unwritten))
    for metric in TRADE_OFFS:
        points = {n: (v.get(metric), v.get("cider")) for n, v in variants.items()
                  if v.get(metric) is not None and v.get("cider") is not None}
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for name, (x, y) in points.items():
            ax.scatter([x], [y], s=60)
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 5))
        ax.set_xlabel(PLOTTED[metric][0])
        ax.set_ylabel("CIDEr-D")
        ax.set_title(f"CIDEr-D vs {PLOTTED[metric][0]}")
        written.append(_save(fig, plot_dir / f"tradeoff_cider_vs_{metric}.png", unwritten))
    return [name for name in written if name]


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


# ---------------------------------------------------------------- regression gate
class BaselineMismatch(ValueError):
    """The baseline summary is from another model or dataset."""


def check_baseline_compatible(summary: dict, baseline: dict) -> None:
    if summary.get("model_id") != baseline.get("model_id"):
        raise BaselineMismatch(f"baseline is for model {baseline.get('model_id')!r}, this run is for "
                               f"{summary.get('model_id')!r}; pass a baseline summary of the same model.")
    ours, theirs = summary["config"]["dataset"], baseline.get("config", {}).get("dataset", {})
    diff = [f"{k}: {theirs.get(k)!r} -> {ours.get(k)!r}" for k in DATASET_IDENTITY if ours.get(k) != theirs.get(k)]
    if diff:
        raise BaselineMismatch("baseline was made on a different dataset (" + "; ".join(diff) + "); CIDEr and "
                               "per-image costs are not comparable. Pass a baseline of the same dataset and limit.")


def _thresholds_for(cfg: ExperimentConfig, variant: str) -> Thresholds:
    return cfg.thresholds.per_variant.get(variant, cfg.thresholds.default)


def breaches(summary: dict, baseline: dict, cfg: ExperimentConfig) -> list[str]:
    """One line per breached threshold: metric, value, baseline value, threshold."""
    found = []
    for name, entry in summary["variants"].items():
        base = baseline.get("variants", {}).get(name)
        if base is None:
            continue
        limits = _thresholds_for(cfg, name)
        for f in fields(Thresholds):
            limit = getattr(limits, f.name)
            metric, direction, kind = GATES[f.name]
            now, before = entry.get(metric), base.get(metric)
            if limit is None or now is None or before is None:
                continue
            change = (now - before) * direction
            amount = change if kind == "abs" else (change / before * 100 if before else 0.0)
            if amount > limit:
                found.append(f"{name}: {metric} = {now:.4g} vs baseline {before:.4g} ({'+' if direction > 0 else '-'}"
                             f"{amount:.3g}{'%' if kind == 'pct' else ''}), threshold {f.name} = {limit}")
    return found


def gate(summary: dict, baseline_path: Optional[str], cfg: ExperimentConfig) -> Verdict:
    if not baseline_path:
        return Verdict("no baseline given (--vlm-baseline): regression gate not applied")
    try:
        baseline = json.loads(Path(baseline_path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return Verdict(f"baseline {baseline_path!r} unreadable: {exc}. Pass a summary_*.json file.", failed=True)
    try:
        check_baseline_compatible(summary, baseline)
    except BaselineMismatch as exc:
        return Verdict(f"baseline refused: {exc}", failed=True)
    found = breaches(summary, baseline, cfg)
    if found:
        return Verdict("regression gate FAILED:\n" + "\n".join(f"  - {b}" for b in found), True, found)
    return Verdict(f"regression gate passed against {baseline_path}")


# ---------------------------------------------------------------- the end of a run
def load_references(results_dir: Path) -> dict[int, list[str]]:
    path = results_dir / "references.json"
    return {int(k): v for k, v in json.loads(path.read_text()).items()}


def write_references(results_dir: Path, rows) -> None:
    write_json(results_dir / "references.json", {str(r.image_id): list(r.captions) for r in rows})


def report(results_dir: Path, cfg: ExperimentConfig, started_at: float, baseline: Optional[str],
           tokenizer: str = "auto") -> tuple[dict, Verdict]:
    """Builds the summary, then writes what it can, each file atomically: the summary JSON first, the
    markdown table, then the plots. A file that cannot be written (disk full) is named in the verdict,
    and the rest is still written; the summary is rewritten with the list of plots at the end."""
    summary = build_summary(results_dir, cfg, load_references(results_dir), started_at, tokenizer)
    summary["plots"] = []
    verdict = gate(summary, baseline, cfg)
    summary["regression_gate"] = {"baseline": baseline, "failed": verdict.failed, "breaches": verdict.breaches}
    unwritten: list[str] = []
    path = _try_write(unwritten, lambda: _write_summary(results_dir, summary))
    table = markdown_table(summary) if summary["variants"] else "no variant has finished chunks yet"
    _try_write(unwritten, lambda: atomic_write_text(results_dir / "summary_latest.md", table + "\n"))
    if summary["variants"]:
        summary["plots"] = write_plots(summary, results_dir / "plots", unwritten)
        if path is not None and summary["plots"]:
            _try_write(unwritten, lambda: write_json(path, summary))
    lines = [table, "", *completeness_lines(summary), *ignored_lines(results_dir, cfg),
             f"summary: {path if path is not None else 'NOT WRITTEN'}"]
    if unwritten:
        lines += [f"could not write: {u}" for u in unwritten]
        lines.append(f"finished chunks are kept; free space and run vlmbench-report {results_dir} to write the rest")
        verdict.failed = True
    verdict.text = "\n".join(lines + [verdict.text])
    return summary, verdict


def _write_summary(results_dir: Path, summary: dict) -> Path:
    stamp = timestamp()
    path = unique_path(results_dir, "summary_", stamp, ".json")
    try:
        write_json(path, summary)
    except OSError:
        path.unlink(missing_ok=True)  # the empty name reserved for it
        raise
    return path


def _try_write(unwritten: list[str], write):
    """Runs one write; a failure (disk full, read-only) is noted in `unwritten`, never raised."""
    try:
        return write()
    except OSError as exc:
        unwritten.append(str(exc))
        return None


def completeness_lines(summary: dict) -> list[str]:
    """What the summary lacks, printed (not only stored in the JSON): missing chunks and variants."""
    lines = [f"{name}: chunks {entry['missing_chunks']} missing ({entry['chunks_done']} of "
             f"{entry['chunks_expected']} done)" for name, entry in summary["variants"].items() if entry["missing_chunks"]]
    if summary.get("variants_not_run"):
        lines.append(f"variants with no finished chunk: {', '.join(summary['variants_not_run'])}")
    return lines


def ignored_lines(results_dir: Path, cfg: ExperimentConfig) -> list[str]:
    """Chunk CSVs in the folder that this report did not use (another experiment or variant), and how to report them."""
    from vlmbench.records import ignored_chunk_csvs, snapshots_by_fingerprint
    ignored = ignored_chunk_csvs(results_dir, cfg)
    if not ignored:
        return []
    snapshots = snapshots_by_fingerprint(results_dir)
    lines = []
    for fingerprint, names in sorted(ignored.items()):
        snapshot = snapshots.get(fingerprint)
        how = (f"report them with: vlmbench-report {results_dir} --config {snapshot}" if snapshot else
               "no config snapshot of that experiment is in the folder: pass its YAML with --config")
        lines.append(f"ignored {len(names)} CSV(s) of experiment {fingerprint} ({', '.join(sorted(names)[:5])}"
                     f"{', ...' if len(names) > 5 else ''}); {how}")
    return lines


def finish_run(session, baseline: Optional[str]) -> Verdict:
    """The session-finish report; never raises: what could not be done is the verdict's text."""
    try:
        return report(session.results_dir, session.cfg, session.started_at, baseline)[1]
    except Exception as exc:  # the run's CSVs are written already: report the failure in one line, lose nothing
        return Verdict(f"the end-of-run report failed: {type(exc).__name__}: {exc}. Finished chunks are kept; "
                       f"rebuild the summary with: vlmbench-report {session.results_dir}", failed=True)
