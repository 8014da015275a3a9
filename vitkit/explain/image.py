"""One image file -> the model's input, and the exact crop the model saw (to draw heat maps on).

The same steps as ``vitkit predict`` (``vitkit.data``): fit the shorter side to ``short_side``, center-crop
``image_size``, normalise with the model's mean and std, so the probability in a figure's title is the one
``predict`` reports.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.augment import center_crop, normalize
from ..data.decode import BadImage
from ..data.images import load_for_model
from ..data.pipeline import Preprocess
from ..errors import VitkitError


def load_crop(path: str | Path, prep: Preprocess) -> np.ndarray:
    """Decode ``path`` and cut the model's view of it: uint8 [image_size, image_size, 3]."""
    path = Path(path)
    if not path.is_file():
        raise VitkitError(f"{path} does not exist; pass an image file (.jpg, .png, ...)")
    try:
        image = load_for_model(path, prep.short_side, prep.interpolation)
    except BadImage as error:
        raise VitkitError(f"{path} is not a readable image ({error}); pass a valid .jpg or .png") from None
    crop = center_crop(image.float(), prep.image_size)  # float: it may be resized up if tiny
    return crop.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def to_input(crop: np.ndarray, prep: Preprocess) -> torch.Tensor:
    """uint8 [H, W, 3] -> the normalised batch of one, float [1, 3, H, W]."""
    pixels = torch.from_numpy(crop.copy()).permute(2, 0, 1).float()
    return normalize(pixels, prep.mean, prep.std)[None]
