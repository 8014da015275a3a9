"""Decoding (vitkit/data/decode.py): the fast array path gives exactly the pixels Pillow gives, for every EXIF
orientation, grayscale, reduced-scale and non-JPEG file, and damaged files get Pillow's one-line verdict.
Training crops cut straight from a file (images.load_resized_crop) match Pillow's own crop-and-resize."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from vitkit.data import decode
from vitkit.data.decode import BadImage, load_rgb_array
from vitkit.data.images import load_resized_crop


def _photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A smooth picture with detail (gradients plus blurred noise): JPEG-like content whose crops all differ."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    noise = rng.random((height // 8 + 2, width // 8 + 2, 3))
    detail = np.kron(noise, np.ones((8, 8, 1)))[:height, :width]
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1)
    return ((0.6 * base + 0.4 * detail) * 255).astype(np.uint8)


def _jpeg(array: np.ndarray, orientation: int = 1, mode: str = "RGB", **options) -> bytes:
    image = Image.fromarray(array).convert(mode)
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif, **options)
    return buffer.getvalue()


def _pillow(data: bytes, draft: tuple[int, int] | None = None) -> np.ndarray:
    """The reference: Pillow's own decode, EXIF turn and RGB conversion."""
    with Image.open(io.BytesIO(data)) as image:
        if draft:
            image.draft("RGB", draft)
        image.load()
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_comes_out_as_pillow_turns_it(orientation) -> None:
    data = _jpeg(_photo(64, 40), orientation)
    got = load_rgb_array(data)
    assert got.shape == (40, 64, 3) if orientation < 5 else (64, 40, 3)
    np.testing.assert_array_equal(got, _pillow(data))
    assert got.flags.writeable and got.flags.c_contiguous


@pytest.mark.parametrize("mode, options", [("L", {}), ("RGB", {"progressive": True}), ("CMYK", {}),
                                           ("RGB", {"subsampling": 0})])
def test_grayscale_progressive_cmyk_and_444_jpegs_equal_pillow(mode, options) -> None:
    data = _jpeg(_photo(48, 36, seed=1), mode=mode, **options)
    np.testing.assert_array_equal(load_rgb_array(data), _pillow(data))


def test_png_with_transparency_takes_pillows_path(tmp_path) -> None:
    rgba = np.dstack([_photo(20, 10), np.full((10, 20), 128, np.uint8)])
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    assert np.array_equal(load_rgb_array(path), np.asarray(decode.load_rgb(path)))


@pytest.mark.parametrize("min_size, draft", [(100, (133, 100)), (50, (66, 50)), (30, (40, 30)), (250, (333, 250))])
def test_reduced_decodes_pick_pillows_scale_and_pixels(min_size, draft) -> None:
    data = _jpeg(_photo(400, 300, seed=2))
    got = load_rgb_array(data, min_size=min_size)
    want = _pillow(data, draft)
    assert got.shape == want.shape and min(got.shape[:2]) >= min_size
    np.testing.assert_array_equal(got, want)


def test_without_simplejpeg_the_same_pixels_come_through_pillow(monkeypatch) -> None:
    data = _jpeg(_photo(64, 48, seed=3), orientation=6)
    fast = load_rgb_array(data, min_size=20)
    monkeypatch.setattr(decode, "simplejpeg", None)
    np.testing.assert_array_equal(load_rgb_array(data, min_size=20), fast)


def test_a_truncated_jpeg_gets_pillows_reason() -> None:
    data = _jpeg(_photo(64, 48))
    with pytest.raises(BadImage, match="truncated or corrupt"):
        load_rgb_array(data[: len(data) // 2])
    with pytest.raises(BadImage, match="empty file"):
        load_rgb_array(b"")


@pytest.mark.parametrize("width, height, orientation", [(300, 200, 1), (1600, 1200, 1), (1200, 1600, 6)])
def test_a_crop_cut_from_the_file_matches_pillows_crop_and_resize(width, height, orientation) -> None:
    data = _jpeg(_photo(width, height, seed=4), orientation)
    full = Image.fromarray(_pillow(data))
    fit_h, fit_w = (256, round(256 * full.width / full.height)) if full.width > full.height else \
        (round(256 * full.height / full.width), 256)
    box = (fit_h // 5, fit_w // 3, fit_h // 2, fit_w // 2)  # top, left, height, width on the fitted size
    got = load_resized_crop(data, 64, 256, lambda h, w: box if (h, w) == (fit_h, fit_w) else pytest.fail((h, w)))
    sx, sy = full.width / fit_w, full.height / fit_h
    edges = (box[1] * sx, box[0] * sy, (box[1] + box[3]) * sx, (box[0] + box[2]) * sy)
    want = torch.from_numpy(np.array(full.resize((64, 64), Image.BILINEAR, box=edges))).permute(2, 0, 1)
    diff = (got.float() - want.float()).abs()
    # A 1,600 px photo decodes at 1/8 here (the crop stays >= 64 px): its DCT averaging smooths more than Pillow.
    assert diff.mean() < (1.0 if width < 1000 else 4.0), diff.mean()
    shifted = np.array(full.resize((64, 64), Image.BILINEAR, box=(edges[0] + 8 * sx, *edges[1:])))
    assert diff.mean() * 3 < (torch.from_numpy(shifted).permute(2, 0, 1).float() - want.float()).abs().mean()
