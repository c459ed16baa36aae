"""The pytest plugin: options, parametrization, fixtures and the session-finish hook.

Why it exists: users run vlmbench as a pytest suite (`pytest benchmarks -k int8_vit`). This module
only wires pytest to `vlmbench.session` and `vlmbench.report`; it is registered through the
`pytest11` entry point, so `conftest.py` stays thin and the plugin is active wherever vlmbench is
installed, but does nothing unless a test asks for its fixtures.

- `vlm_variant` (session scope, one parameter per variant): the loaded model, built once and
  released before the next variant loads.
- `vlm_chunk`: one case per chunk, id `batch<N>`, so ids read `test_caption[int8_vit-batch3]`.
- A chunk whose CSV is complete is skipped before any model loads (the reason counts its failed
  rows); one whose unavailable images are back is run again; a CSV from another experiment stops
  the run; a damaged one is moved aside and recomputed.
- At session end: CIDEr, the summary JSON, plots, a markdown table and the regression gate.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from vlmbench.config import ConfigError, load_config, parse_assignment

SESSION_KEY = pytest.StashKey["object"]()
USES_KEY = pytest.StashKey[bool]()


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


def pytest_configure(config):
    """A config named on the command line is validated now: a bad one stops pytest with a usage error."""
    if config.getoption("--vlm-config") or config.getoption("--vlm-set") or config.getoption("--vlm-results"):
        _session(config)


def _session(config):
    """The run's BenchSession, built on first use (so plain `pytest tests` never reads a config)."""
    if SESSION_KEY not in config.stash:
        from vlmbench.session import BenchSession
        try:
            overrides = dict(parse_assignment(a) for a in config.getoption("--vlm-set"))
            cfg = load_config(config.getoption("--vlm-config"), overrides)
            results = config.getoption("--vlm-results")
            if results:
                cfg = cfg.replace(results_dir=results)
            results_dir = Path(cfg.results_dir)
            if not results_dir.is_absolute():
                results_dir = Path(config.invocation_params.dir) / results_dir
            config.stash[SESSION_KEY] = BenchSession(cfg, results_dir, progress_sink=_terminal_sink(config))
        except ConfigError as exc:
            raise pytest.UsageError(f"vlmbench: {exc}") from None
    return config.stash[SESSION_KEY]


def _terminal_sink(config):
    """Writes a progress line to the terminal while a test runs, past pytest's output capture."""
    def write(line: str) -> None:
        capman = config.pluginmanager.getplugin("capturemanager")
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if capman is None or reporter is None:
            from vlmbench.progress import stderr_sink
            return stderr_sink(line)
        with capman.global_and_fixture_disabled():
            reporter.write_line(f"vlmbench: {line}")
    return write


def pytest_generate_tests(metafunc):
    if "vlm_variant" not in metafunc.fixturenames:
        return
    metafunc.config.stash[USES_KEY] = True
    cfg = _session(metafunc.config).cfg
    metafunc.parametrize("vlm_variant", list(cfg.variants), indirect=True, scope="session")
    if "vlm_chunk" in metafunc.fixturenames:
        ids = [f"batch{i}" for i in range(cfg.num_chunks)]
        metafunc.parametrize("vlm_chunk", list(range(cfg.num_chunks)), ids=ids)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """After -k/-m selection, before any model loads: every check first, then the run's first writes.

    Order: the results folder is usable and locked; each selected chunk's CSV is read (a foreign one
    refuses the run); the images of the pending chunks can be had; only then does the run write
    (snapshot, references.json, damaged CSVs moved aside). A refused run leaves the folder as it was.
    """
    from vlmbench.lock import FolderBusy, FolderUnusable
    from vlmbench.paths import WriteFailed
    cases = [item for item in items if hasattr(item, "callspec") and "vlm_chunk" in item.callspec.params]
    if not cases:
        return
    session = _session(config)
    try:
        session.identify_model()
        session.claim_folder(shared=_shares_folder(config))
        session.check_chunks([_key(item) for item in cases])
        for item in cases:
            reason = session.skip_reason(*_key(item))
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))
        _preflight(session, cases)
        session.start()
    except (ConfigError, FolderBusy, FolderUnusable, WriteFailed) as exc:
        session.release_folder(refused=True)
        raise pytest.UsageError(f"vlmbench: {exc}") from None
    except OSError as exc:  # e.g. a damaged CSV that cannot be moved aside: one line, nothing computed
        session.release_folder(refused=True)
        raise pytest.UsageError(f"vlmbench: {exc}; nothing was computed") from None
    session.ready = True


def _key(item) -> tuple[str, int]:
    return item.callspec.params["vlm_variant"], item.callspec.params["vlm_chunk"]


def _shares_folder(config) -> bool:
    """Whether this process shares the results folder with other processes of the same experiment.

    pytest-xdist workers do (each worker collects and holds the lock in shared mode); shards of one
    experiment (the scale-out options) should too. A plain run holds the folder exclusively.
    """
    return getattr(config, "workerinput", None) is not None


def pytest_unconfigure(config):
    if SESSION_KEY in config.stash:
        config.stash[SESSION_KEY].release_folder()


WRITE_FAILED_ADVICE = ("finished chunks are kept (each file is written whole or not at all); free space and rerun: "
                       "only unfinished chunks run")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
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


def pytest_report_collectionfinish(config, start_path, items):
    if SESSION_KEY in config.stash:
        return [f"vlmbench: {note}" for note in config.stash[SESSION_KEY].notes]
    return []


def _preflight(session, cases) -> None:
    """Checks that the images of the chunks still to run can be had, before any model loads."""
    from vlmbench.preflight import run_preflight
    pending = sorted({item.callspec.params["vlm_chunk"] for item in cases
                      if not any(m.name == "skip" for m in item.iter_markers())})
    if pending:
        session.notes += run_preflight(session.cfg, [row for i in pending for row in session.chunks[i]])


@pytest.fixture(scope="session")
def vlm_session(request):
    session = _session(request.config)
    session.read_idle_power()  # before any model or random-weight build touches the GPU
    return session


@pytest.fixture(scope="session")
def vlm_variant(request, vlm_session):
    """The loaded variant (model + captioner); released at teardown, before the next variant loads."""
    from vlmbench.census import CensusMismatch
    from vlmbench.modeling import free_device_memory
    try:
        loaded = vlm_session.load_variant(request.param)
    except CensusMismatch as exc:
        pytest.fail(str(exc), pytrace=False)
    yield loaded
    loaded.model = loaded.captioner = None  # drop the only references, then give the memory back
    free_device_memory()


@pytest.fixture
def vlm_chunk(request):
    return request.param


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if not config.stash.get(USES_KEY, False) or SESSION_KEY not in config.stash:
        return
    if not config.stash[SESSION_KEY].ready or config.option.collectonly:
        return  # collection stopped (bad config, foreign CSV) or only collected: nothing new to report
    if getattr(config, "workerinput", None) is not None:
        return  # an xdist worker: the controller reports once
    from vlmbench.report import finish_run
    verdict = finish_run(config.stash[SESSION_KEY], config.getoption("--vlm-baseline"))
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_sep("=", "vlmbench summary")
        reporter.write_line(verdict.text)
    if verdict.failed and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
