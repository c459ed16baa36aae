"""File names that come from the data stay inside the folder they name a file in.

Why it exists: a dataset row's `file_name` is joined to a configured folder (`val2017/`,
`dataset.image_dir`), and a cache file name is derived from a URL. Both are text written by whoever
made the data, so either could point elsewhere: `../../escape.jpg`, an absolute path, a Windows
path with backslashes or a drive letter, a symlink in the folder that leads out of it, a NUL byte,
an empty name or one that resolves to the folder itself, a symlink loop, a name longer than the file
system allows (ENAMETOOLONG). Every such name is refused here with a
reason that says so; the reader then fails that one row, and preflight does not count it as
available. URL-encoded names (`%2e%2e%2f...`) are not decoded on disk: they are literal names inside
the folder and are checked like any other.
"""
from __future__ import annotations

import errno
import os
import re
from pathlib import Path, PurePosixPath

from vlmbench.config import shown

DRIVE = re.compile(r"^[A-Za-z]:")
CACHE_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
NAME_CHARS = 120  # a file name in a message, as config.shown bounds it
CACHE_NAME_MAX_CHARS = 80  # well under the 255-byte name limit of common file systems, digest included


class UnsafeFileName(OSError):
    """A file name from the data that would resolve outside its folder, or names no file at all."""


def confined_path(folder: str | Path, name: str) -> Path:
    """The resolved path of `name` inside `folder` (symlinks followed); raises UnsafeFileName when it
    would lie anywhere else or name no file (empty, NUL byte, the folder itself, a symlink loop, a name
    over the file system's length limit)."""
    reason, named = _unusable_name(name), f"file name {shown(name, NAME_CHARS)}"
    if reason:
        raise UnsafeFileName(f"{named} {reason}; it must name a file inside {str(folder)!r}")
    root = Path(folder).resolve()
    resolved = _resolved(root / name.replace("\\", "/"), named, folder)
    if resolved == root:
        raise UnsafeFileName(f"{named} names the image folder {str(folder)!r} itself, not a file")
    if not resolved.is_relative_to(root):
        raise UnsafeFileName(f"{named} escapes the image folder {str(folder)!r}: it resolves to "
                             f"{shown(str(resolved), NAME_CHARS)} (through '..', an absolute path or a symlink); only files inside "
                             "the folder are read")
    return _openable(resolved, named, folder)


def _resolved(path: Path, named: str, folder) -> Path:
    """`path` with symlinks followed; UnsafeFileName for a symlink loop (Path.resolve raises RuntimeError
    on Python < 3.13; later versions leave it to the stat in `_openable`)."""
    try:
        return path.resolve()
    except RuntimeError:  # "Symlink loop from ..."
        raise UnsafeFileName(f"{named} is a symlink loop; it names no file in {str(folder)!r}") from None


def _openable(resolved: Path, named: str, folder) -> Path:
    """`resolved`, unless the OS can never open it: a symlink loop (ELOOP) or a name over the file system's
    limit (ENAMETOOLONG, which Path.resolve passes over) raise UnsafeFileName. An absent or unreadable
    file passes: the reader says so (preflight's 'file not found', a row's 'unavailable:')."""
    try:
        os.stat(resolved)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENAMETOOLONG):
            raise UnsafeFileName(f"{named} cannot be opened: [Errno {exc.errno}] {exc.strerror}; it names no "
                                 f"file in {str(folder)!r}") from None
    return resolved


def _unusable_name(name) -> str:
    """Why a name cannot be joined to a folder at all, or '' when it can."""
    if not isinstance(name, str) or not name.strip():
        return "is empty"
    if "\x00" in name:
        return "holds a NUL byte"
    posix = name.replace("\\", "/")
    if PurePosixPath(posix).is_absolute() or DRIVE.match(posix):
        return "is an absolute path and escapes the image folder"
    return ""


def safe_cache_name(name: str) -> str:
    """A file-name tail made of [A-Za-z0-9._-] only, without leading dots, at most CACHE_NAME_MAX_CHARS
    long (the end kept, so the extension survives); 'image' when nothing is left."""
    cleaned = CACHE_NAME_UNSAFE.sub("_", name)[-CACHE_NAME_MAX_CHARS:].lstrip(".")
    return cleaned or "image"
