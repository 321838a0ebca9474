"""Photos citizens take of a fault: checked, turned upright and encoded again as JPEG, so that nothing but the
picture is kept (no GPS position, camera, time or thumbnail metadata), at most 2048 pixels on the longer side."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from cases.errors import ReportError

MAX_BYTES = 8 * 1024 * 1024
"""a photo as sent: at most 8 MiB"""
MAX_SIDE = 2048
MAX_PIXELS = 50_000_000
"""a picture larger than this (a decompression bomb, or a panorama) is refused"""
TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def clean(data: bytes) -> tuple[bytes, tuple[int, int]]:
    """The photo re-encoded without metadata, and its size; ReportError when it is no photo we take."""
    if len(data) > MAX_BYTES:
        raise ReportError(f"a photo may be at most {MAX_BYTES // (1024 * 1024)} MiB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in TYPES:
                    raise ReportError(f"a photo must be JPEG, PNG or WebP, not {image.format or 'unknown'}")
                if image.width * image.height > MAX_PIXELS:
                    raise ReportError(f"a photo may have at most {MAX_PIXELS // 1_000_000} million pixels")
                upright = ImageOps.exif_transpose(image)
                picture = upright.convert("RGB")
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError, OSError) as exc:
        raise ReportError(f"the photo could not be read as an image ({type(exc).__name__})") from None
    picture.thumbnail((MAX_SIDE, MAX_SIDE))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=85, optimize=True)  # no exif=, no icc: nothing but the pixels
    return out.getvalue(), picture.size
