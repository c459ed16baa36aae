"""references.json: the human captions of the experiment's images, written at each run's start and
checked like any input before a report scores against them.

Why it exists: the report trusted the file. Nested 200,000 deep it crashed vlmbench-report with a
RecursionError; references rotated between images changed CIDEr silently (6.3 to 0.534 on the smoke
run). Now the file is read bounded (size, nesting), typed (image id -> non-empty list of non-blank
strings) and matched against what the run that wrote it recorded in its config snapshot: the digest
of the references (`resolved.references_sha256`) or, in snapshots older than that digest, the digest
of the image ids in order (`resolved.image_ids_sha256`). Any mismatch refuses the report with the fix.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Optional

import yaml

from vlmbench.config import ConfigError, shown
from vlmbench.paths import NotARegularFile, read_regular_bytes
from vlmbench.results.records import snapshots_by_fingerprint, write_json

FILE_NAME = "references.json"
# The 5000 COCO val2017 images' references are 1.7 MB; COCO train2017's 118k images about 40 MB.
MAX_BYTES = 256 * 2**20
IMAGE_ID = re.compile(r"-?[0-9]{1,19}")  # a JSON key holding an integer image id (int64)
SHOWN_PROBLEMS = 5
FIX = ("rerun `pytest benchmarks` with this experiment's config on the folder (finished chunks are skipped; "
       "it rewrites references.json from the data source)")


def references_payload(rows) -> dict[str, list[str]]:
    """What references.json holds: image id (as a JSON key) -> reference captions, in the rows' order."""
    return {str(r.image_id): list(r.captions) for r in rows}


def references_digest(payload: dict[str, list[str]]) -> str:
    """sha256 of the references in a canonical form (key order kept, compact, UTF-8): written and read
    files agree whatever their indentation."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def image_ids_digest(ids: list[int]) -> str:
    """sha256 of the image ids in order, as the config snapshot records it (`resolved.image_ids_sha256`)."""
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()


def write_references(results_dir: Path, rows) -> None:
    write_json(Path(results_dir) / FILE_NAME, references_payload(rows))


def load_references(results_dir: Path, fingerprint: Optional[str] = None) -> dict[int, list[str]]:
    """Image id -> reference captions from `results_dir/references.json`, checked; ConfigError naming the
    problem and the fix otherwise. With `fingerprint`, the file must match what the newest config snapshot
    of that experiment recorded (the digests above; a snapshot without them checks nothing more)."""
    path = Path(results_dir) / FILE_NAME
    payload = _read_bounded(path)
    _check_types(payload, path)
    if fingerprint is not None:
        _check_recorded(payload, path, fingerprint)
    return {int(key): captions for key, captions in payload.items()}


def _read_bounded(path: Path):
    """The parsed JSON of `path`, refused when larger than MAX_BYTES or nested too deep to parse."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{path} is {size} bytes, more than the {MAX_BYTES} a references file can need; "
                              f"it is not one vlmbench wrote. Fix: {FIX}.")
        return json.loads(read_regular_bytes(path))  # a FIFO is refused, never opened
    except RecursionError:
        raise ConfigError(f"{path} is nested too deeply to be references (expected {{image id: [captions]}}, "
                          f"two levels). Fix: {FIX}.") from None
    except (OSError, NotARegularFile, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} cannot be read as JSON ({type(exc).__name__}: {exc}). Fix: {FIX}.") from None


def _check_types(payload, path: Path) -> None:
    """Refuses anything but {"<integer id>": ["caption", ...], ...}, naming the first few problems."""
    if not isinstance(payload, dict) or not payload:
        raise ConfigError(f"{path} holds {type(payload).__name__} {shown(payload)}; expected a non-empty object "
                          f"{{image id: [captions]}}. Fix: {FIX}.")
    problems = [p for key, value in payload.items() if (p := _entry_problem(key, value))]
    if problems:
        more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
        raise ConfigError(f"{path} has {len(problems)} malformed entries: {'; '.join(problems[:SHOWN_PROBLEMS])}"
                          f"{more}. Fix: {FIX}.")


def _entry_problem(key: str, value) -> Optional[str]:
    """Why one entry is not an image id with its references, or None."""
    if not IMAGE_ID.fullmatch(key):
        return f"key {shown(key, 40)} is not an integer image id"
    if not isinstance(value, list) or not value:
        return f"image {key}: {shown(value, 60)} is not a non-empty list of captions"
    if not all(isinstance(c, str) and c.strip() for c in value):
        return f"image {key}: {shown(value, 60)} holds something other than non-blank strings"
    return None


def _check_recorded(payload: dict, path: Path, fingerprint: str) -> None:
    """The digests the newest snapshot of `fingerprint` recorded must be those of `payload`."""
    snapshot = snapshots_by_fingerprint(path.parent).get(fingerprint)
    resolved = _resolved_section(snapshot) if snapshot is not None else {}
    checks = (("references_sha256", references_digest(payload), "its references"),
              ("image_ids_sha256", image_ids_digest([int(k) for k in payload]), "its image ids"))
    for key, actual, what in checks:
        recorded = resolved.get(key)
        if isinstance(recorded, str):
            if recorded != actual:
                raise ConfigError(f"{path} does not match this experiment's data: the digest of {what} is "
                                  f"{actual[:16]}..., but {snapshot.name} recorded {key} {recorded[:16]}... when "
                                  f"the run wrote it (edited, rotated between images, or another experiment's "
                                  f"file). Fix: {FIX}.")
            return  # the strongest digest recorded decides


def _resolved_section(snapshot: Path) -> dict:
    try:
        data = yaml.safe_load(snapshot.read_text())
    except (OSError, yaml.YAMLError, RecursionError):
        return {}
    resolved = data.get("resolved") if isinstance(data, dict) else None
    return resolved if isinstance(resolved, dict) else {}
