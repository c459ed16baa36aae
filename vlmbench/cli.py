"""`vlmbench-report`: rebuild the summary, plots, report.html and verdict from a results folder, no GPU needed.

Why it exists: GPU boxes often lack Java (for the official tokenizer) or are gone by the time
someone asks a question; the results folder holds everything needed to score again (chunk CSVs,
variant records, references.json, config snapshots).

    vlmbench-report results/ [--baseline results/summary_X.json] [--config results/experiment_config_X.yaml]
                             [--allow-difference inference.micro_batch_size ...] [--no-folder-lock]

Whatever goes wrong while tokenizing or scoring, the summary, table and plots are written (CIDEr
null with the reason, or the Java-free tokenizer with the reason recorded); a config problem exits 2
with the message, a failed regression gate exits 1.

The report holds the folder lock (`.vlmbench.lock`, exclusive, holder `vlmbench-report`) while it
reads and writes: while a run (or a shard) holds the folder, the report exits 2 with one line naming
the holder, and touches nothing; a run started during a report is refused the same way. On a file
system without flock it exits 2 naming the way through; `--no-folder-lock` then reports unlocked.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from vlmbench.config import ConfigError, load_config
from vlmbench.results.report import report


def newest_snapshot(results_dir: Path) -> Path:
    """The newest readable config snapshot. A damaged one (empty, not YAML, not a file) is skipped and named on
    stderr, never read as an empty config (which would be the packaged default experiment)."""
    from vlmbench.results.records import readable_snapshots
    snapshots, damaged = readable_snapshots(results_dir)
    for line in damaged:
        print(f"vlmbench-report: skipped a damaged config snapshot: {line}", file=sys.stderr)
    if not snapshots:
        what = f"no readable experiment_config_*.yaml ({'; '.join(damaged[:3])})" if damaged else \
            "no experiment_config_*.yaml"
        raise ConfigError(f"{results_dir} holds {what}; pass --config with the experiment YAML.")
    return snapshots[0][0]


def allow_differences(cfg, fields: list[str]):
    """`cfg` whose gate also allows `fields` to differ from the baseline (validated like the config key)."""
    if not fields:
        return cfg
    allowed = tuple(dict.fromkeys([*cfg.thresholds.allow_differences, *fields]))
    return cfg.replace(thresholds=dataclasses.replace(cfg.thresholds, allow_differences=allowed))


def engine_as_run(cfg, results_dir: Path):
    """`inference.engine: auto` resolved as the run in `results_dir` resolved it (its snapshots' fingerprints
    say which), else as this machine would; a named engine is kept."""
    if cfg.inference.engine != "auto":
        return cfg
    from vlmbench.results.records import snapshots_by_fingerprint
    recorded = snapshots_by_fingerprint(results_dir)  # unreadable snapshots are skipped there
    for resolved in (cfg.with_engine("cuda"), cfg.with_engine("cpu")):
        if resolved.fingerprint in recorded:
            return resolved
    import torch
    return cfg.with_engine("cuda" if torch.cuda.is_available() else "cpu")


def _warn_running_chunks(results_dir: Path) -> None:
    """Shards still at work hold claims: the summary made now lacks their chunks; say so."""
    from vlmbench.results.claims import live_claims
    running = live_claims(results_dir)
    if running:
        print(f"vlmbench-report: {len(running)} chunk(s) are being computed right now ({', '.join(running[:3])}"
              f"{' ...' if len(running) > 3 else ''}); this summary lacks them: run vlmbench-report again when the "
              "shards have ended", file=sys.stderr)


def identity_as_run(cfg):
    """A YAML passed with --config lacks model.identity, which a run adds to its fingerprint: compute it
    as the run did (snapshots already hold it). Offline without the Hub commit cached, it stays null."""
    if cfg.model.identity is not None:
        return cfg
    from vlmbench.models.loading import with_model_identity
    try:
        return with_model_identity(cfg)
    except ConfigError:
        return cfg


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="vlmbench-report", description=__doc__.split("\n\n")[0])
    parser.add_argument("results_dir", type=Path, help="a results folder written by pytest benchmarks")
    parser.add_argument("--config", type=Path, help="experiment YAML (default: newest snapshot in the folder)")
    parser.add_argument("--baseline", help="summary JSON to gate against")
    parser.add_argument("--tokenizer", choices=("auto", "ptb-java", "ptb-python", "nltk-treebank"), default="auto",
                        help="PTB tokenizer for CIDEr-D: ptb-java (the official jar, needs java), ptb-python "
                             "(identical output, no Java; nltk-treebank is its old name), auto (java when it "
                             "works, else ptb-python; the one used is recorded)")
    parser.add_argument("--allow-difference", action="append", default=[], metavar="FIELD",
                        help="a result field in which the baseline may differ (adds to thresholds.allow_differences; "
                             "repeatable), e.g. inference.micro_batch_size")
    parser.add_argument("--no-folder-lock", action="store_true",
                        help="do not lock the results folder (for file systems without flock, e.g. Lustre without "
                             "-o flock); only safe while no run or shard is writing the folder")
    args = parser.parse_args(argv)
    from vlmbench.offline import apply_offline_switch
    apply_offline_switch()  # VLMBENCH_OFFLINE=1: no Hub call either (the config's model identity, the parquet)
    try:
        if not args.results_dir.is_dir():
            raise ConfigError(f"{args.results_dir} is not a folder; pass the results folder of a run "
                              "(its --vlm-results, or results_dir in the config)")
        snapshot = args.config or newest_snapshot(args.results_dir)
        cfg = allow_differences(engine_as_run(identity_as_run(load_config(snapshot)), args.results_dir),
                                args.allow_difference)  # identity first: the recorded fingerprints hold it
        if not (args.results_dir / "references.json").is_file():
            raise ConfigError(f"{args.results_dir}/references.json is missing; rerun pytest benchmarks once to write it.")
        verdict = report_locked(args.results_dir, cfg, snapshot.stat().st_mtime, args.baseline, args.tokenizer,
                                locking=not args.no_folder_lock)
    except ConfigError as exc:
        print(f"vlmbench-report: {exc}", file=sys.stderr)
        return 2
    except (ValueError, KeyError) as exc:  # a CSV no run has checked (copied in by hand, edited)
        print(f"vlmbench-report: a file in {args.results_dir} cannot be read ({type(exc).__name__}: {exc}); run "
              "pytest benchmarks on the folder once: damaged CSVs are moved aside and recomputed", file=sys.stderr)
        return 2
    print(verdict.text)
    return 1 if verdict.failed else 0


def report_locked(results_dir: Path, cfg, started_at: float, baseline, tokenizer: str, locking: bool = True):
    """The report, made while holding the folder lock (none with `locking` False: --no-folder-lock); ConfigError
    (one line) when a run holds it, or when the file system cannot lock (with the way through)."""
    from vlmbench.results.lock import REPORT, FolderBusy, FolderUnusable, folder_lock
    try:
        lock = folder_lock(results_dir, cfg.fingerprint, command=REPORT, locking=locking).acquire()
    except (FolderBusy, FolderUnusable) as exc:
        raise ConfigError(str(exc)) from None
    for note in lock.notes:
        print(f"vlmbench-report: note: {note}", file=sys.stderr)
    try:
        _warn_running_chunks(results_dir)
        return report(results_dir, cfg, started_at, baseline, tokenizer)[1]
    finally:
        lock.release()


if __name__ == "__main__":
    sys.exit(main())
