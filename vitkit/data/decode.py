"""Decoding image files into RGB, whatever their mode, with one clear reason when a file is unusable.

Pillow's ``verify()`` passes a truncated JPEG; only a full decode finds it, so every image is decoded in full.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}

# Decompression bombs are refused by Pillow above this many pixels; keep its guard but allow large photos.
Image.MAX_IMAGE_PIXELS = 16_000 * 16_000
ImageFile.LOAD_TRUNCATED_IMAGES = False


class BadImage(Exception):
    """An image file that cannot be used; ``str()`` is the reason in a few words."""


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def load_rgb(path: str | Path | bytes, min_size: int | None = None) -> Image.Image:
    """Open and fully decode an image (a file, or its encoded bytes) as 8-bit RGB, applying its EXIF orientation.

    ``min_size`` lets JPEGs decode at a reduced scale that still keeps the shorter side >= ``min_size``
    (much faster for large photos that will be downsized anyway).

    Grayscale, 16-bit, palette, CMYK and RGBA images are converted (transparency composited on white).
    Raises :class:`BadImage` with the reason when the file is empty, truncated or not an image.
    """
    source = io.BytesIO(path) if isinstance(path, bytes) else Path(path)
    try:
        if (len(path) if isinstance(path, bytes) else source.stat().st_size) == 0:  # type: ignore[union-attr]
            raise BadImage("empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's EXIF and palette warnings are not the user's problem
            with Image.open(source) as image:
                if min_size and image.format == "JPEG":
                    scale = min_size / min(image.size)
                    image.draft("RGB", (max(1, int(image.size[0] * scale)), max(1, int(image.size[1] * scale))))
                image.load()
                ImageOps.exif_transpose(image, in_place=True)  # no copy of the pixels when nothing turns
                return to_rgb(image)
    except BadImage:
        raise
    except UnidentifiedImageError:
        raise BadImage("not an image Pillow can read") from None
    except Image.DecompressionBombError:
        raise BadImage("too many pixels (decompression-bomb guard)") from None
    except MemoryError:  # a damaged header can claim a size below the guard that still does not fit in memory
        raise BadImage("too large to decode in memory") from None
    except (OSError, SyntaxError, ValueError, TypeError) as error:
        # TypeError: Pillow's TIFF reader trusts tag types, e.g. StripOffsets stored as a RATIONAL (found by fuzzing)
        reason = str(error) or type(error).__name__
        raise BadImage("truncated or corrupt: " + reason.splitlines()[0][:120]) from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (an RGB image is returned as it is, not copied)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit and float images: scale the actual range to 0..255 instead of clipping at 255.
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        array = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
        image = Image.fromarray(array.round().astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")
