"""Initialising a ViViT from an image ViT, as in the paper (Arnab et al. 2021, Sec. 3.4).

- Tubelet kernel: the image's patch kernel "inflated" along time, either ``central_frame`` (the kernel on the
  middle frame of the tubelet, zeros elsewhere: a tubelet embeds its central frame as the image model would)
  or ``filter_average`` (the kernel repeated over the t frames and divided by t: it embeds the mean frame).
- Position embeddings: the image's patch positions repeated for every temporal index (frame-major order);
  the image's [CLS] position goes to the video's [CLS] (Models 1 and 2).
- Blocks: copied as they are; the image blocks become the spatial encoder of Model 2. Model 3's temporal
  attention is set to zeros, so that at initialisation each block is the image block applied to every frame
  (its residual branch adds nothing). Model 2's temporal encoder, which has no image counterpart, keeps its
  fresh initialisation.
- The head is copied when it has the same number of classes, and left fresh otherwise.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..errors import VitkitError
from .vit import VisionTransformer
from .vivit import FactorisedSelfAttentionBlock, VideoVisionTransformer

InflateMode = Literal["central_frame", "filter_average"]


def inflate_kernel(kernel: torch.Tensor, frames: int, mode: InflateMode = "central_frame") -> torch.Tensor:
    """A Conv2d kernel [D, C, h, w] as a Conv3d kernel [D, C, frames, h, w]."""
    if mode == "filter_average":
        return kernel.unsqueeze(2).repeat(1, 1, frames, 1, 1) / frames
    if mode == "central_frame":
        inflated = kernel.new_zeros(*kernel.shape[:2], frames, *kernel.shape[2:])
        inflated[:, :, frames // 2] = kernel
        return inflated
    raise VitkitError(f"unknown inflation {mode!r}; use 'central_frame' or 'filter_average'")


@torch.no_grad()
def inflate_from_image(video: VideoVisionTransformer, image: VisionTransformer,
                       mode: InflateMode = "central_frame") -> list[str]:
    """Initialise ``video`` in place from ``image``; returns the video parameters left at their fresh init."""
    _check_compatible(video, image)
    written: set[str] = set()

    def copy(prefix: str, source: nn.Module, target: nn.Module) -> None:
        for name, tensor in source.state_dict().items():
            target.state_dict()[name].copy_(tensor)
            written.add(f"{prefix}.{name}")

    conv = video.patch_embed.proj
    conv.weight.copy_(inflate_kernel(image.patch_embed.proj.weight, conv.kernel_size[0], mode))
    conv.bias.copy_(image.patch_embed.proj.bias)
    written |= {"patch_embed.proj.weight", "patch_embed.proj.bias"}
    if video.cls_token is not None and image.cls_token is not None:
        copy("cls_token", image.cls_token, video.cls_token)
    _inflate_positions(video, image)
    written.add("pos_embed.weight")

    blocks = video.spatial_blocks if video.factorised_encoder else video.blocks
    prefix = "spatial_blocks" if video.factorised_encoder else "blocks"
    for index, (source, target) in enumerate(zip(image.blocks, blocks)):
        if isinstance(target, FactorisedSelfAttentionBlock):
            for part in ("norm1", "attn", "norm2", "mlp"):
                copy(f"{prefix}.{index}.{part}", getattr(source, part), getattr(target, part))
            for tensor in target.temporal_attn.parameters():
                tensor.zero_()  # the paper: temporal attention starts as an identity (a zero residual branch)
            written |= {f"{prefix}.{index}.temporal_attn.{n}" for n, _ in target.temporal_attn.named_parameters()}
        else:
            copy(f"{prefix}.{index}", source, target)
    if isinstance(image.norm, nn.LayerNorm):
        copy("spatial_norm" if video.factorised_encoder else "norm", image.norm,
             video.spatial_norm if video.factorised_encoder else video.norm)
    if isinstance(image.head, nn.Linear) and isinstance(video.head, nn.Linear) \
            and image.head.weight.shape == video.head.weight.shape:
        copy("head", image.head, video.head)
    return [name for name, _ in video.named_parameters() if name not in written]


def _image_positions(image: VisionTransformer) -> tuple[torch.Tensor, torch.Tensor]:
    """What the image model adds to its [CLS] token and to each patch token: ([D], [N, D])."""
    dim, patches = image.config.dim, image.config.num_patches
    if image.pos_embed is None:
        return torch.zeros(dim), torch.zeros(patches, dim)
    table = image.pos_embed.weight[0]
    if table.shape[0] == patches + 1:
        return table[0], table[1:]
    return torch.zeros(dim), table  # learned_patches / sincos2d: [CLS] gets no position


def _inflate_positions(video: VideoVisionTransformer, image: VisionTransformer) -> None:
    cls_position, patches = _image_positions(image)
    if not video.factorised_encoder:
        patches = patches.repeat(video.config.temporal_tokens, 1)  # the same positions for every frame
    rows = [cls_position[None], patches] if video.cls_token is not None else [patches]
    video.pos_embed.weight.copy_(torch.cat(rows)[None])


def _check_compatible(video: VideoVisionTransformer, image: VisionTransformer) -> None:
    v, i = video.config, image.config
    unsupported = [what for what, present in {
        "TimeSformer (divided_space_time)": v.variant == "divided_space_time",
        "a fixed position table (pos_embed='sincos')": v.pos_embed != "learned",
        "no key bias (key_bias=False)": not v.key_bias}.items() if present]
    if unsupported:
        raise VitkitError(f"inflating an image ViT supports ViViT Models 1-4, not {', '.join(unsupported)}; "
                          "load its own pretrained weights with vitkit.load instead")
    if i.norm != "pre" or i.attention_axis != "tokens":
        raise VitkitError("only a pre-norm ViT with attention over tokens can initialise a ViViT "
                          f"(this one has norm={i.norm!r}, attention_axis={i.attention_axis!r})")
    if i.rope or i.swiglu or not i.key_bias:
        raise VitkitError("an EVA-02 image ViT (RoPE, SwiGLU, no key bias) cannot initialise a ViViT, whose blocks "
                          "have none of these; start from a plain ViT")
    pairs = {
        "dim": (v.dim, i.dim), "heads": (v.heads, i.heads), "MLP size": (v.hidden_dim, i.hidden_dim),
        "qkv_bias": (v.qkv_bias, i.qkv_bias), "in_channels": (v.in_channels, i.in_channels),
        "depth": (v.depth, i.depth), "norm_eps": (v.norm_eps, i.norm_eps),
        "patch size": (tuple(v.tubelet_size[1:]), tuple(i.patch_size)), "image size": (v.image_size, i.image_size),
    }
    for what, (video_value, image_value) in pairs.items():
        if video_value != image_value:
            raise VitkitError(f"the image ViT has {what} {image_value} but the video model {video_value}; "
                              f"build the video model with the image model's {what}")
