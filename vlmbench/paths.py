"""Where vlmbench keeps things between runs (caches) and how files are written safely.

Why it exists: one place decides the cache root (VLMBENCH_CACHE, else ~/.cache/vlmbench), the
atomic-write rule (write a temporary file beside the target, then rename), so no reader ever sees a
half-written CSV, JSON, image or model folder, and how temporary files are named and cleaned up.

Temporary files and folders carry their owner in their name (`owner_tag()`: `pid<pid>@<host>-`),
e.g. `.fp16_batch_0.csv.pid123@node1-x8f2.tmp` or `.staging-pid123@node1-k2j1`. A process killed
with -9 cannot remove its own, so the next run removes those whose owner process is gone
(`sweep_leftovers`, same host only; a name of another host is left to that host).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
from pathlib import Path

OWNER = re.compile(r"pid(\d+)@([^-/]*)-")


class WriteFailed(OSError):
    """A file could not be written (disk full, read-only, quota); the message names the file and folder."""

    def __init__(self, path: Path, cause: OSError):
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.path, self.message = Path(path), f"could not write {Path(path).name} in {Path(path).parent}: " \
                                               f"{cause.strerror or cause}"

    def __str__(self) -> str:
        return self.message


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("VLMBENCH_CACHE", Path.home() / ".cache" / "vlmbench"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def owner_tag() -> str:
    """`pid<pid>@<host>-`: put into temporary names so that the next run knows whether the owner lives."""
    return f"pid{os.getpid()}@{socket.gethostname().replace('-', '_')}-"


def _default_file_mode() -> int:
    """0666 less the process umask: the mode `open()` would give a new file (read via os.umask, reset at once)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


DEFAULT_FILE_MODE = _default_file_mode()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes `data` to `path` whole or not at all; WriteFailed (one line) when it cannot."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{owner_tag()}", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, DEFAULT_FILE_MODE)  # mkstemp makes 0600; results are shared (shards, other users)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, WriteFailed):
            raise WriteFailed(path, exc) from exc
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def owned_temp_dir(parent: Path, prefix: str) -> Path:
    """A new temporary folder in `parent` whose name carries this process as owner (see sweep_leftovers)."""
    Path(parent).mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent, prefix=f"{prefix}{owner_tag()}"))


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host (signal 0; another user's process counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_is_gone(name: str) -> bool:
    """True when `name` carries an owner tag of this host whose process no longer exists."""
    match = OWNER.search(name)
    if not match or match.group(2) != socket.gethostname().replace("-", "_"):
        return False
    pid = int(match.group(1))
    return pid != os.getpid() and not pid_alive(pid)


def sweep_leftovers(folder: Path, depth: int = 1) -> list[str]:
    """Removes hidden temporary files/folders left by dead owners in `folder` and, for depth > 1, in its
    subfolders (the image cache's `ab/` shards); returns the names removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if depth > 1 and not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
            removed += sweep_leftovers(Path(entry.path), depth - 1)
        elif entry.name.startswith(".") and owner_is_gone(entry.name):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)
            removed.append(entry.name)
    return removed
