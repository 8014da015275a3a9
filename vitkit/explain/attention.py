"""Record the attention probabilities of a model as [B, layers, heads, tokens, tokens], only when asked.

Every :class:`~vitkit.models.layers.Attention` normally runs the fused kernel, which never materialises the
probabilities. :func:`recording` switches each one to the explicit softmax for the duration of a ``with`` block
and collects what they computed, in the order the layers ran; on exit the fused path is back.

The ``seed`` preset attends across the images of a batch (``over_batch``): token ``i`` of an image mixes only
with token ``i`` of the other images, never with another token of its own image. Its token-to-token map is
therefore diagonal: entry ``(i, i)`` is the weight token ``i`` gives to its own image, and each row's shortfall
from 1 went to the other images. For one image that is the identity: no patch ever reaches [CLS].
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from ..models.layers import Attention


def attention_modules(model: nn.Module) -> list[Attention]:
    """Every attention layer of ``model``, in definition order."""
    return [module for module in model.modules() if isinstance(module, Attention)]


@contextlib.contextmanager
def recording(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Inside the block, each forward appends one [B, heads, N, N] tensor per attention layer to the yielded list.

    The tensors stay in the autograd graph when gradients are enabled (for gradient-weighted rollout).
    """
    modules = attention_modules(model)
    maps: list[torch.Tensor] = []

    def keep(module: Attention, _inputs: object, _output: object) -> None:
        maps.append(_within_image(module.weights) if module.over_batch else module.weights)

    hooks = [module.register_forward_hook(keep) for module in modules]
    previous = [module.keep_weights for module in modules]
    for module in modules:
        module.keep_weights = True
    try:
        yield maps
    finally:
        for module, flag, hook in zip(modules, previous, hooks):
            module.keep_weights = flag
            module.weights = None  # release the [B, heads, N, N] tensors and their graph
            hook.remove()


def attention_maps(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` once; return ``(output, attention)``, attention of shape [B, layers, heads, N, N]."""
    with recording(model) as maps:
        output = model(images)
    return output, stack_layers(maps)


def stack_layers(maps: list[torch.Tensor]) -> torch.Tensor:
    """Per-layer [B, heads, N, N] tensors -> one [B, layers, heads, N, N] tensor."""
    if not maps:
        raise ValueError("the model ran no vitkit Attention layer, so there is no attention to return")
    return torch.stack(maps, dim=1)


def _within_image(weights: torch.Tensor) -> torch.Tensor:
    """Batch-axis weights [N, heads, B, B] -> the token-to-token map of each image, [B, heads, N, N] (diagonal)."""
    own_image = weights.diagonal(dim1=-2, dim2=-1)  # [N, heads, B]: token i's weight on its own image
    return torch.diag_embed(own_image.permute(2, 1, 0))
