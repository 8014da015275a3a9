"""Explainability: attention weights on demand, attention rollout, gradient-weighted rollout, image overlays,
and the same for video models (heat maps over time, GIFs and timelines)."""

from .attention import attention_maps, recording
from .clip import load_clip
from .focus import center_mass
from .image import load_crop, to_input
from .maps import METHODS, Explanation, explain
from .overlay import figure_size, overlay, render_figure, save_figure, save_gif
from .rollout import grad_rollout, query_relevance, rollout
from .video import block_mixing, explain_video, factorised_steps
from .video_figures import clip_figures, render_timeline, save_timeline, timeline_size, token_shares

__all__ = [
    "METHODS", "Explanation", "attention_maps", "block_mixing", "center_mass", "clip_figures",
    "explain", "explain_video", "factorised_steps", "figure_size", "grad_rollout", "load_clip", "load_crop",
    "overlay", "query_relevance", "recording", "render_figure", "render_timeline", "rollout",
    "save_figure", "save_gif", "save_timeline", "timeline_size", "to_input", "token_shares",
]
