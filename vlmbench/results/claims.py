"""Per-chunk claim files: two processes sharing a results folder never compute one chunk twice.

Why it exists: shards on a cluster (and xdist workers on one host) write into one results folder on
a shared filesystem. Before a chunk runs, its process creates `claims/<variant>_batch_<id>.claim`
with O_CREAT|O_EXCL, which exactly one creator wins (also on NFSv3+ and Lustre, where exclusive
create is atomic on the server). The file holds the holder's host, pid and start time; while the
chunk runs a daemon thread touches it every `HEARTBEAT_S` seconds. The claim is removed once the
CSV is in place (or the case ended otherwise).

A claim left by a crash is stale, and taken over, when
- its holder ran on this host and that pid is gone (or holds a different process start time), or
- its heartbeat is older than `STALE_AFTER_S` (the only test possible for another host's process).
  A time stamp more than `SKEW_TOLERANCE_S` in the future (the holder's clock, or the file server's,
  runs ahead) would never grow old: such a claim is aged from when this process first saw that very
  time stamp instead, so it goes stale after the same timeout; a live holder's heartbeat changes the
  time stamp and restarts the count.
- it is not a regular file (a FIFO under a claim's name is moved aside, never opened).
Taking over renames the stale file to a unique name first, so that of two processes that both
found it stale only one wins; the loser sees the new holder's claim.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from vlmbench.paths import pid_alive, read_regular_text, special_kind

HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0  # 20 missed heartbeats: a live holder on a loaded shared filesystem stays well inside
SKEW_TOLERANCE_S = 60.0  # a heartbeat up to this far ahead of our clock is ordinary drift between hosts
_FIRST_SEEN: dict[tuple[str, int], float] = {}  # (claim path, its mtime in ns) -> when this process first saw it


def claims_dir(results_dir: Path) -> Path:
    return Path(results_dir) / "claims"


def claim_path(results_dir: Path, variant: str, chunk_id: int) -> Path:
    return claims_dir(results_dir) / f"{variant}_batch_{chunk_id}.claim"


def _process_start(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux /proc), to tell a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, started: str | None) -> bool:
    """Alive, and the same process (its start time matches): a reused pid is not the claim's holder."""
    return pid_alive(pid) and (started is None or _process_start(pid) in (None, started))


@dataclass
class Holder:
    """Who holds a claim, as written in the claim file."""
    host: str
    pid: int
    started: str | None = None
    worker: str = ""

    @classmethod
    def me(cls, worker: str = "") -> Holder:
        return cls(socket.gethostname(), os.getpid(), _process_start(os.getpid()), worker)

    def __str__(self) -> str:
        return f"{self.worker + ' ' if self.worker else ''}pid {self.pid} on {self.host}"


def read_holder(path: Path) -> Holder | None:
    try:
        data = json.loads(read_regular_text(path))
        return Holder(str(data["host"]), int(data["pid"]), data.get("started"), data.get("worker", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # vanished, or torn by a crash between create and write


def stale_reason(path: Path, now: float | None = None, stale_after_s: float = STALE_AFTER_S) -> str | None:
    """Why the claim at `path` is stale, or None while its holder may still be working."""
    now = time.time() if now is None else now
    try:
        info = path.stat()
    except FileNotFoundError:
        return "released"
    kind = special_kind(info.st_mode)
    if kind is not None:
        return f"it is {kind}, not a claim file (not opened)"
    holder = read_holder(path)
    if holder is not None and holder.host == socket.gethostname():
        return None if _pid_alive(holder.pid, holder.started) else f"its holder ({holder}) is gone"
    age, skew = heartbeat_age(path, info.st_mtime_ns, now)
    if age > stale_after_s:
        return (f"no heartbeat for {age:.0f} s (holder {holder or 'unreadable'}; stale after {stale_after_s:.0f} s)"
                f"{skew}")
    return None


def heartbeat_age(path: Path, mtime_ns: int, now: float) -> tuple[float, str]:
    """(seconds since the claim's last heartbeat as this process can tell, a note when its clock is skewed).

    A time stamp more than SKEW_TOLERANCE_S ahead of `now` is aged from when this process first saw it."""
    ahead = mtime_ns / 1e9 - now
    if ahead <= SKEW_TOLERANCE_S:
        return now - mtime_ns / 1e9, ""
    first_seen = _FIRST_SEEN.setdefault((str(path), mtime_ns), now)
    return now - first_seen, (f"; its time stamp is {ahead:.0f} s in the future (clock skew), so it was aged from "
                              "when this process first saw it")


@dataclass
class Claim:
    """A held claim; `release()` (or the context manager) removes it and stops the heartbeat."""
    path: Path
    holder: Holder
    heartbeat_s: float = HEARTBEAT_S
    _stop: threading.Event = field(default_factory=threading.Event)

    def start_heartbeat(self) -> Claim:
        thread = threading.Thread(target=self._beat, name=f"claim {self.path.name}", daemon=True)
        thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except OSError:
                return  # taken over (we were wrongly thought dead) or the folder is gone

    def release(self) -> None:
        self._stop.set()
        if read_holder(self.path) == self.holder:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _create_exclusive(path: Path, holder: Holder) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump({"host": holder.host, "pid": holder.pid, "started": holder.started, "worker": holder.worker,
                   "claimed_at": time.time()}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _take_over(path: Path) -> None:
    """Moves a stale claim aside under a unique name (only one of several racers succeeds), then drops it."""
    aside = path.with_name(f".{path.name}.stale-{socket.gethostname()}-{os.getpid()}-{time.time_ns()}")
    try:
        path.rename(aside)
    except FileNotFoundError:
        return
    aside.unlink(missing_ok=True)


def try_claim(results_dir: Path, variant: str, chunk_id: int, worker: str = "",
              stale_after_s: float = STALE_AFTER_S) -> tuple[Claim | None, str]:
    """Claims the chunk: (Claim, "") on success, (None, why not) when a live process holds it.

    A stale claim is taken over, and the returned reason-free Claim carries on. Raises OSError
    when the claims folder cannot be written (read-only or full filesystem).
    """
    path = claim_path(results_dir, variant, chunk_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = Holder.me(worker)
    for _ in range(3):
        if _create_exclusive(path, holder):
            return Claim(path, holder), ""
        why = stale_reason(path, stale_after_s=stale_after_s)
        if why is None:
            return None, f"{path.name} is held by {read_holder(path) or 'another process'}"
        _take_over(path)
    return None, f"{path.name}: lost the race for a stale claim three times"


def remove_stale_claims(results_dir: Path, stale_after_s: float = STALE_AFTER_S) -> list[str]:
    """Removes every stale claim in the folder; returns one note per removed claim."""
    notes = []
    for path in sorted(claims_dir(results_dir).glob("*.claim")):
        why = stale_reason(path, stale_after_s=stale_after_s)
        if why is not None and why != "released":
            _take_over(path)
            notes.append(f"stale claim {path.name} removed: {why}")
    return notes


def live_claims(results_dir: Path, stale_after_s: float = STALE_AFTER_S) -> list[str]:
    """Names of the claims whose holders may still be working."""
    return [p.name for p in sorted(claims_dir(results_dir).glob("*.claim"))
            if stale_reason(p, stale_after_s=stale_after_s) is None]
