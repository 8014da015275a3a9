"""Image augmentation in plain tensor code (no torchvision): crops, flips, TrivialAugment-Wide / RandAugment,
mixup and cutmix (the last two also for video clips: they touch only the last two, spatial, dimensions).

Every random choice draws from an explicit ``torch.Generator``, so a batch is a pure function of
(seed, epoch, step): that is what makes a resumed run bit-identical to an uninterrupted one.
Images here are float tensors [C, H, W] (or [B, C, H, W]) in the 0..255 range until ``normalize``.
"""

from __future__ import annotations

import functools
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


Box = tuple[int, int, int, int]
"""(top, left, height, width) of a crop, in pixels."""


def random_resized_crop(image: torch.Tensor, size: int, g: torch.Generator, scale: tuple[float, float] = (0.25, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> torch.Tensor:
    """Crop a random area (fraction ``scale`` of the image, aspect ``ratio``) and resize it to ``size``."""
    top, left, height, width = random_crop_box(*image.shape[-2:], g, scale, ratio)
    return resize(image[..., top : top + height, left : left + width], (size, size))


def random_crop_box(h: int, w: int, g: torch.Generator, scale: tuple[float, float] = (0.25, 1.0),
                    ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Box:
    """The box of :func:`random_resized_crop` in an ``h`` x ``w`` image (Szegedy et al.'s Inception crop, as
    torchvision draws it: ten tries, then the central square). Drawn from the size alone, so a file's box can be
    chosen before the file is decoded."""
    area = h * w
    for _ in range(10):
        target = area * _uniform(g, *scale)
        aspect = math.exp(_uniform(g, math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (), generator=g))
            left = int(torch.randint(0, w - cw + 1, (), generator=g))
            return top, left, ch, cw
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


def random_shift(image: torch.Tensor, size: int, g: torch.Generator, pad: int) -> torch.Tensor:
    """Pad by ``pad`` pixels (edge values) and take a random ``size`` crop: a shift of up to +-pad pixels."""
    image = center_crop(image, size)
    padded = F.pad(image[None], (pad, pad, pad, pad), mode="replicate")[0]
    top, left = (int(torch.randint(0, 2 * pad + 1, (), generator=g)) for _ in range(2))
    return padded[..., top : top + size, left : left + size]


# --- the operations of TrivialAugment / RandAugment --------------------------------------------------------
# Each is f(image [C, H, W] in 0..255, value in the operation's own unit), defined as PIL's ImageOps /
# ImageEnhance (which the papers used) and torchvision.transforms.v2.functional define them; geometric ones
# sample bilinearly and fill what moves in from outside with grey (FILL). tests/test_augment_peers.py checks
# each against torchvision.

def _luma(image: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma, as PIL's ``convert("L")``: [1, H, W]."""
    return 0.299 * image[0:1] + 0.587 * image[1:2] + 0.114 * image[2:3]


def _blend(image: torch.Tensor, other: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL's ImageEnhance: ``other + factor * (image - other)``; factor 1 is the identity."""
    return torch.lerp(other, image, factor).clamp_(0, 255)  # one pass instead of four


def brightness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with black: ``factor * image``."""
    return torch.mul(image, factor).clamp_(0, 255)


def color(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Saturation: 0 is the grey image, 1 the input."""
    return _blend(image, _luma(image).expand_as(image), factor)


def contrast(image: torch.Tensor, factor: float) -> torch.Tensor:
    """0 is the image's mean grey, 1 the input."""
    return _blend(image, _luma(image).mean().expand_as(image), factor)


def sharpness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend with PIL's SMOOTH filter (3x3, centre 5, others 1, / 13; the border pixels kept): 0 is smooth."""
    rows = image[:, :-2] + image[:, 1:-1] + image[:, 2:]  # the 3x3 sums by shifted adds: ~10x a conv2d here
    box = rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]
    inside = image[:, 1:-1, 1:-1]
    smooth = box.add_(inside, alpha=4).div_(13)
    out = image.clone()  # the border is its own smooth value, so blending leaves it as it is
    out[:, 1:-1, 1:-1] = _blend(inside, smooth, factor)
    return out


def posterize(image: torch.Tensor, bits: float) -> torch.Tensor:
    """Keep the top ``bits`` bits of each 8-bit value."""
    step = 2.0 ** (8 - int(bits))
    return torch.floor(image / step) * step


def solarize(image: torch.Tensor, threshold: float) -> torch.Tensor:
    """Invert the values at or above ``threshold`` (a fraction of 255; 1 leaves the image as it is)."""
    return torch.lerp(image, 255 - image, (image >= 255 * threshold).to(image.dtype))  # 3x torch.where here


def autocontrast(image: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """Stretch each channel to 0..255 (a flat channel stays as it is)."""
    low = image.amin(dim=(1, 2), keepdim=True)
    high = image.amax(dim=(1, 2), keepdim=True)
    flat = high <= low
    scale = torch.where(flat, torch.ones_like(high), 255.0 / (high - low).clamp_min(1e-12))
    return ((image - torch.where(flat, torch.zeros_like(low), low)) * scale).clamp(0, 255)


def equalize(image: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """PIL's ``ImageOps.equalize`` per channel, on the values rounded to 8 bits."""
    out = torch.empty_like(image)
    for c in range(image.shape[0]):
        channel = image[c].round().clamp(0, 255).long()
        hist = torch.bincount(channel.flatten(), minlength=256)
        step = (channel.numel() - int(hist[hist.nonzero().max()])) // 255
        if step == 0:
            out[c] = image[c]
            continue
        # lut[k] = (step // 2 + pixels below k) // step
        below = torch.cat([hist.new_zeros(1), hist.cumsum(0)[:-1]])
        lut = ((below + step // 2) // step).clamp(0, 255).to(image.dtype)
        out[c] = lut[channel]
    return out


def _warp(image: torch.Tensor, inverse: list[list[float]]) -> torch.Tensor:
    """Resample ``image`` through ``inverse`` (2x3: output pixel -> input pixel, both with the origin at the image
    centre and pixel centres at ``i - (n - 1) / 2``), bilinear, grey outside."""
    _, h, w = image.shape
    (a, b, c), (d, e, f) = inverse
    # grid_sample's (-1, 1) spans the outer edges of the border pixels (align_corners=False); one matrix product
    # of the pixel centres (x, y, 1) maps them there, as torchvision computes its grid.
    theta = torch.tensor([[a / (w / 2), d / (h / 2)], [b / (w / 2), e / (h / 2)], [c / (w / 2), f / (h / 2)]])
    grid = _centres(h, w).matmul(theta).view(1, h, w, 2).to(image.dtype)
    sampled = F.grid_sample(image[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    inside = F.grid_sample(_ones(h, w, image.dtype), grid, mode="bilinear", padding_mode="zeros",
                           align_corners=False)[0]  # how much of each output pixel lies inside the image
    return sampled.sub_(FILL).mul_(inside).add_(FILL)  # inside * (sampled - FILL) + FILL


@functools.lru_cache(maxsize=8)
def _ones(h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
    """A [1, 1, h, w] plane of ones (shared: never modify it)."""
    return torch.ones(1, 1, h, w, dtype=dtype)


@functools.lru_cache(maxsize=8)
def _centres(h: int, w: int) -> torch.Tensor:
    """(x, y, 1) of every pixel centre, about the image centre, row by row: [h * w, 3] (shared: never modify it)."""
    y, x = torch.meshgrid(torch.arange(h) - (h - 1) / 2, torch.arange(w) - (w - 1) / 2, indexing="ij")
    return torch.stack([x.flatten(), y.flatten(), torch.ones(h * w)], dim=1)


def shear_x(image: torch.Tensor, factor: float) -> torch.Tensor:
    """PIL's ``transform(AFFINE, (1, factor, 0, 0, 1, 0))``: x_in = x + factor * y, y from the top edge."""
    return _warp(image, [[1.0, factor, factor * image.shape[1] / 2], [0.0, 1.0, 0.0]])


def shear_y(image: torch.Tensor, factor: float) -> torch.Tensor:
    return _warp(image, [[1.0, 0.0, 0.0], [factor, 1.0, factor * image.shape[2] / 2]])


def translate_x(image: torch.Tensor, pixels: float) -> torch.Tensor:
    """Move the content ``pixels`` to the right (negative: left)."""
    if pixels == int(pixels):
        return _shift(image, int(pixels), -1)
    return _warp(image, [[1.0, 0.0, -pixels], [0.0, 1.0, 0.0]])


def translate_y(image: torch.Tensor, pixels: float) -> torch.Tensor:
    """Move the content ``pixels`` down (negative: up)."""
    if pixels == int(pixels):
        return _shift(image, int(pixels), -2)
    return _warp(image, [[1.0, 0.0, 0.0], [0.0, 1.0, -pixels]])


def _shift(image: torch.Tensor, pixels: int, dim: int) -> torch.Tensor:
    """A translation by whole pixels along ``dim`` (the policies' are): what bilinear sampling gives, copied (10x)."""
    out, n = torch.full_like(image, FILL), image.shape[dim]
    if abs(pixels) < n:
        out.narrow(dim, max(0, pixels), n - abs(pixels)).copy_(image.narrow(dim, max(0, -pixels), n - abs(pixels)))
    return out


def rotate(image: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate counter-clockwise about the centre."""
    cos, sin = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return _warp(image, [[cos, -sin, 0.0], [sin, cos, 0.0]])


OPS: dict[str, Op] = {
    "identity": lambda x, v: x, "shear_x": shear_x, "shear_y": shear_y, "translate_x": translate_x,
    "translate_y": translate_y, "rotate": rotate, "brightness": brightness, "color": color, "contrast": contrast,
    "sharpness": sharpness, "posterize": posterize, "solarize": solarize, "autocontrast": autocontrast,
    "equalize": equalize,
}
"""The 14 operations of TrivialAugment-Wide and RandAugment, in torchvision's order (a seeded draw picks the same)."""
NAMES = tuple(OPS)


# --- the policies: which value each operation gets at each of the 31 levels -------------------------------

LEVELS = 31
"""Magnitude levels 0..30, as in both papers and torchvision / timm."""


@dataclass(frozen=True)
class Space:
    """The strongest value (at level 30) of each operation; levels in between are evenly spaced."""

    shear: float
    translate: float
    """Pixels, or a fraction of the image size when ``translate_relative``."""
    translate_relative: bool
    rotate: float
    enhance: float
    """Brightness / color / contrast / sharpness factors range over 1 +- this."""
    fewest_bits: int
    """Posterize keeps 8 bits at level 0 down to this many at level 30."""


TRIVIAL_WIDE = Space(shear=0.99, translate=32.0, translate_relative=False, rotate=135.0, enhance=0.99, fewest_bits=2)
"""TrivialAugment-Wide (Müller & Hutter 2021, Table 1 "wide"), as torchvision's ``TrivialAugmentWide``."""
RANDAUGMENT = Space(shear=0.3, translate=150.0 / 331.0, translate_relative=True, rotate=30.0, enhance=0.9,
                    fewest_bits=4)
"""RandAugment (Cubuk et al. 2020), as torchvision's ``RandAugment`` (translate: 150 px of the paper's 331)."""

UNSCALED = {"identity", "autocontrast", "equalize"}
"""Operations without a magnitude."""
SIGNED = {"shear_x", "shear_y", "translate_x", "translate_y", "rotate", "brightness", "color", "contrast",
          "sharpness"}


@functools.lru_cache(maxsize=4096)
def op_value(name: str, level: int, space: Space, size: tuple[int, int]) -> float | None:
    """The value of operation ``name`` at ``level`` (0..30) in ``space`` for an image of ``size`` (H, W);
    None for operations without a magnitude. Signs are drawn separately."""
    def even(strongest: float) -> float:
        return float(torch.linspace(0.0, strongest, LEVELS)[level])

    if name in ("shear_x", "shear_y"):
        return even(space.shear)
    if name in ("translate_x", "translate_y"):
        extent = size[1] if name == "translate_x" else size[0]
        return float(int(even(space.translate * extent if space.translate_relative else space.translate)))
    if name == "rotate":
        return even(space.rotate)
    if name in ("brightness", "color", "contrast", "sharpness"):
        return even(space.enhance)
    if name == "posterize":
        return float(8 - round(level * (8 - space.fewest_bits) / (LEVELS - 1)))
    if name == "solarize":
        return float(torch.linspace(1.0, 0.0, LEVELS)[level])
    return None


def _apply(image: torch.Tensor, name: str, level: int, space: Space, g: torch.Generator) -> torch.Tensor:
    value = op_value(name, level, space, tuple(image.shape[-2:]))
    if value is None:
        return OPS[name](image, 0.0)
    if name in SIGNED and torch.rand((), generator=g).item() <= 0.5:
        value = -value
    if name in ("brightness", "color", "contrast", "sharpness"):
        value = 1.0 + value
    return OPS[name](image, value)


def _pick(g: torch.Generator) -> str:
    return NAMES[int(torch.randint(len(NAMES), (), generator=g))]


def trivial_augment(image: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """TrivialAugment-Wide (Müller & Hutter 2021): one random operation at a random level of 0..30."""
    name = _pick(g)
    level = 0 if name in UNSCALED else int(torch.randint(LEVELS, (), generator=g))
    return _apply(image, name, level, TRIVIAL_WIDE, g)


def rand_augment(image: torch.Tensor, g: torch.Generator, num_ops: int = 2, magnitude: int = 9) -> torch.Tensor:
    """RandAugment (Cubuk et al. 2020): ``num_ops`` random operations, each at level ``magnitude`` (0..30; timm's
    ``rand-m9-n2`` is the default)."""
    for _ in range(num_ops):
        image = _apply(image, _pick(g), magnitude, RANDAUGMENT, g)
    return image


def apply_policy(image: torch.Tensor, policy: str, g: torch.Generator, num_ops: int = 2,
                 magnitude: int = 9) -> torch.Tensor:
    """``--augment``'s ``policy`` (``trivial``, ``randaugment`` or ``none``) on one image in 0..255."""
    if policy == "trivial":
        return trivial_augment(image, g)
    if policy == "randaugment":
        return rand_augment(image, g, num_ops, magnitude)
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


def mix_rows(rows: Callable[[list[int]], tuple[torch.Tensor, torch.Tensor]], positions: list[int],
             batch_size: int, draw: MixDraw | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``positions`` of a global batch of ``batch_size``, each mixed with its partner (position B-1-p) as
    ``draw`` says. ``rows(ps)`` builds the inputs and soft targets of positions ``ps``; each is built once, so a
    process that builds a shard of the batch gets exactly the matching rows of the one-process batch."""
    if draw is None:
        return rows(positions)
    wanted = sorted(set(positions) | {batch_size - 1 - p for p in positions})
    inputs, targets = rows(wanted)
    row = {p: i for i, p in enumerate(wanted)}
    own, partner = [row[p] for p in positions], [row[batch_size - 1 - p] for p in positions]
    return apply_mix(inputs[own], targets[own], inputs[partner], targets[partner], draw)


def _beta(alpha: float, g: torch.Generator) -> float:
    """A Beta(alpha, alpha) sample from the generator (via two Gamma draws)."""
    x = torch._standard_gamma(torch.tensor([alpha, alpha]), generator=g)
    return float(x[0] / x.sum())
