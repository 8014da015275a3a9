"""``forward_intermediates`` of the video models: chosen blocks' patch tokens as [B, D, T', H', W'] maps, for dense
video heads (action localisation, video segmentation); timm's interface and semantics, as the image ViT's
(``vit.py``) with a time axis.

Model 2 (factorised encoder) has patch tokens only in its spatial encoder: ``indices`` count its spatial blocks,
and ``norm`` applies the spatial encoder's norm; the final features are still those of the whole model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from .vit import take_indices

if TYPE_CHECKING:
    from .vivit import VideoVisionTransformer


def video_intermediates(
    model: VideoVisionTransformer, clips: torch.Tensor, indices: int | Sequence[int] | None = None,
    norm: bool = False, output_fmt: str = "NCTHW", intermediates_only: bool = False, stop_early: bool = False,
) -> tuple[torch.Tensor, list[torch.Tensor]] | list[torch.Tensor]:
    """The patch tokens of chosen blocks of ``model`` for ``clips`` [B, C, T, H, W].

    ``indices``: the last n blocks (an int), or block indices (negative from the end); None: every block.
    ``norm``: apply the final token norm to them (none with ``fc_norm``, as timm). ``output_fmt``: ``NCTHW``
    ([B, D, T', H', W'] maps) or ``NLC`` ([B, T'H'W', D], frame-major); prefix tokens ([CLS]) are dropped.
    Returns ``(final tokens as forward_features gives them, maps)``, or only the maps with
    ``intermediates_only`` (``stop_early`` then skips the blocks after the last one taken).
    """
    if output_fmt not in ("NCTHW", "NLC"):
        raise ValueError(f"output_fmt must be 'NCTHW' or 'NLC', got {output_fmt!r}")
    blocks = model.spatial_blocks if model.factorised_encoder else model.blocks
    take = take_indices(len(blocks), indices)
    last = max(take) if stop_early and intermediates_only else len(blocks) - 1
    grid = model._run_grid(clips)
    frames, height, width = grid or model.config.grid_size
    x = model._embed_clip(clips, grid)
    maps = []
    for i in range(last + 1):
        x = model.run_stack(blocks[i : i + 1], x)
        if i in take:
            tokens = _token_norm(model, x) if norm else x
            maps.append(tokens[:, model.num_prefix_tokens :].reshape(clips.shape[0], frames * height * width, -1))
    if output_fmt == "NCTHW":
        maps = [y.reshape(y.shape[0], frames, height, width, -1).permute(0, 4, 1, 2, 3).contiguous() for y in maps]
    if intermediates_only:
        return maps
    if model.factorised_encoder:
        return model._encode_time(model.frame_pool(model.spatial_norm(x)), False, grid), maps
    return model._final_norm(x), maps


def _token_norm(model: VideoVisionTransformer, tokens: torch.Tensor) -> torch.Tensor:
    """The norm the model applies to these blocks' tokens: Model 2's spatial norm, else the final one."""
    return model.spatial_norm(tokens) if model.factorised_encoder else model._final_norm(tokens)
