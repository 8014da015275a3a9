"""A model's evaluation preprocessing as a callable (``vitkit.transforms``): the steps ``vitkit eval`` and
``vitkit predict`` take, for inputs already in memory as well as files.

Images: decode (EXIF orientation applied, any mode to RGB), fit the shorter side to ``short_side`` (bicubic,
or the checkpoint's ``interpolation``; antialiased), centre-crop ``image_size``, normalise. A file path decodes
exactly as ``predict`` decodes it (a
large JPEG at a reduced scale first, which a Pillow image opened in full does not get: the two then differ by
resampling noise). Videos: decode with the shorter side at ``short_side`` (at most ``MAX_FRAMES`` evenly spaced
frames), then the ``views`` (clips x crops) of ``predict``, or the central clip with ``views=None``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ..data.decode import BadImage, to_rgb
from ..data.images import fit_image, load_for_model
from ..data.pipeline import Preprocess, eval_batch
from ..data.video import BadVideo, decode_video
from ..data.video_folder import MAX_FRAMES
from ..data.video_preprocess import VideoPreprocess
from ..errors import VitkitError

PATHS = (str, Path)


class ImageTransform:
    """``transform(image)`` -> float [3, S, S]; ``transform([images])`` -> [B, 3, S, S]. An image is a file path,
    encoded bytes, a Pillow image, a uint8 numpy array [H, W, 3] (or [H, W]), or a tensor [3, H, W] (uint8, or
    float in 0..1)."""

    def __init__(self, prep: Preprocess) -> None:
        self.prep = prep

    def __call__(self, images: Any) -> torch.Tensor:
        if isinstance(images, (list, tuple)):
            return eval_batch([self.pixels(image) for image in images], self.prep)
        return eval_batch([self.pixels(images)], self.prep)[0]

    def pixels(self, image: Any) -> torch.Tensor:
        """``image`` decoded and fitted to the shorter side, before the crop: uint8 [3, h, w]."""
        if isinstance(image, (*PATHS, bytes)):
            try:
                return load_for_model(image if isinstance(image, bytes) else Path(image), self.prep.short_side,
                                      self.prep.interpolation)
            except BadImage as error:
                raise VitkitError(f"{_named(image)} is not a readable image ({error})") from None
        pil = to_rgb(ImageOps.exif_transpose(image)) if isinstance(image, Image.Image) else array_image(image)
        return fit_image(pil, self.prep.short_side, self.prep.interpolation)

    def __repr__(self) -> str:
        p = self.prep
        return (f"ImageTransform(shorter side {p.short_side} ({p.interpolation}), centre crop {p.image_size}, "
                f"mean {tuple(p.mean)}, std {tuple(p.std)})")


class VideoTransform:
    """``transform(video)`` -> [views, 3, T, S, S] (or the central clip [3, T, S, S] with ``views=None``). A video
    is a file path, the file's bytes, or its frames: uint8 [T, H, W, 3] (numpy) or [T, 3, H, W] (tensor)."""

    def __init__(self, prep: VideoPreprocess, views: tuple[int, int] | None = (2, 3)) -> None:
        self.prep, self.views = prep, views

    def __call__(self, video: Any) -> torch.Tensor:
        frames = self.frames(video)
        try:
            if self.views is None:
                return self.prep.sampler.clip(frames, False)
            return self.prep.sampler.views(frames, *self.views)
        except BadVideo as error:
            raise VitkitError(f"{_named(video)} is not a usable video ({error})") from None

    def frames(self, video: Any) -> torch.Tensor:
        """The decoded frames as the video sets keep them: uint8 [L, 3, h, w], shorter side ``short_side``."""
        if isinstance(video, (*PATHS, bytes)):
            try:
                return decode_video(video, self.prep.short_side, MAX_FRAMES)
            except BadVideo as error:
                raise VitkitError(f"{_named(video)} is not a usable video ({error})") from None
        frames = torch.as_tensor(np.asarray(video)) if isinstance(video, np.ndarray) else video
        if not isinstance(frames, torch.Tensor) or frames.ndim != 4:
            raise VitkitError(f"a video is a file path or frames [T, H, W, 3] / [T, 3, H, W], not {_what(video)}")
        if isinstance(video, np.ndarray) or (frames.shape[1] != 3 and frames.shape[-1] == 3):
            frames = frames.permute(0, 3, 1, 2)
        return _fit_frames(_as_uint8(frames), self.prep.short_side)


def array_image(image: Any) -> Image.Image:
    """A numpy array [H, W, 3] / [H, W] or a tensor [3, H, W] / [1, H, W] (uint8, or float in 0..1) as Pillow RGB."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] not in (1, 3):
            raise VitkitError(f"an image tensor is [3, H, W] (or [1, H, W]), got shape {list(image.shape)}")
        image = _as_uint8(image.detach().cpu()).permute(1, 2, 0).numpy()
    elif isinstance(image, np.ndarray):
        if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 3, 4))):
            raise VitkitError(f"an image array is [H, W, 3] (or [H, W]), got shape {list(image.shape)}")
        image = _as_uint8(torch.from_numpy(np.ascontiguousarray(image))).numpy()
    else:
        raise VitkitError(f"an image is a file path, bytes, a PIL image, a numpy array or a tensor, not {_what(image)}")
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    return to_rgb(Image.fromarray(image))


def _as_uint8(values: torch.Tensor) -> torch.Tensor:
    """uint8 as is; floats are taken as 0..1 (torchvision's ``ToTensor`` range) and rounded to 0..255."""
    if values.dtype == torch.uint8:
        return values
    if values.is_floating_point():
        return values.float().mul(255).round().clamp(0, 255).to(torch.uint8)
    raise VitkitError(f"pixels must be uint8 (0..255) or float (0..1), got {values.dtype}")


def _fit_frames(frames: torch.Tensor, short_side: int) -> torch.Tensor:
    """In-memory frames as ``decode_video`` returns a file's: at most MAX_FRAMES evenly spaced, shorter side
    ``short_side`` (even sizes)."""
    if len(frames) > MAX_FRAMES:
        frames = frames[[int((i + 0.5) * len(frames) / MAX_FRAMES) for i in range(MAX_FRAMES)]]
    height, width = frames.shape[-2:]
    scale = short_side / min(height, width)
    size = (max(2, round(height * scale / 2) * 2), max(2, round(width * scale / 2) * 2))
    if size == (height, width):
        return frames.contiguous()
    resized = F.interpolate(frames.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def _named(source: Any) -> str:
    return "the given bytes" if isinstance(source, bytes) else str(source)


def _what(value: Any) -> str:
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__}" + (f" of shape {list(shape)}" if shape is not None else "")


def transform_of(prep: Preprocess | VideoPreprocess, views: tuple[int, int] | None = (2, 3)) -> Any:
    """The callable for ``prep``: an :class:`ImageTransform` or a :class:`VideoTransform`."""
    return VideoTransform(prep, views) if isinstance(prep, VideoPreprocess) else ImageTransform(prep)
