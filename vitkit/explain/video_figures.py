"""Heat maps of a video model drawn on its clip: an animated GIF, frame by frame, and a "frame x time" PNG.

Each map is scaled to [0, 1] over the whole clip (its min and max over all temporal tokens), not per frame, so
colours compare across time: a frame the model hardly used stays blue. A tubelet of ``t`` frames is one token,
so its ``t`` frames share one map.

- GIF: one figure per clip frame, a panel per map (as the image figures of ``overlay.py``, same size rules).
- Timeline PNG: a row of ``TIMELINE_PANEL`` px overlays per map, one per temporal token (drawn on the middle
  frame of its tubelet), above a bar chart of each token's share of the total relevance (mean over the maps).
  Its size is :func:`timeline_size`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .overlay import CAPTION_PX, COLORMAP, DPI, TITLE_PX, _fitting_font, enlarge, normalise, render_figure, upsample

TIMELINE_PANEL = 128
CHART_PX = 120
ALPHA = 0.5


def clip_figures(frames: np.ndarray, heat: np.ndarray, captions: Sequence[str], titles: Sequence[str],
                 columns: int) -> list[np.ndarray]:
    """One figure per frame of ``frames`` uint8 [T, H, W, 3]: that frame under each map of ``heat``
    [maps, T', grid_h, grid_w] at its temporal token, captioned, titled ``titles[i]``."""
    tubelet = _tubelet(frames, heat)
    scaled = [normalise(m) for m in heat]
    figures = []
    for index, frame in enumerate(frames):
        big = enlarge(frame)
        panels = [blend(big, m[index // tubelet]) for m in scaled]
        figures.append(render_figure(panels, captions, titles[index], columns))
    return figures


def timeline_size(tokens: int, maps: int, panel: int = TIMELINE_PANEL) -> tuple[int, int]:
    """(width, height) in pixels of the timeline of ``maps`` maps over ``tokens`` temporal tokens."""
    return tokens * panel, TITLE_PX + maps * (CAPTION_PX + panel) + CHART_PX


def save_timeline(path: str | Path, frames: np.ndarray, heat: np.ndarray, captions: Sequence[str],
                  title: str) -> Path:
    """Save the "frame x time" figure of ``heat`` [maps, T', grid_h, grid_w] on ``frames`` as an RGB PNG."""
    Image.fromarray(render_timeline(frames, heat, captions, title)).save(path, format="PNG")
    return Path(path)


def render_timeline(frames: np.ndarray, heat: np.ndarray, captions: Sequence[str], title: str,
                    panel: int = TIMELINE_PANEL) -> np.ndarray:
    """The figure of :func:`save_timeline` as uint8 [height, width, 3]."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    tubelet, (maps, tokens) = _tubelet(frames, heat), heat.shape[:2]
    fig_w, fig_h = timeline_size(tokens, maps, panel)
    figure = Figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI, facecolor="white")
    canvas = FigureCanvasAgg(figure)
    figure.text(0.5, 1 - TITLE_PX / 2 / fig_h, title, ha="center", va="center", weight="bold",
                fontsize=_fitting_font(title, fig_w, 11))
    keys = [_square(frames[t * tubelet + tubelet // 2], panel) for t in range(tokens)]
    for row, (caption, scaled) in enumerate(zip(captions, (normalise(m) for m in heat))):
        top = TITLE_PX + row * (CAPTION_PX + panel)
        figure.text(0.5, 1 - (top + CAPTION_PX / 2) / fig_h, caption, ha="center", va="center",
                    fontsize=_fitting_font(caption, fig_w, 8))
        for t in range(tokens):
            axes = figure.add_axes((t * panel / fig_w, 1 - (top + CAPTION_PX + panel) / fig_h, panel / fig_w,
                                    panel / fig_h))
            axes.imshow(blend(keys[t], scaled[t]), interpolation="nearest")
            axes.set_axis_off()
    _bar_chart(figure, token_shares(heat), tubelet, (fig_w, fig_h))
    canvas.draw()
    return np.ascontiguousarray(np.asarray(canvas.buffer_rgba())[..., :3])


def token_shares(heat: np.ndarray) -> np.ndarray:
    """Each temporal token's share of the relevance of ``heat`` [maps, T', ...]: per map its token totals over
    their sum, then the mean over maps; [T'], summing to 1 (zeros for maps with no mass)."""
    totals = np.asarray(heat, dtype=np.float64).reshape(*heat.shape[:2], -1).sum(axis=-1)  # [maps, T']
    sums = totals.sum(axis=1, keepdims=True)
    shares = np.divide(totals, sums, out=np.zeros_like(totals), where=sums > 0)
    return shares.mean(axis=0)


def blend(image: np.ndarray, heat: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Blend a map already scaled to [0, 1], colour-mapped, over ``image`` uint8 [H, W, 3] (``overlay.overlay``
    scales each map on its own; here the scale is the whole clip's)."""
    from matplotlib import colormaps

    colours = colormaps[COLORMAP](upsample(np.clip(heat, 0, 1), image.shape[:2]))[..., :3] * 255.0
    return np.round((1 - alpha) * image + alpha * colours).clip(0, 255).astype(np.uint8)


def _bar_chart(figure, shares: np.ndarray, tubelet: int, size: tuple[int, int]) -> None:
    """The relevance share of each temporal token, one bar under each column of panels."""
    fig_w, fig_h = size
    axes = figure.add_axes((0, 28 / fig_h, 1, (CHART_PX - 52) / fig_h))
    tokens = len(shares)
    axes.bar(range(tokens), shares, width=0.6, color="tab:red")
    for t, share in enumerate(shares):
        axes.text(t, share, f"{share:.0%}", ha="center", va="bottom", fontsize=7)
    axes.set_xlim(-0.5, tokens - 0.5)
    axes.set_ylim(0, max(float(shares.max()), 1e-9) * 1.3)
    axes.set_xticks(range(tokens), [_frames_label(t, tubelet) for t in range(tokens)], fontsize=7)
    axes.set_yticks([])
    for side in ("top", "right", "left"):
        axes.spines[side].set_visible(False)
    figure.text(0.5, (CHART_PX - 12) / fig_h, "share of relevance per temporal token", ha="center",
                va="center", fontsize=_fitting_font("share of relevance per temporal token", fig_w, 8))


def _frames_label(token: int, tubelet: int) -> str:
    """The clip frames (1-based) a temporal token covers: ``frame 3`` or ``frames 3-4``."""
    first, last = token * tubelet + 1, (token + 1) * tubelet
    return f"frame {first}" if first == last else f"frames {first}-{last}"


def _square(frame: np.ndarray, side: int) -> np.ndarray:
    """A frame uint8 [H, W, 3] resized to ``side`` x ``side``."""
    return np.asarray(Image.fromarray(frame).resize((side, side), Image.BICUBIC))


def _tubelet(frames: np.ndarray, heat: np.ndarray) -> int:
    """Frames per temporal token: the clip's frames over the maps' T'."""
    if heat.ndim != 4 or len(frames) % heat.shape[1]:
        raise ValueError(f"expected heat [maps, T', grid_h, grid_w] with T' dividing {len(frames)} frames, "
                         f"got {tuple(heat.shape)}")
    return len(frames) // heat.shape[1]
