"""Reading one image, whatever shape real files are in.

Why it exists: a benchmark over thousands of real files meets grayscale, CMYK, PNGs named .jpg,
EXIF-rotated photos, transparent PNGs, 16-bit scans, truncated and empty files. Each is either read
the way the model's authors read it (RGB, upright, resized to the experiment's square size) or
reported as a failure with a reason, so that one bad file costs one row, never a chunk.

Colour conversion follows Qwen's reference loader (`qwen_vl_utils.vision_process.to_rgb`):
transparency is composited on white, using alpha as the paste mask. That loader handles RGBA only;
here every mode that carries transparency (LA, PA, RGBa, palette or L/RGB with a tRNS entry) takes
the same path, and 16-bit grayscale is scaled to 8 bits (Pillow's own `convert` clips it at 255).

A failure's `error` starts with its kind, a stable prefix that resume decisions read:
- `unavailable: ...`   the bytes could not be had (missing file, unreadable file, failed download);
  worth retrying once the image is back (`vlmbench.run.session`).
- `undecodable: ...`   the bytes were had but are no image, or one that cannot become RGB; kept.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vlmbench.data.sources import ImageRow, is_url

UNAVAILABLE, UNDECODABLE = "unavailable", "undecodable"
FAILURE_KINDS = (UNAVAILABLE, UNDECODABLE)
# CSVs written before the kind prefix existed: the exception names that meant "could not be had".
LEGACY_UNAVAILABLE_ERRORS = ("FileNotFoundError:", "DownloadError:", "PermissionError:")

ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa")
WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
WHITE = (255, 255, 255)


class UnsupportedImageMode(ValueError):
    """An image decoded into a pixel format that has no faithful 8-bit RGB rendering."""


@dataclass
class LoadedImage:
    row: ImageRow
    image: Optional[Image.Image]
    error: Optional[str] = None


def failure_kind(error: str) -> str:
    """The kind of a failed row's `error` cell: 'unavailable', 'undecodable' (also old CSVs), or ''."""
    head = error.split(":", 1)[0]
    if head in FAILURE_KINDS:
        return head
    if error.startswith(LEGACY_UNAVAILABLE_ERRORS):
        return UNAVAILABLE
    return UNDECODABLE if error else ""


# ---------------------------------------------------------------- colour modes
def has_transparency(image: Image.Image) -> bool:
    return image.mode in ALPHA_MODES or "transparency" in image.info


def composite_on_white(image: Image.Image) -> Image.Image:
    """RGB with transparent pixels on white: Qwen's `to_rgb` (alpha as the paste mask)."""
    rgba = image.convert("RGBA")
    background = Image.new("RGB", rgba.size, WHITE)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def wide_gray_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit (or 32-bit integer holding 16-bit) grayscale to 8-bit RGB, 0..65535 -> 0..255 rounded.

    Raises UnsupportedImageMode for integer values outside 0..65535: no standard display range.
    """
    values = np.asarray(image, dtype=np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise UnsupportedImageMode(f"image mode {image.mode!r} holds values {values.min()}..{values.max()}, "
                                   "outside 16-bit 0..65535; no standard way to show it as 8-bit RGB")
    eight_bit = np.rint(values / 257.0).astype(np.uint8)
    return Image.fromarray(eight_bit, mode="L").convert("RGB")


def float_to_rgb(image: Image.Image) -> Image.Image:
    """32-bit float grayscale in 0..1 to 8-bit RGB; other ranges raise UnsupportedImageMode."""
    values = np.asarray(image, dtype=np.float64)
    if values.size and (np.isnan(values).any() or values.min() < 0.0 or values.max() > 1.0):
        raise UnsupportedImageMode("image mode 'F' (32-bit float) holds values outside 0..1; "
                                   "no standard way to show it as 8-bit RGB")
    return Image.fromarray(np.rint(values * 255.0).astype(np.uint8), mode="L").convert("RGB")


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB as the model's authors would feed it; UnsupportedImageMode when there is no such image."""
    if image.mode in WIDE_GRAY_MODES:
        return wide_gray_to_rgb(image)
    if image.mode == "F":
        return float_to_rgb(image)
    if has_transparency(image):
        return composite_on_white(image)
    try:
        return image.convert("RGB")
    except ValueError as exc:
        raise UnsupportedImageMode(f"image mode {image.mode!r} cannot be converted to RGB: {exc}") from exc


# ---------------------------------------------------------------- reading and decoding
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
        rgb = to_rgb(upright)
    return rgb.resize((size, size), Image.Resampling.BICUBIC)


DECODE_ERRORS = (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)


def read_bytes(row: ImageRow, cache=None) -> bytes:
    """The row's image bytes: a local file confined to its folder (`row.local_path()`, UnsafeFileName
    otherwise), or a URL's through the image cache. Raises OSError when they cannot be had."""
    if not is_url(row.source):
        return read_local(row.local_path())
    from vlmbench.data.fetch import image_cache_for
    return (cache or image_cache_for()).get(row.source)


def decode_or_refetch(source: str, data: bytes, size: int, cache=None) -> Image.Image:
    """Decodes; a cached download that does not decode is fetched again once (fetch.DownloadError if that fails)."""
    try:
        return decode_image(data, size)
    except DECODE_ERRORS:
        if not is_url(source):
            raise
    from vlmbench.data.fetch import image_cache_for
    return decode_image((cache or image_cache_for()).refetch(source), size)


def load_image(row: ImageRow, size: int, cache=None) -> LoadedImage:
    """The decoded image, or None with `error` = '<kind>: <exception>: <message>' (kinds above).

    A local file_name that escapes its folder fails as unavailable with UnsafeFileName (an OSError),
    before anything is opened."""
    try:
        data = read_bytes(row, cache)
    except OSError as exc:
        return _failed(row, UNAVAILABLE, exc)
    try:
        return LoadedImage(row, decode_or_refetch(row.source, data, size, cache))
    except DECODE_ERRORS as exc:
        from vlmbench.data.fetch import DownloadError
        return _failed(row, UNAVAILABLE if isinstance(exc, DownloadError) else UNDECODABLE, exc)


def _failed(row: ImageRow, kind: str, exc: Exception) -> LoadedImage:
    return LoadedImage(row, None, f"{kind}: {type(exc).__name__}: {exc}")
