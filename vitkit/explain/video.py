"""Heat maps for video models (ViViT): what the classifier looked at, over the tubelets of each temporal token.

The maps are [B, maps, T', grid_h, grid_w]: token ``(t, n)`` is tubelet ``n`` of temporal token ``t`` (the tokens
of a clip are frame-major, index ``t * N + n`` after the prefix). How the recorded attention becomes a map
depends on how the model attends:

- Model 1 (``spatiotemporal``) and Model 4 (``factorised_dot_product``): every layer has one [T'N, T'N] token
  map per head (Model 4's heads are zero between tokens they cannot see), so the image methods apply as they are.
- Model 2 (``factorised_encoder``): a ViT per frame, then a Transformer over the frame tokens. Rollout is the
  spatial rollout of each frame's query over its patches, weighted by the temporal rollout's relevance of that
  frame's token: the relevance of patch ``n`` of frame ``t`` is "how much the clip's query drew on frame ``t``"
  times "how much frame ``t``'s summary drew on patch ``n``".
- Model 3 (``factorised_self_attention``): each block attends within the frame, then across frames. Both steps
  are written as [T'N, T'N] token maps and composed, each with its residual path as rollout does, so the result
  is the full token mixing of the model and the mean query (mean pooling) reads it.
"""

from __future__ import annotations

import torch

from ..errors import VitkitError
from ..models.clip_tokens import frames_to_tokens, positions_to_tokens
from ..models.vivit import VideoVisionTransformer
from .attention import recording, stack_layers
from .maps import METHODS, Explanation, _classes, _layer_attention, chosen_layer_heads, map_gradients
from .rollout import grad_rollout, query_relevance, rollout


def explain_video(model: VideoVisionTransformer, clips: torch.Tensor, method: str = "rollout", *,
                  layer: int = -1, head: int | None = None, target: int | None = None) -> Explanation:
    """Heat maps of ``method`` for ``clips`` [B, C, T, H, W]: ``heat`` is [B, maps, T', grid_h, grid_w].

    ``layer``/``head`` apply to ``attention`` (Model 2: a layer of the spatial encoder; Model 3: a block, drawn
    as its spatial and its temporal step); ``target`` (default: the predicted class) to ``grad-rollout``.
    """
    if method not in METHODS:
        raise VitkitError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if not isinstance(model, VideoVisionTransformer):
        raise VitkitError(f"explain_video explains a VideoVisionTransformer, not a {type(model).__name__}")
    config = model.config
    if config.variant == "divided_space_time":
        raise VitkitError("explain does not draw TimeSformer's divided space-time attention yet (its [CLS] is "
                          "copied into every frame); explain a ViViT Model 1-4 or a VideoMAE")
    with torch.set_grad_enabled(method == "grad-rollout"):
        if method == "grad-rollout":
            clips = clips.detach().requires_grad_(True)  # a graph to the attention even with frozen weights
        with recording(model) as maps:
            logits = model(clips)
        probabilities, classes = _classes(logits, config.num_classes, target, method)
        gradients = map_gradients(logits, classes, maps) if method == "grad-rollout" else None
        maps = [m.detach() for m in maps]
        if config.variant == "factorised_encoder":
            heat, captions = _encoder_heat(model, maps, gradients, method, layer, head)
        elif config.variant == "factorised_self_attention":
            heat, captions = _factorised_heat(model, maps, gradients, method, layer, head)
        else:
            heat, captions = _joint_heat(model, maps, gradients, method, layer, head)
    heat = heat.detach().reshape(clips.shape[0], heat.shape[1], *config.grid_size)
    return Explanation(method, heat, captions, probabilities.detach(), classes)


def _joint_heat(model: VideoVisionTransformer, maps: list[torch.Tensor], gradients: list[torch.Tensor] | None,
                method: str, layer: int, head: int | None) -> tuple[torch.Tensor, list[str]]:
    """Models 1 and 4: each layer recorded [B, heads, prefix + T'N, prefix + T'N], as an image ViT's."""
    attention = stack_layers(maps)
    pool, prefix = model.config.pool, model.num_prefix_tokens
    if method == "rollout":
        return query_relevance(rollout(attention), pool, prefix)[:, None], ["rollout over all layers"]
    if method == "grad-rollout":
        relevance = grad_rollout(attention, stack_layers(gradients))
        return query_relevance(relevance, pool, prefix)[:, None], ["gradient-weighted rollout"]
    heat, captions = _layer_attention(attention, layer, head, pool, prefix)
    if model.config.variant == "factorised_dot_product":  # its first heads attend in space, the others in time
        spatial = model.config.spatial_heads
        chosen = chosen_layer_heads(layer, head, *attention.shape[1:3])[1]
        captions = [f"{c} ({'space' if h < spatial else 'time'})" for c, h in zip(captions, chosen)]
    return heat, captions


def _encoder_heat(model: VideoVisionTransformer, maps: list[torch.Tensor], gradients: list[torch.Tensor] | None,
                  method: str, layer: int, head: int | None) -> tuple[torch.Tensor, list[str]]:
    """Model 2: ``depth`` spatial maps [B T', heads, P + N, P + N], then the temporal ones
    [B, heads, P + T', P + T'] (P: 1 with [CLS], else 0)."""
    config, pool, prefix = model.config, model.config.pool, model.num_prefix_tokens
    batch, frames = maps[-1].shape[0], config.temporal_tokens
    spatial, temporal = stack_layers(maps[: config.depth]), stack_layers(maps[config.depth :])
    if method == "attention":
        layer, chosen = chosen_layer_heads(layer, head, config.depth, config.heads, unit="spatial layers")
        heat = query_relevance(spatial[:, layer], pool, prefix)[:, chosen]  # [B T', maps, N]
        heat = heat.reshape(batch, frames, len(chosen), -1).transpose(1, 2)
        return heat, [f"spatial layer {layer} head {h}" for h in chosen]
    if method == "rollout":
        within, across = rollout(spatial), rollout(temporal)
        caption = "spatial x temporal rollout"
    else:
        within = grad_rollout(spatial, stack_layers(gradients[: config.depth]))
        across = grad_rollout(temporal, stack_layers(gradients[config.depth :]))
        caption = "spatial x temporal gradient-weighted rollout"
    patches = query_relevance(within, pool, prefix).reshape(batch, frames, -1)  # [B, T', N]: each frame's query
    frame_tokens = query_relevance(across, pool, prefix)  # [B, T']: the clip's query over the frame tokens
    return (frame_tokens[..., None] * patches)[:, None], [caption]


def _factorised_heat(model: VideoVisionTransformer, maps: list[torch.Tensor], gradients: list[torch.Tensor] | None,
                     method: str, layer: int, head: int | None) -> tuple[torch.Tensor, list[str]]:
    """Model 3: per block a spatial map [B T', heads, N, N], then a temporal one [B N, heads, T', T']."""
    config = model.config
    batch = maps[1].shape[0] // config.spatial_tokens
    spatial, temporal = maps[0::2], maps[1::2]
    if method == "attention":
        layer, chosen = chosen_layer_heads(layer, head, config.depth, config.heads, unit="blocks")
        heads = [_space_tokens(spatial[layer], batch)[:, chosen], _time_tokens(temporal[layer], batch)[:, chosen]]
        heat = query_relevance(torch.cat(heads, dim=1), "mean", 0)
        captions = [f"block {layer} {step} head {h}" for step in ("space", "time") for h in chosen]
        return heat, captions
    if method == "grad-rollout":
        # Weigh each step as grad-rollout does (mean over heads of max(0, grad * A)) before it is spread over
        # the T'N tokens, which commutes with both; a gradient of 1 then leaves the weighted maps as they are.
        spatial = [(g * a).clamp(min=0) for g, a in zip(gradients[0::2], spatial)]
        temporal = [(g * a).clamp(min=0) for g, a in zip(gradients[1::2], temporal)]
    mixing = None
    for space, time in zip(spatial, temporal):
        steps = factorised_steps(space, time, batch)
        block = rollout(steps) if method == "rollout" else grad_rollout(steps, torch.ones_like(steps))
        mixing = block if mixing is None else block @ mixing
    caption = "rollout over all blocks" if method == "rollout" else "gradient-weighted rollout"
    return query_relevance(mixing, "mean", 0)[:, None], [caption]


def factorised_steps(spatial: torch.Tensor, temporal: torch.Tensor, batch: int) -> torch.Tensor:
    """One Model 3 block's two attention steps over the clip's T'N tokens (frame-major), heads averaged:
    [B T', heads, N, N] and [B N, heads, T', T'] -> [B, 2 steps, 1, T'N, T'N], the shape :func:`rollout` takes.

    Averaging the heads before spreading a map over the tokens is the same as after (both are linear), and keeps
    the [T'N, T'N] maps to one per step instead of one per head.
    """
    space = _space_tokens(spatial.mean(dim=1, keepdim=True), batch)
    time = _time_tokens(temporal.mean(dim=1, keepdim=True), batch)
    return torch.stack([space, time], dim=1)


def block_mixing(spatial: torch.Tensor, temporal: torch.Tensor, batch: int) -> torch.Tensor:
    """How one Model 3 block mixes the T'N tokens, [B, T'N, T'N]: its temporal step after its spatial step,
    each ``0.5 I + 0.5 A`` (heads averaged, rows renormalised) as in :func:`rollout`."""
    return rollout(factorised_steps(spatial, temporal, batch))


def _space_tokens(maps: torch.Tensor, batch: int) -> torch.Tensor:
    """[B T', heads, N, N] (one sequence per frame) -> [B, heads, T'N, T'N], zero between frames."""
    frames = maps.shape[0] // batch
    return frames_to_tokens(maps.reshape(batch, frames, *maps.shape[1:]).transpose(1, 2))


def _time_tokens(maps: torch.Tensor, batch: int) -> torch.Tensor:
    """[B N, heads, T', T'] (one sequence per position) -> [B, heads, T'N, T'N], zero between positions."""
    patches = maps.shape[0] // batch
    return positions_to_tokens(maps.reshape(batch, patches, *maps.shape[1:]).transpose(1, 2))
