"""Where vlmbench keeps things between runs (caches) and how files are written safely.

Why it exists: one place decides the cache root (VLMBENCH_CACHE, else ~/.cache/vlmbench), the
atomic-write rule (write a temporary file beside the target, then rename), so no reader ever sees a
half-written CSV, JSON, image or model folder, and how temporary files are named and cleaned up.

Temporary files and folders carry their owner in their name (`owner_tag()`: `pid<pid>@<host>-`),
e.g. `.fp16_batch_0.csv.pid123@node1-x8f2.tmp` or `.staging-pid123@node1-k2j1`. A process killed
with -9 cannot remove its own, so the next run removes those whose owner process is gone
(`sweep_leftovers`, same host only; a name of another host is left to that host).

Files whose final name must be new (config snapshots, summaries, a damaged CSV set aside) are written
whole to a temporary name first and then hard-linked under the first free final name (`write_new`,
`link_new`): a link never replaces a file, so two writers of one second get two names, and a kill -9
at any moment leaves either nothing or the whole file under a final name, never an empty one.

Files read back from a results folder go through `read_regular_bytes`: a FIFO, device or folder under
a file's name is refused without being opened (opening a FIFO for reading waits forever for a writer).
"""
from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import stat
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
    """Writes `data` to `path` whole or not at all (replacing what is there); WriteFailed (one line) when it cannot."""
    path = Path(path)
    tmp = None
    try:
        tmp = _write_temp(path, data)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, WriteFailed):
            raise WriteFailed(path, exc) from exc
        raise


def _write_temp(path: Path, data: bytes) -> str:
    """A new owned temporary file beside `path` holding `data`, flushed to disk; returns its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{owner_tag()}", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, DEFAULT_FILE_MODE)  # mkstemp makes 0600; results are shared (shards, other users)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def write_new(candidates: list[Path], data: bytes) -> Path:
    """Writes `data` whole under the first of `candidates` (names in one folder) that does not exist yet, and
    returns it; never replaces a file and never leaves an empty or partial one under a candidate name (the
    data is written and flushed under a temporary name, then linked: `link_new`). FileExistsError when
    every candidate is taken; WriteFailed (one line) when the folder cannot be written."""
    first = Path(candidates[0])
    tmp = None
    try:
        tmp = _write_temp(first, data)
        for candidate in candidates:
            if link_new(Path(tmp), Path(candidate)):
                return Path(candidate)
        raise FileExistsError(f"no free name {first.name} ... {Path(candidates[-1]).name} in {first.parent}")
    except OSError as exc:
        if isinstance(exc, (WriteFailed, FileExistsError)):
            raise
        raise WriteFailed(first, exc) from exc
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


# errors of link() on file systems without hard links (some FUSE and SMB mounts)
NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOSYS, errno.EMLINK}


def link_new(source: Path, target: Path) -> bool:
    """Gives the file `source` the new name `target` too, unless `target` exists (then False). A hard link
    never replaces a file. Where the file system has no hard links, `source` is renamed to `target` after
    checking that `target` is free (a race of two writers of one name within that instant is then possible)."""
    try:
        os.link(source, target, follow_symlinks=False)  # a symlink is moved as itself
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in NO_HARD_LINKS or os.path.lexists(target):
            raise
    os.rename(source, target)
    return True


class NotARegularFile(ValueError):
    """A name vlmbench reads is something other than a regular file (a FIFO, a device, a folder); not opened."""


# (test, what it is) for the kinds of file vlmbench never writes
SPECIAL_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISDIR, "a folder"), (stat.S_ISSOCK, "a socket"),
                 (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def special_kind(mode: int) -> str | None:
    """What a file of this st_mode is when it is not a regular file ('a FIFO (named pipe)', ...), else None."""
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in SPECIAL_KINDS if test(mode)), "not a regular file")


def check_regular(path: Path) -> None:
    """NotARegularFile naming `path` and its kind unless it is a regular file (symlinks followed); checked with
    stat, so nothing is opened; FileNotFoundError when absent."""
    _refuse_special(path, os.stat(path).st_mode)


def _refuse_special(path: Path, mode: int) -> None:
    kind = special_kind(mode)
    if kind is not None:
        raise NotARegularFile(f"{Path(path).name} in {Path(path).parent} is {kind}, not a regular file; vlmbench "
                              "did not read it (move it away)")


def read_regular_bytes(path: Path) -> bytes:
    """The bytes of the regular file `path`; NotARegularFile, without opening it, for anything else (a FIFO
    would make a plain open() wait forever for a writer). The open is non-blocking and the opened file is
    checked again, so a FIFO swapped in between cannot hang the reader either."""
    check_regular(path)
    with open(path, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NONBLOCK)) as handle:
        _refuse_special(path, os.fstat(handle.fileno()).st_mode)
        return handle.read()


def read_regular_text(path: Path) -> str:
    return read_regular_bytes(path).decode("utf-8")


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
