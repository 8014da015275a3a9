"""Image augmentation in plain tensor code (no torchvision): crops, flips, TrivialAugment / RandAugment,
mixup and cutmix.

Every random choice draws from an explicit ``torch.Generator``, so a batch is a pure function of
(seed, epoch, step): that is what makes a resumed run bit-identical to an uninterrupted one.
Images here are float tensors [C, H, W] (or [B, C, H, W]) in the 0..255 range until ``normalize``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

Op = Callable[[torch.Tensor, float], torch.Tensor]
FILL = 128.0  # grey, for pixels that geometric ops move in from outside the image


def _uniform(g: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * torch.rand((), generator=g).item()


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with antialiasing, [C, H, W] -> [C, *size]."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` window (the image is resized up first if it is smaller)."""
    h, w = image.shape[-2:]
    if min(h, w) < size:
        scale = size / min(h, w)
        image = resize(image, (max(size, round(h * scale)), max(size, round(w * scale))))
        h, w = image.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return image[..., top : top + size, left : left + size]


def random_resized_crop(image: torch.Tensor, size: int, g: torch.Generator, scale: tuple[float, float] = (0.25, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Crop a random area (fraction ``scale`` of the image, aspect ``ratio``) and resize it to ``size``."""
    h, w = image.shape[-2:]
    area = h * w
    for _ in range(10):
        target = area * _uniform(g, *scale)
        aspect = math.exp(_uniform(g, math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (), generator=g))
            left = int(torch.randint(0, w - cw + 1, (), generator=g))
            return resize(image[..., top : top + ch, left : left + cw], (size, size))
    return resize(center_crop(image, min(h, w)), (size, size))


def random_shift(image: torch.Tensor, size: int, g: torch.Generator, pad: int) -> torch.Tensor:
    """Pad by ``pad`` pixels (edge values) and take a random ``size`` crop: a shift of up to +-pad pixels."""
    image = center_crop(image, size)
    padded = F.pad(image[None], (pad, pad, pad, pad), mode="replicate")[0]
    top, left = (int(torch.randint(0, 2 * pad + 1, (), generator=g)) for _ in range(2))
    return padded[..., top : top + size, left : left + size]


# --- TrivialAugment / RandAugment operations: f(image in 0..255, magnitude in [0, 1]) ---------------------

def _gray(image: torch.Tensor) -> torch.Tensor:
    return (0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2])[None]


def _blend(image: torch.Tensor, other: torch.Tensor, factor: float) -> torch.Tensor:
    return (other + factor * (image - other)).clamp(0, 255)


def _signed(m: float, g: torch.Generator) -> float:
    return m if torch.rand((), generator=g).item() < 0.5 else -m


def _affine(image: torch.Tensor, matrix: list[list[float]]) -> torch.Tensor:
    theta = torch.tensor(matrix, dtype=image.dtype)[None]
    grid = F.affine_grid(theta, [1, *image.shape], align_corners=False)
    # Fill outside pixels with grey: shift by FILL so zero-padding lands on it.
    out = F.grid_sample(image[None] - FILL, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return (out[0] + FILL).clamp(0, 255)


def _equalize(image: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(image)
    for c in range(image.shape[0]):
        channel = image[c].round().clamp(0, 255).long()
        hist = torch.bincount(channel.flatten(), minlength=256).float()
        cdf = hist.cumsum(0)
        nonzero = cdf[cdf > 0]
        if nonzero.numel() == 0 or cdf[-1] == nonzero[0]:
            out[c] = image[c]
            continue
        lut = ((cdf - nonzero[0]) / (cdf[-1] - nonzero[0]) * 255).clamp(0, 255)
        out[c] = lut[channel]
    return out


def _autocontrast(image: torch.Tensor) -> torch.Tensor:
    low = image.amin(dim=(1, 2), keepdim=True)
    high = image.amax(dim=(1, 2), keepdim=True)
    scale = torch.where(high > low, 255.0 / (high - low), torch.ones_like(high))
    return torch.where(high > low, (image - low) * scale, image)


def _sharpen(image: torch.Tensor, factor: float) -> torch.Tensor:
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], dtype=image.dtype) / 13
    blurred = F.conv2d(image[:, None], kernel[None, None], padding=1)[:, 0]
    blurred[:, [0, -1], :], blurred[:, :, [0, -1]] = image[:, [0, -1], :], image[:, :, [0, -1]]
    return _blend(image, blurred, factor)


def _ops(g: torch.Generator) -> dict[str, Op]:
    """The TrivialAugment-Wide operation set; magnitude 1 is the strongest setting."""
    return {
        "identity": lambda x, m: x,
        "brightness": lambda x, m: _blend(x, torch.zeros_like(x), 1 + _signed(0.99 * m, g)),
        "color": lambda x, m: _blend(x, _gray(x).expand_as(x), 1 + _signed(0.99 * m, g)),
        "contrast": lambda x, m: _blend(x, _gray(x).mean().expand_as(x), 1 + _signed(0.99 * m, g)),
        "sharpness": lambda x, m: _sharpen(x, 1 + _signed(0.99 * m, g)),
        "posterize": lambda x, m: torch.floor(x / 2 ** round(6 * m)) * 2 ** round(6 * m),  # keep 8..2 bits
        "solarize": lambda x, m: torch.where(x >= 255 * (1 - m), 255 - x, x),
        "autocontrast": lambda x, m: _autocontrast(x),
        "equalize": lambda x, m: _equalize(x),
        "rotate": lambda x, m: _rotate(x, _signed(135 * m, g)),
        "shear_x": lambda x, m: _affine(x, [[1, _signed(0.99 * m, g), 0], [0, 1, 0]]),
        "shear_y": lambda x, m: _affine(x, [[1, 0, 0], [_signed(0.99 * m, g), 1, 0]]),
        "translate_x": lambda x, m: _affine(x, [[1, 0, _signed(m, g)], [0, 1, 0]]),  # up to half the width
        "translate_y": lambda x, m: _affine(x, [[1, 0, 0], [0, 1, _signed(m, g)]]),
    }


def _rotate(image: torch.Tensor, degrees: float) -> torch.Tensor:
    a = math.radians(degrees)
    return _affine(image, [[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0]])


def trivial_augment(image: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """TrivialAugment (Müller & Hutter 2021): one random operation at a random strength."""
    ops = _ops(g)
    name = list(ops)[int(torch.randint(0, len(ops), (), generator=g))]
    magnitude = int(torch.randint(0, 31, (), generator=g)) / 30
    return ops[name](image, magnitude)


def rand_augment(image: torch.Tensor, g: torch.Generator, num_ops: int = 2, magnitude: float = 9 / 30) -> torch.Tensor:
    """RandAugment (Cubuk et al. 2020): ``num_ops`` random operations at a fixed strength (0..1)."""
    ops = _ops(g)
    names = list(ops)
    for _ in range(num_ops):
        image = ops[names[int(torch.randint(0, len(names), (), generator=g))]](image, magnitude)
    return image


# --- batch-level: normalisation, mixup, cutmix ------------------------------------------------------------

def normalize(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """0..255 floats -> (x / 255 - mean) / std, per channel."""
    mean_t = torch.tensor(mean, dtype=images.dtype).view(-1, 1, 1) * 255
    std_t = torch.tensor(std, dtype=images.dtype).view(-1, 1, 1) * 255
    return (images - mean_t) / std_t


@dataclass(frozen=True)
class MixDraw:
    """One batch's mixing decision: the mixing weight ``lam`` and, for CutMix, the pasted box."""

    lam: float
    box: tuple[int, int, int, int] | None = None
    """(top, bottom, left, right) of the partner's pixels, for CutMix."""


def draw_mix(g: torch.Generator, mixup: float, cutmix: float, size: tuple[int, int]) -> MixDraw | None:
    """Mixup (Zhang et al. 2018) or CutMix (Yun et al. 2019), half the batches each when both are on;
    None when both are off. Drawn once per batch, so every process of a distributed run draws the same."""
    use_cutmix = cutmix > 0 and (mixup <= 0 or torch.rand((), generator=g).item() < 0.5)
    alpha = cutmix if use_cutmix else mixup
    if alpha <= 0:
        return None
    lam = _beta(alpha, g)
    if not use_cutmix:
        return MixDraw(lam)
    h, w = size
    ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
    cy, cx = int(torch.randint(0, h, (), generator=g)), int(torch.randint(0, w, (), generator=g))
    top, bottom = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    left, right = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    return MixDraw(1 - (bottom - top) * (right - left) / (h * w), (top, bottom, left, right))


def apply_mix(images: torch.Tensor, targets: torch.Tensor, partners: torch.Tensor, partner_targets: torch.Tensor,
              draw: MixDraw | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix each image (and soft target) with its partner as ``draw`` says."""
    if draw is None:
        return images, targets
    if draw.box is None:
        images = draw.lam * images + (1 - draw.lam) * partners
    else:
        top, bottom, left, right = draw.box
        images = images.clone()
        images[..., top:bottom, left:right] = partners[..., top:bottom, left:right]
    return images, draw.lam * targets + (1 - draw.lam) * partner_targets


def mix(images: torch.Tensor, targets: torch.Tensor, g: torch.Generator, mixup: float, cutmix: float,
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix of a whole batch with its own reversal; ``targets`` are soft labels [B, classes]."""
    draw = draw_mix(g, mixup, cutmix, tuple(images.shape[-2:]))
    return apply_mix(images, targets, images.flip(0), targets.flip(0), draw)


def _beta(alpha: float, g: torch.Generator) -> float:
    """A Beta(alpha, alpha) sample from the generator (via two Gamma draws)."""
    x = torch._standard_gamma(torch.tensor([alpha, alpha]), generator=g)
    return float(x[0] / x.sum())
