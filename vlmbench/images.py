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

from vlmbench.data import ImageRow


@dataclass
class LoadedImage:
    row: ImageRow
    image: Optional[Image.Image]
    error: Optional[str] = None


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def read_source_bytes(source: str, cache=None) -> bytes:
    """The raw bytes of a local file or of a URL (through the image cache)."""
    if is_url(source):
        from vlmbench.fetch import image_cache_for
        return (cache or image_cache_for()).get(source)
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


def load_image(row: ImageRow, size: int, cache=None) -> LoadedImage:
    try:
        return LoadedImage(row, decode_image(read_source_bytes(row.source, cache), size))
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        return LoadedImage(row, None, f"{type(exc).__name__}: {exc}")
