"""Short markdown tables for scripts/gpu_benchmark.sh: runs, stock-vs-fast speed-up, repeat spread.

Why it exists: the GPU script's parts each end in a few summary JSONs; the reader of the device's
output wants one small table per part (speed-up per variant, the coefficient of variation of three
repeats, the sweep time projected from measured rates) without opening files.

    python3 -m vlmbench.results.perf_table runs|compare|repeat|vision|methods OUTDIR RUN [RUN ...]

`vision` takes four runs: stock, fast with the vision tower eager, fast compiled, fast compiled again
(a second process on the compile cache the third left).

RUN is a results folder under OUTDIR holding a summary_*.json; a missing one is reported, not fatal.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Optional

SEED_SWEEP_IMAGES = 5000  # per variant: the seed experiment's dataset.limit


def latest_summary(folder: Path) -> Optional[dict]:
    """The newest readable summary_*.json in `folder`, or None; a damaged one (empty, not JSON, not a file) is
    skipped and named on stderr."""
    from vlmbench.results.records import newest_first
    for path in newest_first(Path(folder).glob("summary_*.json")):  # summary_<stamp>_10 is newer than _2
        summary = _read_summary(path)
        if summary is not None:
            return summary
    return None


def _read_summary(path: Path) -> Optional[dict]:
    """The summary in `path`, or None with a line on stderr saying why it was skipped."""
    from vlmbench.paths import read_regular_text
    try:
        text = read_regular_text(path)
        summary = json.loads(text) if text.strip() else "empty"
    except (OSError, ValueError) as exc:  # ValueError: not JSON, not UTF-8, not a regular file
        summary = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
    if isinstance(summary, dict) and isinstance(summary.get("variants"), dict):
        return summary
    why = summary if isinstance(summary, str) else "not a summary (no variants)"
    print(f"perf_table: skipped damaged summary {path} ({why})", file=sys.stderr)
    return None


def coefficient_of_variation(values: list[Optional[float]]) -> Optional[float]:
    """Sample standard deviation over mean (a fraction); None with fewer than 2 known values or mean 0."""
    known = [v for v in values if v is not None]
    if len(known) < 2 or statistics.fmean(known) == 0:
        return None
    return statistics.stdev(known) / statistics.fmean(known)


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def fmt(value, digits: int = 2, suffix: str = "") -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{suffix}"


def pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def runs_table(summaries: dict[str, Optional[dict]]) -> str:
    """Per run and variant: engine, micro-batch, img/s, batch-1 p50, idle share, peak MiB, projected sweep."""
    lines = ["| run | variant | engine | micro-batch | img/s | latency p50 (s) | idle share | peak MiB | "
             f"{SEED_SWEEP_IMAGES} images (min) |", "|---|---|---|---|---|---|---|---|---|"]
    total = 0.0
    for run, summary in summaries.items():
        for name, v in (summary or {}).get("variants", {}).items():
            engine = (v.get("engine") or {}).get("engine", "?")
            minutes = ratio(SEED_SWEEP_IMAGES, v.get("throughput_img_s"))
            total += (minutes or 0) / 60
            lines.append(f"| {run} | {name} | {engine} | {v.get('micro_batch_size', '?')} | "
                         f"{fmt(v.get('throughput_img_s'))} | {fmt(v.get('latency_s_p50'), 3)} | "
                         f"{pct(v.get('idle_share'))} | {fmt(v.get('peak_vram_mib'), 0)} | {fmt(ratio(minutes, 60), 1)} |")
        if summary is None:
            lines.append(f"| {run} | (no summary) | | | | | | | |")
    lines.append(f"\nprojected sweep ({SEED_SWEEP_IMAGES} images x each variant above, at the measured rates, no "
                 f"loading or compilation): {total:.1f} min")
    return "\n".join(lines)


def compare_table(stock: Optional[dict], fast: Optional[dict]) -> str:
    """Per variant: stock and fast throughput and batch-1 latency p50, their ratios, idle shares."""
    lines = ["| variant | stock img/s | fast img/s | speed-up | stock p50 (s) | fast p50 (s) | latency ratio | "
             "idle stock / fast |", "|---|---|---|---|---|---|---|---|"]
    s_vars, f_vars = (stock or {}).get("variants", {}), (fast or {}).get("variants", {})
    for name in list(dict.fromkeys([*s_vars, *f_vars])):
        s, f = s_vars.get(name, {}), f_vars.get(name, {})
        lines.append(f"| {name} | {fmt(s.get('throughput_img_s'))} | {fmt(f.get('throughput_img_s'))} | "
                     f"{fmt(ratio(f.get('throughput_img_s'), s.get('throughput_img_s')), 2, 'x')} | "
                     f"{fmt(s.get('latency_s_p50'), 3)} | {fmt(f.get('latency_s_p50'), 3)} | "
                     f"{fmt(ratio(s.get('latency_s_p50'), f.get('latency_s_p50')), 2, 'x')} | "
                     f"{pct(s.get('idle_share'))} / {pct(f.get('idle_share'))} |")
    return "\n".join(lines)


def repeat_table(summaries: list[Optional[dict]]) -> str:
    """Per variant over the repeats: throughput and batch-1 latency p50 values and their coefficient of variation."""
    lines = ["| variant | img/s per run | CV img/s | latency p50 per run (s) | CV p50 |", "|---|---|---|---|---|"]
    names = list(dict.fromkeys(n for s in summaries for n in (s or {}).get("variants", {})))
    for name in names:
        runs = [(s or {}).get("variants", {}).get(name, {}) for s in summaries]
        rates = [r.get("throughput_img_s") for r in runs]
        p50s = [r.get("latency_s_p50") for r in runs]
        lines.append(f"| {name} | {', '.join(fmt(x) for x in rates)} | {pct(coefficient_of_variation(rates))} | "
                     f"{', '.join(fmt(x, 3) for x in p50s)} | {pct(coefficient_of_variation(p50s))} |")
    return "\n".join(lines)


def warm_up(variant: dict) -> str:
    """'<seconds> s (<cache state>, <n> graph breaks)' from a summary's variant entry; 'n/a' without a record."""
    cache = variant.get("compile_cache") or {}
    if variant.get("warmup_s") is None:
        return "n/a"
    return f"{variant['warmup_s']:.1f} s ({cache.get('state', '?')}, {cache.get('graph_breaks', '?')} graph breaks)"


def vision_table(stock: Optional[dict], eager: Optional[dict], compiled: Optional[dict], cached: Optional[dict]) -> str:
    """Per variant: img/s of stock, fast with eager vision, fast with compiled vision; the speed-ups; the
    warm-up of the compiled run and of its cached second run (seconds, cache state, graph breaks)."""
    lines = ["| variant | stock img/s | fast, vision eager | fast, vision compiled | compiled / eager | "
             "compiled / stock | vision compiled | warm-up, first run | warm-up, cached run | cached run img/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    runs = [(r or {}).get("variants", {}) for r in (stock, eager, compiled, cached)]
    for name in list(dict.fromkeys(n for run in runs for n in run)):
        s, e, c, again = (run.get(name, {}) for run in runs)
        rate = [x.get("throughput_img_s") for x in (s, e, c, again)]
        lines.append(f"| {name} | {fmt(rate[0])} | {fmt(rate[1])} | {fmt(rate[2])} | {fmt(ratio(rate[2], rate[1]), 2, 'x')} | "
                     f"{fmt(ratio(rate[2], rate[0]), 2, 'x')} | {(c.get('engine') or {}).get('vision_compiled', 'n/a')} | "
                     f"{warm_up(c)} | {warm_up(again)} | {fmt(rate[3])} |")
    return "\n".join(lines)


def methods_table(summary: Optional[dict]) -> str:
    """Per variant of one run: img/s and its ratio to fp16's, batch-1 p50, peak MiB, size MB and its share of
    fp16's, energy J/image, warm-up s, whether decoding was compiled, and the census (issue 18's benchmarks)."""
    from vlmbench.quantize.census import census_cell, methods_cell
    variants = (summary or {}).get("variants", {})
    base_name = ((summary or {}).get("quality") or {}).get("baseline") or "fp16"  # the run's baseline variant
    base = variants.get(base_name, {})
    lines = [f"| variant | img/s | x {base_name} | latency p50 (s) | peak MiB | size MB | % of {base_name} size | J/image "
             "| warm-up (s) | decode compiled | census (method) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in variants.items():
        size_share = ratio(v.get("model_size_mb"), base.get("model_size_mb"))
        lines.append(f"| {name} | {fmt(v.get('throughput_img_s'))} | {fmt(ratio(v.get('throughput_img_s'), base.get('throughput_img_s')))} "
                     f"| {fmt(v.get('latency_s_p50'), 3)} | {fmt(v.get('peak_vram_mib'), 0)} | {fmt(v.get('model_size_mb'), 0)} "
                     f"| {pct(size_share)} | {fmt(v.get('energy_j_per_image'))} | {fmt(v.get('warmup_s'), 0)} "
                     f"| {(v.get('engine') or {}).get('decode_compiled', '?')} | {census_cell(v.get('census'))} "
                     f"({methods_cell(v.get('census'))}) |")
    return "\n".join(lines if variants else lines + ["| (no summary) | | | | | | | | | | |"])


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[0] not in ("runs", "compare", "repeat", "vision", "methods"):
        print("usage: python3 -m vlmbench.results.perf_table runs|compare|repeat|vision|methods OUTDIR RUN [RUN ...]",
              file=sys.stderr)
        return 2
    kind, out, runs = argv[0], Path(argv[1]), argv[2:]
    summaries = {run: latest_summary(out / run) for run in runs}
    if kind == "runs":
        print(runs_table(summaries))
    elif kind == "vision":
        print(f"### vision tower compiled ({', '.join(runs[:4])})\n" + vision_table(*[summaries.get(r) for r in runs[:4]]))
    elif kind == "methods":
        print(f"### quantization methods ({runs[0]})\n" + methods_table(summaries[runs[0]]))
    elif kind == "compare":
        print(f"### stock vs fast ({runs[0]} vs {runs[1]})\n" + compare_table(*[summaries[r] for r in runs[:2]]))
    else:
        print(f"### {len(runs)} repeats ({', '.join(runs)})\n" + repeat_table(list(summaries.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
