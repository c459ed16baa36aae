"""Reading one image, whatever shape real files are in.

Why it exists: a benchmark over thousands of real files meets grayscale, CMYK, PNGs named .jpg,
EXIF-rotated photos, truncated and empty files. Each is either read correctly (RGB, upright, resized
to the experiment's square size) or reported as a failure with a reason, so that one bad file costs
one row, never a chunk.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from PIL import Image, ImageOps, UnidentifiedImageError

from vlmbench.data import ImageRow, is_url


@dataclass
class LoadedImage:
    row: ImageRow
    image: Optional[Image.Image]
    error: Optional[str] = None


def read_local(source: str | Path) -> bytes:
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {source}")
    return path.read_bytes()


def decode_image(data: bytes, size: int) -> Image.Image:
    """Decodes fully (truncation raises here, not later), fixes orientation, converts to RGB, resizes."""
    if not data:
        raise ValueError("empty file (0 bytes)")
    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        upright = ImageOps.exif_transpose(opened)
        rgb = upright.convert("RGB")
    return rgb.resize((size, size), Image.Resampling.BICUBIC)


DECODE_ERRORS = (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)


def read_and_decode(source: str, size: int, cache=None) -> Image.Image:
    """A local file, or a URL through the image cache; a cached copy that does not decode is fetched again."""
    if not is_url(source):
        return decode_image(read_local(source), size)
    from vlmbench.fetch import image_cache_for
    cache = cache or image_cache_for()
    data = cache.get(source)
    try:
        return decode_image(data, size)
    except DECODE_ERRORS:
        return decode_image(cache.refetch(source), size)


def load_image(row: ImageRow, size: int, cache=None) -> LoadedImage:
    """The decoded image, or the reason it cannot be had (a local file_name that escapes its folder
    fails here with UnsafeFileName, an OSError, before anything is opened)."""
    try:
        if not is_url(row.source):
            return LoadedImage(row, decode_image(read_local(row.local_path()), size))
        return LoadedImage(row, read_and_decode(row.source, size, cache))
    except DECODE_ERRORS as exc:
        return LoadedImage(row, None, f"{type(exc).__name__}: {exc}")
