"""`vlmbench-report`: rebuild the summary, plots and verdict from a results folder, no GPU needed.

Why it exists: GPU boxes often lack Java (for the official tokenizer) or are gone by the time
someone asks a question; the results folder holds everything needed to score again (chunk CSVs,
variant records, references.json, config snapshots).

    vlmbench-report results/ [--baseline results/summary_X.json] [--config results/experiment_config_X.yaml]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vlmbench.config import ConfigError, load_config
from vlmbench.report import report


def newest_snapshot(results_dir: Path) -> Path:
    snapshots = sorted(results_dir.glob("experiment_config_*.yaml"))
    if not snapshots:
        raise ConfigError(f"{results_dir} holds no experiment_config_*.yaml; pass --config with the experiment YAML.")
    return snapshots[-1]


def engine_as_run(cfg, results_dir: Path):
    """`inference.engine: auto` resolved as the run in `results_dir` resolved it (its snapshots' fingerprints
    say which), else as this machine would; a named engine is kept."""
    if cfg.inference.engine != "auto":
        return cfg
    import yaml
    recorded = {(yaml.safe_load(p.read_text()) or {}).get("fingerprint")
                for p in results_dir.glob("experiment_config_*.yaml")}
    for device in ("cuda", "cpu"):
        if cfg.with_engine(device).fingerprint in recorded:
            return cfg.with_engine(device)
    import torch
    return cfg.with_engine("cuda" if torch.cuda.is_available() else "cpu")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="vlmbench-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--config", type=Path, help="experiment YAML (default: newest snapshot in the folder)")
    parser.add_argument("--baseline", help="summary JSON to gate against")
    parser.add_argument("--tokenizer", choices=("auto", "ptb-java", "nltk-treebank"), default="auto")
    args = parser.parse_args(argv)
    try:
        snapshot = args.config or newest_snapshot(args.results_dir)
        cfg = engine_as_run(load_config(snapshot), args.results_dir)
        if not (args.results_dir / "references.json").is_file():
            raise ConfigError(f"{args.results_dir}/references.json is missing; rerun pytest benchmarks once to write it.")
        _, verdict = report(args.results_dir, cfg, snapshot.stat().st_mtime, args.baseline, args.tokenizer)
    except ConfigError as exc:
        print(f"vlmbench-report: {exc}", file=sys.stderr)
        return 2
    print(verdict.text)
    return 1 if verdict.failed else 0


if __name__ == "__main__":
    sys.exit(main())
