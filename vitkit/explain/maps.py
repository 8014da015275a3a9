"""Heat maps over the patch grid: what a model's classifier token looked at, by one of three methods.

- ``attention``: the raw attention of one layer, one map per head (or one chosen head);
- ``rollout``: attention rollout over all layers (Abnar & Zuidema 2020);
- ``grad-rollout``: rollout weighted by the gradient of the explained class score (Chefer et al. 2021).

The query is the token the classifier reads: [CLS] for ``pool="cls"`` models, the mean of the patch queries for
mean-pool models. Only patch tokens are kept as keys, reshaped to the model's ``grid_size``. Video models
(ViViT) are explained by ``video.py``, which ``explain`` hands them to.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import VitkitError
from ..models.vit import VisionTransformer
from ..models.vivit import VideoVisionTransformer
from .attention import recording, stack_layers
from .rollout import grad_rollout, query_relevance, rollout

METHODS = ("attention", "rollout", "grad-rollout")


@dataclass
class Explanation:
    """Heat maps for a batch of images and what the model predicted for them."""

    method: str
    heat: torch.Tensor
    """[B, maps, grid_h, grid_w]: one map per head for ``attention`` (unless one head was chosen), else one.
    Video models: [B, maps, T', grid_h, grid_w], a map over the tubelets of each temporal token."""
    captions: list[str]
    """One caption per map, e.g. ``layer 11 head 3``."""
    probabilities: torch.Tensor
    """[B, classes]: softmax of the logits (empty when the model has no classification head)."""
    target: torch.Tensor
    """[B]: the class each map explains (the predicted one unless chosen; -1 without a head)."""


def explain(model: nn.Module, images: torch.Tensor, method: str = "rollout", *, layer: int = -1,
            head: int | None = None, target: int | None = None) -> Explanation:
    """Heat maps of ``method`` for ``images`` [B, C, H, W] (or clips [B, C, T, H, W] of a video model);
    ``layer``/``head`` apply to ``attention``, ``target`` (default: the predicted class) to ``grad-rollout``."""
    if method not in METHODS:
        raise VitkitError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if isinstance(model, VideoVisionTransformer):
        from .video import explain_video  # video.py builds on this module

        return explain_video(model, images, method, layer=layer, head=head, target=target)
    grid, pool, prefix = _readout(model)
    with torch.set_grad_enabled(method == "grad-rollout"):
        if method == "grad-rollout":
            # A graph to the attention is needed even when every parameter is frozen.
            images = images.detach().requires_grad_(True)
        with recording(model) as maps:
            logits = model(images)
        attention = stack_layers(maps)
        probabilities, classes = _classes(logits, model.config.num_classes, target, method)
        if method == "grad-rollout":
            gradients = _gradients(logits, classes, maps)
            heat = query_relevance(grad_rollout(attention.detach(), gradients), pool, prefix)[:, None]
            captions = ["gradient-weighted rollout"]
        elif method == "rollout":
            heat = query_relevance(rollout(attention), pool, prefix)[:, None]
            captions = ["rollout over all layers"]
        else:
            heat, captions = _layer_attention(attention, layer, head, pool, prefix)
    heat = heat.detach().reshape(*heat.shape[:2], *grid)
    return Explanation(method, heat, captions, probabilities.detach(), classes)


def _readout(model: nn.Module) -> tuple[tuple[int, int], str, int]:
    """The patch grid, pooling mode and number of prefix tokens of a vitkit image model."""
    if not isinstance(model, VisionTransformer):
        raise VitkitError(f"cannot explain a {type(model).__name__}: explain supports vitkit's "
                          "VisionTransformer and VideoVisionTransformer")
    return tuple(model.config.grid_size), model.config.pool, model.num_prefix_tokens


def _classes(logits: torch.Tensor, num_classes: int, target: int | None,
             method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax probabilities and the class to explain per image (the predicted one unless ``target``)."""
    batch = logits.shape[0]
    if num_classes == 0:
        if method == "grad-rollout":
            raise VitkitError("grad-rollout explains a class, but this model has no classification head")
        return logits.new_zeros(batch, 0), torch.full((batch,), -1, dtype=torch.long, device=logits.device)
    probabilities = logits.detach().softmax(dim=-1)
    if target is None:
        return probabilities, probabilities.argmax(dim=-1)
    if not 0 <= target < num_classes:
        raise VitkitError(f"target class {target} is out of range: the model has {num_classes} classes")
    return probabilities, torch.full((batch,), target, dtype=torch.long, device=logits.device)


def _gradients(logits: torch.Tensor, classes: torch.Tensor, maps: list[torch.Tensor]) -> torch.Tensor:
    """d(score of each image's class) / d(attention), [B, layers, heads, N, N]."""
    return stack_layers(map_gradients(logits, classes, maps))


def map_gradients(logits: torch.Tensor, classes: torch.Tensor, maps: list[torch.Tensor]) -> list[torch.Tensor]:
    """d(score of each input's class) / d(each recorded map), one tensor per map, shaped like it."""
    score = logits.gather(1, classes[:, None]).sum()  # inputs do not interact, so one backward serves all
    grads = torch.autograd.grad(score, maps, allow_unused=True)
    # The seed preset's token maps are derived from its batch-axis weights, not used by the forward: zero.
    return [torch.zeros_like(m) if g is None else g for m, g in zip(maps, grads)]


def _layer_attention(attention: torch.Tensor, layer: int, head: int | None, pool: str,
                     prefix: int) -> tuple[torch.Tensor, list[str]]:
    """The query row of every head (or one) of one layer: [B, heads, patches] and their captions."""
    layer, chosen = chosen_layer_heads(layer, head, *attention.shape[1:3])
    heat = query_relevance(attention[:, layer], pool, prefix)[:, chosen]
    return heat, [f"layer {layer} head {h}" for h in chosen]


def chosen_layer_heads(layer: int, head: int | None, layers: int, heads: int,
                       unit: str = "layers") -> tuple[int, list[int]]:
    """``--layer`` / ``--head`` (negative counts from the end) as a layer index and the list of heads to draw."""
    if not -layers <= layer < layers:
        raise VitkitError(f"--layer {layer} is out of range: the model has {layers} {unit} (0 to {layers - 1})")
    if head is not None and not -heads <= head < heads:
        raise VitkitError(f"--head {head} is out of range: the model has {heads} heads (0 to {heads - 1})")
    return layer % layers, list(range(heads)) if head is None else [head % heads]
