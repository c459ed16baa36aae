"""Where vlmbench keeps things between runs (caches) and how files are written safely.

Why it exists: one place decides the cache root (VLMBENCH_CACHE, else ~/.cache/vlmbench) and the
atomic-write rule (write a temporary file beside the target, then rename), so no reader ever sees a
half-written CSV, JSON, image or model folder.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("VLMBENCH_CACHE", Path.home() / ".cache" / "vlmbench"))
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
