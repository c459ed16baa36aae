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


def _warn_running_chunks(results_dir: Path) -> None:
    """Shards still at work hold claims: the summary made now lacks their chunks; say so."""
    from vlmbench.claims import live_claims
    running = live_claims(results_dir)
    if running:
        print(f"vlmbench-report: {len(running)} chunk(s) are being computed right now ({', '.join(running[:3])}"
              f"{' ...' if len(running) > 3 else ''}); this summary lacks them: run vlmbench-report again when the "
              "shards have ended", file=sys.stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="vlmbench-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--config", type=Path, help="experiment YAML (default: newest snapshot in the folder)")
    parser.add_argument("--baseline", help="summary JSON to gate against")
    parser.add_argument("--tokenizer", choices=("auto", "ptb-java", "nltk-treebank"), default="auto")
    args = parser.parse_args(argv)
    try:
        snapshot = args.config or newest_snapshot(args.results_dir)
        cfg = load_config(snapshot)
        if not (args.results_dir / "references.json").is_file():
            raise ConfigError(f"{args.results_dir}/references.json is missing; rerun pytest benchmarks once to write it.")
        _warn_running_chunks(args.results_dir)
        _, verdict = report(args.results_dir, cfg, snapshot.stat().st_mtime, args.baseline, args.tokenizer)
    except ConfigError as exc:
        print(f"vlmbench-report: {exc}", file=sys.stderr)
        return 2
    print(verdict.text)
    return 1 if verdict.failed else 0


if __name__ == "__main__":
    sys.exit(main())
