"""Heat maps drawn on the image the model saw: single overlays, grids of heads, animated GIFs for video.

Every panel is drawn at the model's input size, pixel for pixel, so a figure's size is known in advance:
``columns * W`` wide and ``TITLE_PX + rows * (H + CAPTION_PX)`` high (see :func:`figure_size`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

TITLE_PX = 30
CAPTION_PX = 20
MIN_PANEL = 224  # smaller inputs (e.g. 32 or 128 px models) are enlarged by a whole factor to be readable
DPI = 100
COLORMAP = "jet"  # red = most relevant, blue = least: the convention of the rollout papers


def is_flat(heat: np.ndarray) -> bool:
    """Whether a map has no contrast to show (all values equal up to rounding), like the seed preset's."""
    heat = np.asarray(heat, dtype=np.float64)
    return bool(heat.max() - heat.min() <= 1e-12 * max(np.abs(heat).max(), 1.0))


def normalise(heat: np.ndarray) -> np.ndarray:
    """Scale a map to [0, 1] (min to 0, max to 1); a flat map, which says nothing, becomes all zeros."""
    heat = np.asarray(heat, dtype=np.float64)
    return np.zeros_like(heat) if is_flat(heat) else (heat - heat.min()) / (heat.max() - heat.min())


def upsample(heat: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A [grid_h, grid_w] map -> [H, W], bilinear, so each patch's value sits at the patch's centre."""
    image = Image.fromarray(np.asarray(heat, dtype=np.float32), mode="F")
    return np.asarray(image.resize((size[1], size[0]), Image.BILINEAR), dtype=np.float64)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the colour-mapped, normalised ``heat`` [grid_h, grid_w] over ``image`` uint8 [H, W, 3]."""
    from matplotlib import colormaps

    colours = colormaps[COLORMAP](upsample(normalise(heat), image.shape[:2]))[..., :3] * 255.0
    return np.round((1 - alpha) * image + alpha * colours).clip(0, 255).astype(np.uint8)


def enlarge(image: np.ndarray, min_side: int = MIN_PANEL) -> np.ndarray:
    """Scale uint8 [H, W, 3] up by the smallest whole factor that makes its shorter side >= ``min_side``."""
    factor = -(-min_side // min(image.shape[:2]))
    if factor <= 1:
        return image
    size = (image.shape[1] * factor, image.shape[0] * factor)
    return np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))


def figure_size(panel: tuple[int, int], count: int, columns: int) -> tuple[int, int]:
    """(width, height) in pixels of a figure of ``count`` panels of ``panel`` = (H, W) in ``columns``."""
    columns = min(columns, count)
    rows = -(-count // columns)
    return columns * panel[1], TITLE_PX + rows * (panel[0] + CAPTION_PX)


def save_figure(path: str | Path, panels: Sequence[np.ndarray], captions: Sequence[str], title: str,
                columns: int = 4) -> Path:
    """Save panels (uint8 [H, W, 3], all one size) in a grid with a caption each and a title, as an RGB PNG."""
    Image.fromarray(render_figure(panels, captions, title, columns)).save(path, format="PNG")
    return Path(path)


def render_figure(panels: Sequence[np.ndarray], captions: Sequence[str], title: str, columns: int = 4) -> np.ndarray:
    """The figure of :func:`save_figure` as uint8 [height, width, 3]."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    height, width = panels[0].shape[:2]
    columns = min(columns, len(panels))
    fig_w, fig_h = figure_size((height, width), len(panels), columns)
    figure = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI, facecolor="white")
    canvas = FigureCanvasAgg(figure)
    figure.text(0.5, 1 - TITLE_PX / 2 / fig_h, title, ha="center", va="center", weight="bold",
                fontsize=_fitting_font(title, fig_w, 11))
    for index, (panel, caption) in enumerate(zip(panels, captions)):
        row, col = divmod(index, columns)
        top = TITLE_PX + row * (height + CAPTION_PX)
        axes = figure.add_axes((col * width / fig_w, 1 - (top + height) / fig_h, width / fig_w, height / fig_h))
        axes.imshow(panel, interpolation="nearest")
        axes.set_axis_off()
        figure.text((col + 0.5) * width / fig_w, 1 - (top + height + CAPTION_PX / 2) / fig_h, caption,
                    ha="center", va="center", fontsize=_fitting_font(caption, width, 8))
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())
    return np.ascontiguousarray(rgba[..., :3])


def _fitting_font(text: str, width_px: int, largest: float) -> float:
    """A font size (points) at which ``text`` fits in ``width_px``: bold sans glyphs average ~0.62 em."""
    fits = 0.95 * width_px / (0.62 * max(len(text), 1)) * 72 / DPI
    return max(5.0, min(largest, fits))


def save_gif(path: str | Path, frames: Sequence[np.ndarray], fps: float = 4.0) -> Path:
    """Save uint8 [H, W, 3] frames as an animated GIF that loops forever."""
    images = [Image.fromarray(frame) for frame in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return Path(path)
