"""One results folder, one experiment: the lock a run holds on its results folder.

Why it exists: two runs on one folder with different configs would overwrite each other's chunk
CSVs (the last writer wins), and both would report success. A run therefore holds a lock on its
results folder from collection until the end of the session; a second run stops at once with one
line naming the holder (pid, host, since when) and the fix.

Public API::

    with FolderLock(results_dir, fingerprint, shared=False) as lock:   # or lock.acquire() / lock.release()
        lock.notes        # e.g. that a stale lock of a killed run was taken over
        lock.first        # True when no other process held the folder when we took it

- `shared=False` (a plain run): exclusive. Refused while anyone else holds the folder.
- `shared=True` (pytest-xdist workers, `--vlm-shard K/N` shards of ONE experiment): any number of
  holders with the same config fingerprint share the folder; a holder of another fingerprint, or
  any exclusive holder, is refused. Which chunk each shard computes is not decided here (claims
  per chunk are the scale-out code's job); this lock only guarantees one experiment per folder.
- `command`: who holds it, `"pytest benchmarks"` (a run, the default) or `"vlmbench-report"` (a report
  holds the folder exclusively, so that it never reads a folder a run is writing, and a run never
  starts under a report); it is in the holder information, and it picks the advice in messages (FIXES).
- `folder_guard(results_dir)`: the short exclusive guard below, for other read-modify-writes of
  files in the folder by processes that may not hold the lock (xdist workers merging variant records).
- `FolderBusy` (a `RuntimeError`) is raised when the folder is held; `FolderUnusable` (an
  `OSError`) when the folder cannot be a results folder (a file, read-only, not creatable).

How (Linux `flock(2)`; the kernel releases a flock when its holder dies, kill -9 included):

- `<results>/.vlmbench.lock` is locked `LOCK_EX` by an exclusive holder, `LOCK_SH` by shared holders.
  It holds JSON about the holder that took it first: pid, host, start time (UTC), fingerprint, mode.
- Every state change (take, join, leave) happens under a short `LOCK_EX` on the results folder's
  own directory descriptor (the guard), so that a holder converting its lock (EX to SH on take, SH
  to EX on leave, which flock does not do atomically) cannot be overtaken by another process.
- Stale lock: the lock file exists with holder info, yet `LOCK_EX` is granted: its holder died
  without releasing it (kill -9, pre-emption, power loss). It is taken over, and `notes` says so.
- The last holder to leave removes the lock file, so a finished (or refused) run leaves no file.

File systems without flock (Lustre mounted without `-o flock`, some FUSE file systems answer ENOSYS):
taking the lock raises `LockUnsupported` (a `FolderUnusable`), whose one line names the folder, the
lock file, the file system's answer and the ways through: mount with flock, another folder, or
`--vlm-no-folder-lock` (`vlmbench-report --no-folder-lock`), which uses `UnlockedFolder` instead: the
folder is checked as usual and nothing is locked, so it is safe only while one run (or the shards of
one experiment, which still coordinate through their O_EXCL claim files) writes the folder. The short
guard (`folder_guard`) falls back there to a guard file created with O_EXCL, which works on those file
systems (exclusive create is atomic on the server), so variant records are still merged one at a time.

The `filelock` library was considered: it offers exclusive locks only (no shared mode) and stores
no holder information, both of which this folder lock needs. Like any flock, this lock is reliable
on local file systems; on NFS, Linux emulates flock with POSIX byte-range locks (NFSv4: works; old
NFSv3 mounts with `nolock`: it does not lock at all).
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

LOCK_NAME = ".vlmbench.lock"
GUARD_NAME = ".vlmbench.guard"  # folder_guard's file where the file system has no flock
GUARD_TAKEOVER_S = 60.0  # a guard is held for milliseconds; one that stays this long was left by a killed holder
# errno of flock on a file system that does not implement it: ENOSYS (Lustre without -o flock, FUSE),
# EOPNOTSUPP/ENOTSUP (some FUSE and SMB mounts), ENOLCK (NFS without a lock manager)
NO_FLOCK = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP, errno.ENOLCK}
RUN = "pytest benchmarks"
REPORT = "vlmbench-report"
NO_LOCK_OPTION = {RUN: "--vlm-no-folder-lock", REPORT: "--no-folder-lock"}
# command -> (what to do when the folder is busy, what to do when it cannot hold results)
FIXES = {RUN: ("Wait for it to finish, or pass --vlm-results DIR to use another folder.",
               "pass --vlm-results DIR naming a writable folder"),
         REPORT: ("Wait for it to finish, then run vlmbench-report again (a report made while a run writes the "
                  "folder would lack the chunks being written).",
                  "copy the folder somewhere writable and run vlmbench-report on the copy")}


class FolderBusy(RuntimeError):
    """Another run holds the results folder; the message names it and the fix."""


class FolderUnusable(OSError):
    """The results folder cannot hold results (a file, read-only, not creatable); one-line message."""


class LockUnsupported(FolderUnusable):
    """The results folder's file system does not implement flock; the message names the way through."""


def unsupported_message(results_dir: Path, cause: OSError, command: str = RUN) -> str:
    """One line: the folder, the lock file, what the file system answered, and the three ways through."""
    return (f"results folder {results_dir}: its file system does not support flock, so vlmbench cannot lock the "
            f"folder ({LOCK_NAME}: [Errno {cause.errno}] {cause.strerror or cause}; e.g. Lustre mounted without "
            f"-o flock, or a FUSE file system). Mount it with flock support (Lustre: -o flock), or {FIXES[command][1]} "
            f"on another file system (local disk, NFSv4), or pass {NO_LOCK_OPTION[command]} to go on without the "
            f"lock: {UNLOCKED_RISK[command]}")


UNLOCKED_RISK = {RUN: "then nothing stops a second run (or a run of another experiment) from writing the same "
                      "chunks at the same time, so make sure this is the only run writing the folder (shards of one "
                      "experiment still take each chunk through their claim files)",
                 REPORT: "then nothing stops a run from writing the folder while the report reads it, so make sure "
                         "no run or shard is writing it"}


def holder_info(fingerprint: str, shared: bool, command: str = RUN) -> dict:
    """What a holder writes into the lock file: who, where, since when, which experiment, which mode."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "fingerprint": fingerprint, "mode": "shared" if shared else "exclusive", "command": command}


def describe(info: dict) -> str:
    command = f"{info['command']}, " if info.get("command") else ""  # lock files of older versions lack it
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')} since {info.get('since', '?')} "
            f"({command}{info.get('mode', '?')}, experiment {info.get('fingerprint', '?')})")


def ensure_results_folder(results_dir: Path, fix: str = FIXES[RUN][1]) -> None:
    """Creates the folder if needed; FolderUnusable with one line (ending with `fix`) when it is a file or
    not writable."""
    results_dir = Path(results_dir)
    if results_dir.exists() and not results_dir.is_dir():
        raise FolderUnusable(f"results folder {results_dir} is a file, not a folder; {fix} (or move the file away)")
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FolderUnusable(f"results folder {results_dir} cannot be created: {exc.strerror or exc}; {fix}") from None
    if not os.access(results_dir, os.W_OK | os.X_OK):
        raise FolderUnusable(f"results folder {results_dir} is read-only (no write permission); {fix}, or make it "
                             "writable")


class FolderLock:
    """The lock on one results folder (see the module docstring); a context manager."""

    def __init__(self, results_dir: Path, fingerprint: str, shared: bool = False, command: str = RUN):
        self.results_dir = Path(results_dir)
        self.path = self.results_dir / LOCK_NAME
        self.fingerprint, self.shared, self.command = fingerprint, shared, command
        self.fd: Optional[int] = None
        self.first = False
        self.created_folder = False
        self.notes: list[str] = []

    @property
    def held(self) -> bool:
        return self.fd is not None

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # ------------------------------------------------------------ taking the lock
    def acquire(self) -> "FolderLock":
        """Takes (or, in shared mode, joins) the lock; FolderBusy / FolderUnusable otherwise."""
        if self.held:
            return self
        self.created_folder = not self.results_dir.exists()
        ensure_results_folder(self.results_dir, FIXES[self.command][1])
        try:
            self._acquire_guarded()
        except LockUnsupported:
            if self.created_folder:
                _remove_if_empty(self.results_dir)  # a refused run leaves no folder behind
            raise
        return self

    def _acquire_guarded(self) -> None:
        with self._guard():
            fd = self._open()
            try:
                self._take_or_join(fd)
            except BaseException as exc:
                unsupported = isinstance(exc, OSError) and exc.errno in NO_FLOCK
                self._close_and_maybe_remove(fd, remove=unsupported and os.fstat(fd).st_size == 0)
                if unsupported:
                    raise LockUnsupported(unsupported_message(self.results_dir, exc, self.command)) from None
                raise
            self.fd = fd

    def _take_or_join(self, fd: int) -> None:
        if _try_flock(fd, fcntl.LOCK_EX):
            self._take(fd)
            return
        info = _read_info(fd)
        if self.shared and info.get("mode") == "shared" and info.get("fingerprint") == self.fingerprint \
                and _try_flock(fd, fcntl.LOCK_SH):
            return  # another shard of this experiment holds it: share
        raise FolderBusy(self._busy_message(info))

    def _take(self, fd: int) -> None:
        """We hold LOCK_EX: nobody else holds the folder. Old holder info means its holder died."""
        stale = _read_info(fd)
        if stale:
            self.notes.append(f"took over a stale lock on {self.results_dir}: {describe(stale)} ended without "
                              "releasing it (killed?); its finished chunks are kept, unfinished ones run again")
        _write_info(fd, holder_info(self.fingerprint, self.shared, self.command))
        if self.shared:
            fcntl.flock(fd, fcntl.LOCK_SH)  # a conversion; safe under the guard
        self.first = True

    def _busy_message(self, info: dict) -> str:
        holder = describe(info) if info else "another process (no holder information yet)"
        why = ("a report (vlmbench-report)" if info.get("command") == REPORT
               else "another experiment" if info.get("fingerprint") not in (None, self.fingerprint)
               else "an exclusive run" if info.get("mode") == "exclusive" else "a run")
        return f"results folder {self.results_dir} is in use by {why}: {holder}. {FIXES[self.command][0]}"

    # ------------------------------------------------------------ leaving
    def release(self) -> None:
        """Leaves the lock; the last holder removes the lock file. Safe to call twice."""
        if not self.held:
            return
        fd, self.fd = self.fd, None
        try:
            with self._guard():
                self._close_and_maybe_remove(fd, remove=_try_flock(fd, fcntl.LOCK_EX))
        except OSError:  # the folder vanished or became unreadable: closing the descriptor releases the lock
            os.close(fd)

    def _close_and_maybe_remove(self, fd: int, remove: bool) -> None:
        if remove:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        os.close(fd)

    # ------------------------------------------------------------ plumbing
    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise FolderUnusable(f"results folder {self.results_dir}: cannot create {LOCK_NAME} "
                                 f"({exc.strerror or exc}); {FIXES[self.command][1]}") from None

    def _guard(self):
        return folder_guard(self.results_dir)


@contextmanager
def folder_guard(results_dir: Path):
    """A short exclusive flock on the folder's directory descriptor (the directory's inode never changes,
    unlike a file replaced by an atomic rename): around each lock state change and each merge of a
    variant record. Blocks while another process is inside it. Where the file system has no flock, a
    guard file created with O_EXCL does the same (`_guard_file`)."""
    dir_fd = os.open(results_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        if _flock_if_supported(dir_fd, fcntl.LOCK_EX):
            yield
        else:
            with _guard_file(Path(results_dir)):
                yield
    finally:
        os.close(dir_fd)  # closing releases the flock


def _flock_if_supported(fd: int, kind: int) -> bool:
    """flock(fd, kind), blocking; False where the file system does not implement flock (NO_FLOCK)."""
    try:
        fcntl.flock(fd, kind)
        return True
    except OSError as exc:
        if exc.errno in NO_FLOCK:
            return False
        raise


@contextmanager
def _guard_file(results_dir: Path):
    """The guard without flock: `<folder>/.vlmbench.guard` created with O_EXCL (one creator wins, also on NFS
    and Lustre), retried every 10 ms and removed on leaving. A guard lasts milliseconds, so a file older than
    GUARD_TAKEOVER_S (by its own time stamp, not by how long this process waited) was left by a killed holder
    and is taken over (`_take_over_if_stale`)."""
    path = results_dir / GUARD_NAME
    while True:
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            break
        except FileExistsError:
            _take_over_if_stale(path)
            time.sleep(0.01)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _take_over_if_stale(path: Path) -> None:
    """Removes the guard file when it is older than GUARD_TAKEOVER_S. It is renamed aside first, so of two
    waiters only one removes it; a waiter that renamed a fresh guard instead (another took over between its
    look and its rename) puts that one back with a link, which never replaces a file."""
    try:
        seen = path.stat()
    except FileNotFoundError:
        return
    if time.time() - seen.st_mtime <= GUARD_TAKEOVER_S:
        return
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # another waiter took it over
    if os.stat(aside).st_ino != seen.st_ino:  # a live guard: give it back
        try:
            os.link(aside, path)
        except FileExistsError:
            pass
    aside.unlink(missing_ok=True)


def _try_flock(fd: int, kind: int) -> bool:
    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
        return True
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise


class UnlockedFolder:
    """Stands in for FolderLock when the user turned the lock off (--vlm-no-folder-lock, vlmbench-report
    --no-folder-lock) on a file system without flock: the folder is checked and created as FolderLock
    does, nothing is locked, and `notes` says so with the risk (UNLOCKED_RISK)."""

    def __init__(self, results_dir: Path, command: str = RUN):
        self.results_dir, self.command = Path(results_dir), command
        self.first, self.created_folder, self.held = True, False, False
        self.notes: list[str] = []

    def acquire(self) -> "UnlockedFolder":
        self.created_folder = not self.results_dir.exists()
        ensure_results_folder(self.results_dir, FIXES[self.command][1])
        self.notes.append(f"results folder {self.results_dir} is not locked ({NO_LOCK_OPTION[self.command]}): "
                          f"{UNLOCKED_RISK[self.command]}")
        self.held = True
        return self

    def release(self) -> None:
        self.held = False


def folder_lock(results_dir: Path, fingerprint: str, shared: bool = False, command: str = RUN,
                locking: bool = True):
    """FolderLock, or UnlockedFolder when `locking` is False (the user's explicit choice); not yet acquired."""
    if locking:
        return FolderLock(results_dir, fingerprint, shared, command)
    return UnlockedFolder(results_dir, command)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


def _read_info(fd: int) -> dict:
    data = os.pread(fd, 65536, 0)
    try:
        info = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {"pid": "?", "host": "?", "since": "?", "note": "unreadable holder information"}
    return info if isinstance(info, dict) else {}


def _write_info(fd: int, info: dict) -> None:
    data = (json.dumps(info, sort_keys=True) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def read_holder(results_dir: Path) -> dict:
    """The holder information in a folder's lock file ({} when there is none); for messages and tests."""
    path = Path(results_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return {}
    try:
        return _read_info(fd)
    finally:
        os.close(fd)
