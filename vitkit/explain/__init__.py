"""Explainability: attention weights on demand, attention rollout, gradient-weighted rollout, image overlays."""

from .attention import attention_maps, recording
from .focus import center_mass
from .image import load_crop, preprocess_of, to_input
from .maps import METHODS, Explanation, explain
from .overlay import figure_size, overlay, render_figure, save_figure, save_gif
from .rollout import grad_rollout, query_relevance, rollout

__all__ = [
    "METHODS", "Explanation", "attention_maps", "center_mass", "explain", "figure_size", "grad_rollout",
    "load_crop", "overlay", "preprocess_of", "query_relevance", "recording", "render_figure", "rollout",
    "save_figure", "save_gif", "to_input",
]
