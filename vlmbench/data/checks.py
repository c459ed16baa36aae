"""Structural checks of caption data, run when rows are loaded: before preflight, before any model.

Why it exists: caption data in the wild comes in many shapes, and a wrong shape rarely crashes where
it is read. A `captions` cell that is a string becomes one "reference" per character; COCO
annotations whose `image_id` is the string "139" match no image, so every image has 0 references
and pycocoevalcap fails after the whole run. Each check below takes one cell and returns the
normalised value or names what was expected; `Problems` collects them with their row and column and
turns them into one message.

What is accepted (everything else is refused, never guessed):
- image ids: integers (Python or numpy; a float column with whole numbers, as pandas makes of an
  integer column with gaps, is read as integers). Strings are refused even when they hold digits:
  the results CSVs, references.json and the resume check key images by integer id (the COCO schema's
  type), and a run must not depend on how a source spells its ids.
- references: a non-empty list, tuple or 1-D numpy array (parquet list columns arrive as numpy
  arrays) of non-blank strings. A string cell is refused, also when it holds a JSON list: a source
  that stores lists as text should be written with real list columns.
- file names: non-blank strings (whether they stay inside the image folder is checked per row when
  the image is read: vlmbench.data.safenames).
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional

import numpy as np
import pandas as pd

from vlmbench.config import ConfigError, shown

SHOWN_PROBLEMS = 5
EXCERPT_CHARS = 60  # a cell as config.shown shows it in messages: at most this many characters


class Problems:
    """The structural problems found in one data source; `raise_if_any` turns them into a ConfigError."""

    def __init__(self, source: str):
        self.source = source
        self.found: list[str] = []

    def add(self, where: str, problem: Optional[str]) -> None:
        if problem:
            self.found.append(f"{where}: {problem}")

    def raise_if_any(self, fix: str) -> None:
        if not self.found:
            return
        shown = "\n  - ".join(self.found[:SHOWN_PROBLEMS])
        more = f"\n  ... and {len(self.found) - SHOWN_PROBLEMS} more" if len(self.found) > SHOWN_PROBLEMS else ""
        raise ConfigError(f"data source {self.source!r} has {len(self.found)} structural problem(s), found when "
                          f"its rows were loaded (before any model):\n  - {shown}{more}\n{fix}")


def type_name(value: Any) -> str:
    return "a string" if isinstance(value, str) else f"a {type(value).__name__}"


def is_missing(value: Any) -> bool:
    """None, NaN, pandas' NA or NaT (a null parquet cell arrives as any of these)."""
    if value is None or isinstance(value, (str, bytes, list, tuple, dict, np.ndarray)):
        return value is None
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def image_id_of(value: Any) -> tuple[Optional[int], Optional[str]]:
    """(the id as int, None) or (None, what is wrong with the cell)."""
    if is_missing(value):
        return None, "missing; expected an integer image id"
    if isinstance(value, (bool, np.bool_)):
        return None, f"is the boolean {value!r}; expected an integer image id"
    if isinstance(value, numbers.Integral):
        return int(value), None
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(value), None
    if isinstance(value, str):
        return None, (f"is the string {shown(value, EXCERPT_CHARS)}; expected an integer image id "
                      "(write ids as integers)")
    return None, f"is {type_name(value)} {shown(value, EXCERPT_CHARS)}; expected an integer image id"


def file_name_problem(value: Any) -> Optional[str]:
    if is_missing(value):
        return "missing; expected the image's file name"
    if not isinstance(value, str):
        return f"is {type_name(value)} {shown(value, EXCERPT_CHARS)}; expected the image's file name as a string"
    if not value.strip():
        return f"is the blank string {value!r}; expected the image's file name"
    return None


def captions_of(value: Any) -> tuple[Optional[tuple[str, ...]], Optional[str]]:
    """(the references as a tuple of strings, None) or (None, what is wrong with the cell)."""
    if is_missing(value):
        return None, "missing; expected a non-empty list of reference captions (strings)"
    if isinstance(value, (str, bytes)):
        return None, _text_cell_problem(value)
    if isinstance(value, np.ndarray) and value.ndim != 1:
        return None, f"is a {value.ndim}-D array; expected a flat list of reference captions (strings)"
    if not isinstance(value, (list, tuple, np.ndarray)):
        return None, (f"is {type_name(value)} {shown(value, EXCERPT_CHARS)}; "
                      "expected a non-empty list of reference captions")
    if len(value) == 0:
        return None, "is an empty list; every image needs at least one reference caption"
    for index, caption in enumerate(value):
        problem = caption_problem(caption)
        if problem:
            return None, f"element {index} {problem}"
    return tuple(value), None


def caption_problem(value: Any) -> Optional[str]:
    """What is wrong with one reference caption, or None."""
    if not isinstance(value, str):
        return f"is {type_name(value)} {shown(value, EXCERPT_CHARS)}; expected a caption string"
    if not value.strip():
        return f"is the blank string {shown(value, EXCERPT_CHARS)}; expected a caption"
    return None


def _text_cell_problem(value: str | bytes) -> str:
    looks_like_list = value.lstrip()[:1] in ("[", b"[")
    hint = (" It looks like a list stored as text (JSON or a Python repr): store it as a list column, e.g. "
            "frame['captions'] = frame['captions'].map(json.loads) before to_parquet."
            if looks_like_list else " A plain string would be read as one reference per character.")
    return (f"is {type_name(value)} {shown(value, EXCERPT_CHARS)}, not a list; "
            f"expected a non-empty list of reference captions.{hint}")
