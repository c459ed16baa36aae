"""The pytest plugin: options, parametrization, fixtures and the session-finish hook.

Why it exists: users run vlmbench as a pytest suite (`pytest benchmarks -k int8_vit`). This module
only wires pytest to `vlmbench.run.session` and `vlmbench.results.report`; it is registered through the
`pytest11` entry point, so `conftest.py` stays thin and the plugin is active wherever vlmbench is
installed, but does nothing unless a test asks for its fixtures.

- `vlm_variant` (session scope, one parameter per variant): the loaded model, built once and
  released before the next variant loads.
- `vlm_chunk`: one case per chunk, id `batch<N>`, so ids read `test_caption[int8_vit-batch3]`.
- A chunk whose CSV is complete is skipped before any model loads (the reason counts its failed
  rows); one whose unavailable images are back is run again; a CSV from another experiment stops
  the run; a damaged one is moved aside and recomputed.
- At session end: CIDEr-D, the summary JSON, plots, a markdown table, report.html and the regression gate;
  after a Ctrl-C (a window's SIGINT) too: the stopped case's claim is given back, and a pytest-benchmark
  benchmark it left without a round is kept out of pytest-benchmark's JSON, on which that plugin's own
  session finish crashed before this one ran.

Scale-out (`-n N` with pytest-xdist, `--vlm-shard K/N` on a cluster):
- The process that owns the run (the only process without xdist, the xdist controller with it)
  takes the folder lock, writes the snapshot and references, checks every existing CSV
  (quarantining damaged ones, refusing foreign ones) and runs the preflight, once. Under xdist the
  controller does not collect: it runs these checks when the first worker reports its collection,
  before any case is sent. Workers only read the folder to skip finished chunks.
- With a --vlm-* option, the controller resolves the model identity (model.identity: Hub commit,
  folder digest) once, as its first worker starts, and sends it to every worker in `workerinput`;
  workers then never resolve it, so the run makes one Hub lookup and has one fingerprint. Without one
  (it cannot tell `pytest benchmarks -n 2` from `pytest tests -n 2`) each worker that collects
  benchmark cases resolves it. A --vlm-shard process resolves its own.
- Each worker owns one GPU (vlmbench/run/devices.py); cases reach workers in contiguous slices
  (vlmbench/run/scheduling.py); each chunk is claimed before it runs (vlmbench/results/claims.py).
- The summary, plots, table and gate are written by the owner once, after every worker finished;
  a shard writes them only when the whole experiment is in the folder (else `vlmbench-report`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from vlmbench.config import ConfigError, load_config, parse_assignment

SESSION_KEY = pytest.StashKey["object"]()
SHARD_KEY = pytest.StashKey["object"]()
CSV_SEEN_KEY = pytest.StashKey[object]()  # a pending case's CSV signature at collection (_csv_signature)
DEVICES_KEY = pytest.StashKey[dict]()  # xdist controller: {"all": [...], "held": {worker id: device}}
CLAIM_KEY = pytest.StashKey["object"]()
EMPTY_SHARE_KEY = pytest.StashKey[int]()  # a shard whose share of the selected cases is empty: how many there were
IDENTITY_KEY = pytest.StashKey[dict]()  # xdist controller: what it sends as IDENTITY_INPUT, resolved once
DATA_ERROR_KEY = pytest.StashKey[str]()  # why the chunks could not be made (a limit above the data, ...)
END_KEY = pytest.StashKey[dict]()  # {"sections": [(title, text)], "count": label or None} for pytest_terminal_summary
IDENTITY_INPUT = "vlmbench_model_identity"  # workerinput: {"identity": str or None}, {"error": one line} or {}


@dataclass(frozen=True)
class OwnerCheck:
    """The result of the owner's checks of the results folder (`_check_folder`), kept under OWNER_CHECK_KEY.

    The owner is the process without xdist or the xdist controller; it stores this once, when every check
    passed and the run's first writes are made, so its presence means "the owner's checks ran": the
    controller runs them no second time, and only a session that holds one writes the summary at its end.
    xdist workers and runs whose checks were refused (or that selected no chunk case) never hold one.

    done: (variant, chunk id) -> skip reason, for each selected case whose CSV is already complete; the
    xdist scheduler sends out the other cases as slices. pending: the selected cases still to run.
    """
    done: dict
    pending: tuple = ()


OWNER_CHECK_KEY = pytest.StashKey[OwnerCheck]()


def pytest_addoption(parser):
    group = parser.getgroup("vlmbench", "vlmbench: quantized VLM benchmark")
    group.addoption("--vlm-config", default=None, metavar="PATH",
                    help="experiment YAML (default: the packaged seed experiment)")
    group.addoption("--vlm-results", default=None, metavar="DIR",
                    help="results folder (default: results_dir of the config, 'results')")
    group.addoption("--vlm-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config key, dotted, value read as YAML (repeatable), "
                         "e.g. --vlm-set inference.micro_batch_size=8")
    group.addoption("--vlm-baseline", default=None, metavar="PATH",
                    help="summary JSON of an earlier run: fail this run if a threshold is breached")
    group.addoption("--vlm-shard", default=None, metavar="K/N|auto",
                    help="run shard K (0-based) of N of the cases, e.g. 0/4; 'auto' reads it from a Slurm array "
                         "(SLURM_ARRAY_TASK_ID/_MIN/_COUNT) or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX "
                         "with VLMBENCH_SHARD_COUNT)")
    group.addoption("--vlm-no-folder-lock", action="store_true", default=False,
                    help="do not lock the results folder (for file systems without flock, e.g. Lustre without "
                         "-o flock); only safe while this is the only run writing the folder")


def _worker_id(config):
    return (getattr(config, "workerinput", None) or {}).get("workerid")


def _is_xdist_controller(config) -> bool:
    return _worker_id(config) is None and getattr(config.option, "dist", "no") != "no" \
        and not config.option.collectonly


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Pins an xdist worker to its GPU before anything touches CUDA; validates a config named on the
    command line (a bad one stops pytest with a usage error); reads --vlm-shard. VLMBENCH_OFFLINE=1
    makes the whole process offline (HF_HUB_OFFLINE too) before anything asks the Hub."""
    from vlmbench.offline import apply_offline_switch
    from vlmbench.run.devices import pin_worker_to_device
    apply_offline_switch()
    try:
        if _worker_id(config) is not None:
            pin_worker_to_device(config.workerinput.get("vlmbench_device"))
        elif _is_xdist_controller(config):
            _list_devices(config)
        if config.getoption("--vlm-shard"):
            from vlmbench.run.sharding import parse_shard
            config.stash[SHARD_KEY] = parse_shard(config.getoption("--vlm-shard"), os.environ)
    except ConfigError as exc:
        raise pytest.UsageError(f"vlmbench: {exc}") from None
    if config.getoption("--vlm-config") or config.getoption("--vlm-set") or config.getoption("--vlm-results"):
        _session(config)


def _list_devices(config) -> None:
    """The controller's GPUs (its CUDA_VISIBLE_DEVICES, else NVML's count), checked against -n."""
    from vlmbench.run.devices import check_worker_count, nvml_device_count, visible_devices
    devices = visible_devices(os.environ, nvml_device_count())
    check_worker_count(int(config.option.numprocesses or 0), devices)
    config.stash[DEVICES_KEY] = {"all": devices, "held": {}}


# ---------------------------------------------------------------- pytest-xdist (controller side)
@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    """`-n auto` starts one worker per visible GPU (xdist's CPU count where there is none)."""
    from vlmbench.run.devices import nvml_device_count, visible_devices
    return len(visible_devices(os.environ, nvml_device_count())) or None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """Gives a starting worker the run's model identity and a GPU no live worker holds (a restarted worker
    takes its dead one's)."""
    from vlmbench.run.devices import device_for_worker
    node.workerinput[IDENTITY_INPUT] = _controller_identity(node.config)
    devices = node.config.stash.get(DEVICES_KEY, None)
    if devices is None:
        return
    worker = node.workerinput["workerid"]
    try:
        device = device_for_worker(worker, devices["all"], list(devices["held"].values()))
    except ConfigError as exc:
        raise pytest.UsageError(f"vlmbench: {exc}") from None
    node.workerinput["vlmbench_device"] = device
    if device is not None:
        devices["held"][worker] = device


def _controller_identity(config) -> dict:
    """The model identity the controller resolves once for all its workers (restarted ones too), so the run
    makes one Hub lookup and has one fingerprint even if a Hub branch moves while workers start. A failure
    is passed on as {"error": ...}: raised where the run needs the identity, so a run that selects no
    vlmbench case is not stopped by it. Without a --vlm-* option the controller cannot tell a benchmark
    run from `pytest tests -n 2`, which must read no config and make no Hub lookup: it sends {} and each
    worker that collects benchmark cases resolves the identity itself."""
    if SESSION_KEY not in config.stash:  # built at configure only when a --vlm-* option was given
        return {}
    if IDENTITY_KEY not in config.stash:
        session = _session(config)
        try:
            session.identify_model()
            config.stash[IDENTITY_KEY] = {"identity": session.cfg.model.identity}
        except ConfigError as exc:
            config.stash[IDENTITY_KEY] = {"error": str(exc)}
    return config.stash[IDENTITY_KEY]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    devices = node.config.stash.get(DEVICES_KEY, None)
    if devices is not None:
        devices["held"].pop(node.workerinput["workerid"], None)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """The slice scheduler for xdist's default mode (`load`); an explicit `--dist MODE` keeps xdist's."""
    if config.getvalue("dist") != "load":
        return None
    from vlmbench.run.scheduling import SliceScheduling
    return SliceScheduling(config, log, pending=lambda v, c: (v, c) not in _owner_check(config).done)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    """The controller's once-only checks of the folder, when the first worker has collected."""
    from vlmbench.run.sharding import case_from_nodeid
    config = node.config
    if OWNER_CHECK_KEY in config.stash:
        return
    cases = [c for c in map(case_from_nodeid, ids) if c is not None]
    if not cases:
        return
    try:
        _check_folder(config, cases)
    except ConfigError as exc:
        pytest.exit(f"vlmbench: {exc}", returncode=pytest.ExitCode.USAGE_ERROR)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        for note in _session(config).notes:
            reporter.write_line(f"vlmbench: {note}")


def _session(config):
    """The run's BenchSession, built on first use (so plain `pytest tests` never reads a config).

    The config (keys, types, ranges) and the data source's structural checks run first, before anything
    imports torch or transformers (seconds on a loaded machine), so a misspelt key is refused at once."""
    if SESSION_KEY not in config.stash:
        try:
            cfg = _checked_config(config)
            rows = _checked_rows(cfg)
            from vlmbench.run.session import BenchSession  # imports torch: only once the checks passed
            config.stash[SESSION_KEY] = BenchSession(cfg, _results_dir(config, cfg), progress_sink=_terminal_sink(config),
                                                     checked_rows=rows)
        except ConfigError as exc:
            raise pytest.UsageError(f"vlmbench: {exc}") from None
    return config.stash[SESSION_KEY]


def _checked_config(config):
    """The experiment config from --vlm-config, --vlm-set and --vlm-results; ConfigError names a bad key or value."""
    overrides = dict(parse_assignment(a) for a in config.getoption("--vlm-set"))
    cfg = load_config(config.getoption("--vlm-config"), overrides)
    results = config.getoption("--vlm-results")
    return cfg.replace(results_dir=results) if results else cfg


def _checked_rows(cfg) -> list:
    """The experiment's rows, checked (vlmbench/data/checks.py) without torch; ConfigError names the problem."""
    from vlmbench.data.sources import load_rows
    return load_rows(cfg)


def _results_dir(config, cfg) -> Path:
    results_dir = Path(cfg.results_dir)
    return results_dir if results_dir.is_absolute() else Path(config.invocation_params.dir) / results_dir


def _terminal_sink(config):
    """Writes a progress line to the terminal while a test runs, past pytest's output capture."""
    def write(line: str) -> None:
        capman = config.pluginmanager.getplugin("capturemanager")
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if capman is None or reporter is None:
            from vlmbench.run.progress import stderr_sink
            return stderr_sink(line)
        with capman.global_and_fixture_disabled():
            if getattr(getattr(reporter, "_tw", None), "width_of_current_line", 0):
                reporter.write("\n")  # a line of progress dots is open: pytest's write_line would append to it
            reporter.write_line(f"vlmbench: {line}")
    return write


def pytest_generate_tests(metafunc):
    if "vlm_variant" not in metafunc.fixturenames:
        return
    session = _session(metafunc.config)
    metafunc.parametrize("vlm_variant", list(session.cfg.variants), indirect=True, scope="session")
    if "vlm_chunk" in metafunc.fixturenames:
        count = _chunk_count(metafunc.config, session)
        metafunc.parametrize("vlm_chunk", list(range(count)), ids=[f"batch{i}" for i in range(count)])


def _chunk_count(config, session) -> int:
    """The number of chunks the data makes: the rows are read first, so a `dataset.limit` above them builds
    no case id (10**30 of them filled the memory). Its error waits in the stash for
    pytest_collection_modifyitems, which stops the run with it as a usage error (one line)."""
    try:
        return len(session.chunks)
    except ConfigError as exc:
        config.stash[DATA_ERROR_KEY] = str(exc)
        return 0


def _case(item):
    """(variant, chunk id) of a benchmark case item, else None."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return (params["vlm_variant"], params["vlm_chunk"]) if "vlm_chunk" in params else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """After -k/-m selection, before any model loads: keep this shard's share, run every check (then
    the run's first writes) and skip finished chunks. An xdist worker only reads the folder: its
    controller ran the checks (pytest_xdist_node_collection_finished)."""
    if DATA_ERROR_KEY in config.stash:
        raise pytest.UsageError(f"vlmbench: {config.stash[DATA_ERROR_KEY]}")
    cases = [item for item in items if _case(item) is not None]
    if not cases:
        return
    if SHARD_KEY in config.stash:
        selected, cases = len(cases), _keep_shard_share(config, items, cases)
        if not cases:  # more shards than cases: nothing to check, nothing to write
            config.stash[EMPTY_SHARE_KEY] = selected
            return
    if config.option.collectonly:
        return  # listing the cases writes nothing: no lock, no snapshot, no results folder
    session = _session(config)
    session.worker = " ".join(filter(None, [f"shard {config.stash[SHARD_KEY]}" if SHARD_KEY in config.stash else "",
                                            _worker_id(config) or ""])) or "main"
    try:
        if _worker_id(config) is None:
            done = _check_folder(config, [_case(item) for item in cases])
        else:
            done = _worker_skips(config, session, [_case(item) for item in cases])
    except ConfigError as exc:
        raise pytest.UsageError(f"vlmbench: {exc}") from None
    for item in cases:
        if _case(item) in done:
            item.add_marker(pytest.mark.skip(reason=done[_case(item)]))
        else:
            item.stash[CSV_SEEN_KEY] = _csv_signature(session, *_case(item))


def _worker_skips(config, session, cases) -> dict:
    """An xdist worker's finished cases with their skip reasons, judged under the controller's model
    identity (the fingerprint must be the controller's); it resolves the identity itself only when the
    controller sent none (no --vlm-* option: see _controller_identity)."""
    given = config.workerinput.get(IDENTITY_INPUT, {})
    if "error" in given:
        raise ConfigError(given["error"])
    if "identity" in given:
        session.use_model_identity(given["identity"])
    else:
        session.identify_model()
    return {case: reason for case in cases if (reason := _worker_skip_reason(session, *case))}


def _worker_skip_reason(session, variant: str, chunk_id: int):
    """A worker's skip decision, read-only: the owner's rules (failed rows counted, chunks whose
    unavailable images are back rerun); a CSV the controller already refused or moved aside runs."""
    try:
        return session.skip_reason(variant, chunk_id)
    except ConfigError:
        return None


def _csv_name(variant: str, chunk_id: int) -> str:
    from vlmbench.results.records import chunk_csv_path
    return chunk_csv_path(Path("."), variant, chunk_id).name  # the one place that names chunk CSVs


def _keep_shard_share(config, items, cases):
    """Deselects the cases outside this shard's share (a function of the selected cases only)."""
    shard = config.stash[SHARD_KEY]
    keep = set(map(id, shard.share(cases)))
    dropped = [item for item in cases if id(item) not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if _case(item) is None or id(item) in keep]
    return [item for item in cases if id(item) in keep]


def _check_folder(config, cases) -> dict:
    """The owner's checks, once per run, every check before the first write: the folder is usable and
    locked; each selected chunk's CSV is read (a foreign one refuses the run); the images of the
    pending chunks can be had; only then does the run write (snapshot, references.json, damaged CSVs
    moved aside, stale claims removed). A refused run leaves the folder as it was. Returns the
    finished cases with their skip reasons; ConfigError (one line) when the run is refused."""
    from vlmbench.results.claims import remove_stale_claims
    from vlmbench.results.lock import FolderBusy, FolderUnusable
    from vlmbench.paths import WriteFailed
    session = _session(config)
    try:
        _identify_as_owner(config, session)
        session.claim_folder(shared=_shares_folder(config), locking=not config.getoption("--vlm-no-folder-lock"))
        session.check_chunks(cases)
        done = {case: reason for case in cases if (reason := session.skip_reason(*case))}
        _preflight(session, sorted({chunk_id for variant, chunk_id in cases if (variant, chunk_id) not in done}))
        session.start()
        session.notes += remove_stale_claims(session.results_dir)
    except (ConfigError, FolderBusy, FolderUnusable, WriteFailed) as exc:
        session.release_folder(refused=True)
        raise ConfigError(str(exc)) from None
    except OSError as exc:  # e.g. a damaged CSV that cannot be moved aside: one line, nothing computed
        session.release_folder(refused=True)
        raise ConfigError(f"{exc}; nothing was computed") from None
    pending = tuple(case for case in cases if case not in done)
    config.stash[OWNER_CHECK_KEY] = OwnerCheck(done, pending)
    _report_sweep_progress(config, session, pending)
    return done


SWEEP_PLUGIN = "vlmbench-sweep-progress"


def _report_sweep_progress(config, session, pending) -> None:
    """Registers the owner's sweep progress reporter (once), with the pending cases and their images."""
    from vlmbench.run.progress import SweepProgress
    if not config.pluginmanager.has_plugin(SWEEP_PLUGIN):
        sweep = SweepProgress({case: len(session.chunks[case[1]]) for case in pending})
        config.pluginmanager.register(_SweepReporter(sweep, _terminal_sink(config)), SWEEP_PLUGIN)


class _SweepReporter:
    """One progress line for the whole sweep per finished case, in the owner process (under xdist the
    controller, which receives every worker's reports), after pytest's own mark for the case."""

    def __init__(self, sweep, sink):
        self.sweep, self.sink = sweep, sink

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report):
        from vlmbench.run.sharding import case_from_nodeid
        case = case_from_nodeid(report.nodeid)
        if case is None:
            return
        if report.skipped:
            self.sweep.case_dropped(case)
        elif report.when == "call" or report.failed:
            line = self.sweep.case_finished(case)
            if line:
                self.sink(line)


def _identify_as_owner(config, session) -> None:
    """The owner's model identity: an xdist controller's from its one resolution for the workers (the
    same failure, no second lookup); otherwise resolved here (a plain run, each --vlm-shard process)."""
    given = config.stash.get(IDENTITY_KEY, None)
    if given is not None and "error" in given:
        raise ConfigError(given["error"])
    session.identify_model()  # a no-op when the controller resolved it already


def _owner_check(config) -> OwnerCheck:
    """The owner's check result; an empty one (nothing known finished) before or without it."""
    return config.stash.get(OWNER_CHECK_KEY, None) or OwnerCheck({})


def _shares_folder(config) -> bool:
    """Shards of one experiment share the results folder (shared lock, same fingerprint); a plain run
    and an xdist controller hold it exclusively (xdist workers take no lock: their controller holds it)."""
    return SHARD_KEY in config.stash


def pytest_unconfigure(config):
    if SESSION_KEY in config.stash:
        config.stash[SESSION_KEY].release_folder()


WRITE_FAILED_ADVICE = ("finished chunks are kept (each file is written whole or not at all); free space and rerun: "
                       "only unfinished chunks run")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    _claim_chunk(item)  # before any fixture (the model) sets up
    return (yield from _one_line_on_write_failure(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _one_line_on_write_failure(item))


def _one_line_on_write_failure(item):
    """A file that cannot be written (disk full) fails the case with one line and stops the session."""
    from vlmbench.paths import WriteFailed
    try:
        return (yield)
    except WriteFailed as exc:
        item.session.shouldstop = message = f"vlmbench: {exc}"
    pytest.fail(f"{message}; {WRITE_FAILED_ADVICE}", pytrace=False)  # outside `except`: no chained traceback


@pytest.hookimpl(wrapper=True, optionalhook=True)
def pytest_benchmark_generate_json(config, benchmarks, include_data, machine_info, commit_info):
    """Leaves out of pytest-benchmark's JSON each benchmark that recorded no round, by marking it as an error
    (pytest-benchmark's documented way to strip one). A case interrupted inside its timed pass (Ctrl-C, a
    window's SIGINT: not an Exception, so pytest-benchmark does not mark it) left one whose statistics raised
    ValueError in pytest-benchmark's session finish, which then skipped vlmbench's summary and report."""
    for bench in benchmarks:
        if not bench:  # pytest-benchmark's Metadata is false while it holds no round
            bench.fixture.has_error = True
    return (yield)


def pytest_report_collectionfinish(config, start_path, items):
    if SESSION_KEY in config.stash:
        return [f"vlmbench: {note}" for note in config.stash[SESSION_KEY].notes]
    return []


def _preflight(session, pending: list[int]) -> None:
    """Checks that the images of the chunks still to run can be had, before any model loads."""
    from vlmbench.data.preflight import run_preflight
    if pending:
        session.notes += run_preflight(session.cfg, [row for i in pending for row in session.chunks[i]])


def _csv_signature(session, variant: str, chunk_id: int):
    """(size, mtime_ns) of the chunk's CSV, None when absent: a CSV that changed after collection was
    written by another process; one that did not (a chunk rerun to retry its unavailable images) was not."""
    from vlmbench.results.records import chunk_csv_path
    try:
        stat = chunk_csv_path(session.results_dir, variant, chunk_id).stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _claim_chunk(item) -> None:
    """Claims a pending chunk before its fixtures (the model) load; skips it when another process
    holds the claim or finished the chunk since collection."""
    from vlmbench.results.claims import try_claim
    if _case(item) is None or item.get_closest_marker("skip") is not None:
        return
    session = _session(item.config)
    claim, why = try_claim(session.results_dir, *_case(item), worker=session.worker)
    if claim is None:
        pytest.skip(f"{why}: it is being computed there")
    changed = _csv_signature(session, *_case(item)) != item.stash.get(CSV_SEEN_KEY, None)
    if changed and session.fresh_chunk_status(*_case(item)) == "complete":
        claim.release()
        pytest.skip(f"{_csv_name(*_case(item))} was completed by another process after collection")
    item.stash[CLAIM_KEY] = claim.start_heartbeat()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item):
    claim = item.stash.get(CLAIM_KEY, None)
    if claim is not None:
        claim.release()


@pytest.fixture(scope="session")
def vlm_session(request):
    session = _session(request.config)
    session.read_idle_power()  # before any model or random-weight build touches the GPU
    return session


@pytest.fixture(scope="session")
def vlm_variant(request, vlm_session):
    """The loaded variant (model + captioner); released at teardown, before the next variant loads."""
    from vlmbench.quantize.census import CensusMismatch
    from vlmbench.models.loading import free_device_memory
    try:
        loaded = vlm_session.load_variant(request.param)
    except CensusMismatch as exc:
        _say_now(request.config, f"variant {request.param} not benchmarked: {exc}")
        pytest.fail(str(exc), pytrace=False)
    except Exception as exc:
        _say_now(request.config, f"variant {request.param} failed to load: {type(exc).__name__}: {exc}")
        raise
    yield loaded
    loaded.model = loaded.captioner = None  # drop the only references, then give the memory back
    free_device_memory()


def _say_now(config, line: str) -> None:
    """Writes `line` to the terminal at once, past output capture: a setup error reported only in pytest's final
    summary is lost when the run is stopped before it (a timeout's SIGINT during a long session finish)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"vlmbench: {line}")


@pytest.fixture
def vlm_chunk(request):
    return request.param


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    _release_claims(session)
    if EMPTY_SHARE_KEY in config.stash:
        _finish_empty_share(session)
        return
    if OWNER_CHECK_KEY not in config.stash or config.option.collectonly:
        return  # an xdist worker (the controller reports once), checks refused or never run, or only collected
    from vlmbench.results.report import finish_run
    bench = config.stash[SESSION_KEY]
    known_rows = None
    if SHARD_KEY in config.stash:
        unfinished, known_rows = _read_experiment_chunks(bench)
        if unfinished:
            _say_at_end(config, "vlmbench shard", f"shard {config.stash[SHARD_KEY]} finished its share; "
                        f"{len(unfinished)} chunk(s) of the experiment are not in {bench.results_dir} yet (e.g. "
                        f"{unfinished[0]}); the last shard to finish writes the summary, or run: vlmbench-report "
                        f"{bench.results_dir}")
            return
    verdict = finish_run(bench, config.getoption("--vlm-baseline"), known_rows)
    _say_at_end(config, "vlmbench summary", verdict.text + _nothing_timed_note(config, bench))
    if verdict.failed:
        config.stash[END_KEY]["count"] = ("vlmbench gate failed" if verdict.outcome == "failed"
                                          else "vlmbench report failed")
    if verdict.failed and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _release_claims(session) -> None:
    """Gives back the claims still held: pytest runs no teardown for a case stopped by KeyboardInterrupt (a
    window's SIGINT), whose claim and heartbeat would otherwise last as long as the process."""
    for item in getattr(session, "items", []):
        claim = item.stash.get(CLAIM_KEY, None)
        if claim is not None:
            claim.release()


BENCHMARK_OUTPUTS = ("--benchmark-compare", "--benchmark-autosave", "--benchmark-save", "--benchmark-json")


def _nothing_timed_note(config, bench) -> str:
    """One line when pytest-benchmark output was asked for but every selected chunk was skipped (finished
    before), so pytest-benchmark timed nothing ('Not saving anything'); '' otherwise."""
    asked = [option for option in BENCHMARK_OUTPUTS if _option(config, option)]
    if not asked or _owner_check(config).pending:
        return ""
    return (f"\nnote: {'/'.join(asked)}: pytest-benchmark timed nothing, because every selected chunk was finished "
            f"before and skipped; to time them, delete their CSVs in {bench.results_dir} or pass a fresh "
            "--vlm-results DIR")


def _option(config, name: str):
    try:
        return config.getoption(name)
    except ValueError:  # pytest-benchmark not installed or switched off (-p no:benchmark)
        return None


def _say_at_end(config, title: str, text: str) -> None:
    """Keeps a section ('=== title ===' and text) for pytest_terminal_summary to print."""
    config.stash.setdefault(END_KEY, {"sections": [], "count": None})["sections"].append((title, text))


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's table: the verdict stays the last thing read
def pytest_terminal_summary(terminalreporter):
    """The end-of-run sections (summary table and verdict, a shard's state), in pytest's own summary: after
    the line of progress dots is ended (under xdist it was not, when they were printed at session finish),
    before pytest's last line, which then counts a failed gate or report."""
    end = terminalreporter.config.stash.get(END_KEY, None)
    if end is None:
        return
    for title, text in end["sections"]:
        terminalreporter.write_sep("=", title)
        terminalreporter.write_line(text)
    if end["count"]:
        _count_in_last_line(terminalreporter, end["count"])


@dataclass
class _SummaryEntry:
    """An entry of the terminal reporter's stats, so that pytest's last line counts it ('9 skipped, 1 vlmbench
    gate failed in 3.02s'), which otherwise names only the skipped cases of a run whose gate failed."""
    count_towards_summary: bool = True


def _count_in_last_line(reporter, label: str) -> None:
    """Adds `label` to pytest's last line; the terminal reporter prints that line after every session-finish hook."""
    if reporter is not None:
        reporter.stats.setdefault(label, []).append(_SummaryEntry())


def _finish_empty_share(session) -> None:
    """A shard with no case (a Slurm array with more tasks than chunks) succeeds and says why, instead of
    pytest's 'no tests ran' exit status 5, which a scheduler counts as a failed task."""
    config = session.config
    shard, selected = config.stash[SHARD_KEY], config.stash[EMPTY_SHARE_KEY]
    if session.exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK
    _say_at_end(config, "vlmbench shard", f"shard {shard}: its share is empty ({selected} selected chunk case(s) over "
                                          f"{shard.count} shards); nothing to do, nothing written")


def _read_experiment_chunks(bench) -> tuple[list[str], dict]:
    """Every chunk of the experiment (all variants, all chunks) checked once: the CSV names not complete in
    the folder, and the complete ones' rows, (variant, chunk id) -> rows, which the summary then uses
    instead of reading each CSV again."""
    unfinished, known_rows = [], {}
    for variant in bench.cfg.variants:
        for chunk_id in range(bench.cfg.num_chunks):
            state = bench.fresh_chunk_state(variant, chunk_id)
            if state.status == "complete":
                known_rows[(variant, chunk_id)] = state.rows
            else:
                unfinished.append(_csv_name(variant, chunk_id))
    return unfinished, known_rows

