"""`pytest benchmarks` run inside the test process, for the end-to-end tests of the plugin.

Why it exists: a fresh interpreter spends most of a tiny run importing torch, transformers and
torchvision (half or more of its time, measured with -X importtime and cProfile), so each end-to-end
test that started one or more `pytest` subprocesses cost tens of seconds. Run in this process, the
imports are paid once per test session and a tiny run costs what the plugin does (load, caption,
score, report).

Why not `pytester.runpytest_inprocess`: after each run it removes from `sys.modules` every module the
run imported, and torch, torchvision and transformers cannot be imported a second time into one
process (their operator registrations collide; transformers then fails with "Could not import module
'Qwen2VLVideoProcessor'"). `run_pytest` removes only the modules loaded from the run's own folder (its
test files and conftest.py), which pytest would otherwise refuse to import from another folder
("import file mismatch"), and restores `sys.path`, the working directory and the environment.

What needs a real process stays in one: kill -9 (tests/test_kill.py), pytest-xdist workers and
concurrent shards (tests/test_scaleout.py), and a folder held by another process.
"""
from __future__ import annotations

import contextlib
import gc
import io
import sys
import time
from pathlib import Path

import pytest


def run_pytest(folder: Path, *args: str) -> pytest.RunResult:
    """Runs `pytest *args` with `folder` as the working directory; returns what pytester returns:
    the exit code and the terminal's stdout and stderr lines (`assert_outcomes`, `fnmatch_lines`)."""
    folder = Path(folder).resolve()
    saved_path, before = list(sys.path), set(sys.modules)
    out, err = io.StringIO(), io.StringIO()
    start = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        patch.setenv("PYTEST_DEBUG_TEMPROOT", str(folder))  # the run's tmp_path never prunes this session's
        patch.delenv("PYTEST_ADDOPTS", raising=False)
        for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
            patch.delenv(name, raising=False)  # under `pytest -n`: the run is a user's, not an xdist worker's
        patch.setenv("PY_COLORS", "0")
        gc.freeze()  # the run's gc.collect() calls scan only its own objects, as in a fresh process
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                ret = pytest.main([str(a) for a in args])
        finally:
            gc.unfreeze()
            sys.path[:] = saved_path
            _forget_modules_from(folder, set(sys.modules) - before)
    return pytest.RunResult(ret, out.getvalue().splitlines(), err.getvalue().splitlines(), time.monotonic() - start)


def _forget_modules_from(folder: Path, names: set[str]) -> None:
    """Drops the modules imported from under `folder` (the run's test files and conftest.py)."""
    for name in names:
        path = getattr(sys.modules.get(name), "__file__", None)
        if path and Path(path).resolve().is_relative_to(folder):
            del sys.modules[name]
