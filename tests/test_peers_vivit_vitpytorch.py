"""ViViT Model 2 (factorised encoder) against vit-pytorch's ``vit_pytorch.vivit.ViViT`` (peers env).

The two agree on the architecture except in four places, which the test aligns explicitly:

1. vit-pytorch normalises each flattened tubelet (LayerNorm, Linear, LayerNorm); the paper and vitkit project it
   with one linear map (a Conv3d). The reference's embedding is replaced by the bare linear map.
2. vit-pytorch adds one position embedding per (frame, position) before the spatial [CLS] is prepended; vitkit,
   as the paper's code, has one spatial embedding shared by all frames and covering [CLS]. The reference's
   embedding is made equal across frames and vitkit's [CLS] entry is zero.
3. vit-pytorch has no temporal position embedding; vitkit's is set to zero.
4. vit-pytorch's qkv projection has no bias: vitkit is built with ``qkv_bias=False``.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import vitkit
from vitkit.interop.keymap import rename_keys

vit_pytorch = pytest.importorskip("vit_pytorch")
pytestmark = pytest.mark.peers

from einops.layers.torch import Rearrange  # noqa: E402  (einops comes with vit-pytorch)
from vit_pytorch.vivit import ViViT  # noqa: E402

_BLOCK = r"(spatial|temporal)_transformer\.layers\.(\d+)"
VIT_PYTORCH_TO_VITKIT = [
    (r"spatial_cls_token", "cls_token.token"),
    (r"temporal_cls_token", "temporal_cls_token.token"),
    (r"patch_linear\.(weight|bias)", r"patch_embed.proj.\1"),
    (_BLOCK + r"\.0\.norm\.(weight|bias)", r"\1_blocks.\2.norm1.\3"),
    (_BLOCK + r"\.0\.to_qkv\.weight", r"\1_blocks.\2.attn.qkv.weight"),
    (_BLOCK + r"\.0\.to_out\.0\.(weight|bias)", r"\1_blocks.\2.attn.proj.\3"),
    (_BLOCK + r"\.1\.net\.0\.(weight|bias)", r"\1_blocks.\2.norm2.\3"),
    (_BLOCK + r"\.1\.net\.1\.(weight|bias)", r"\1_blocks.\2.mlp.fc1.\3"),
    (_BLOCK + r"\.1\.net\.4\.(weight|bias)", r"\1_blocks.\2.mlp.fc2.\3"),
    (r"spatial_transformer\.norm\.(weight|bias)", r"spatial_norm.\1"),
    (r"temporal_transformer\.norm\.(weight|bias)", r"norm.\1"),
    (r"mlp_head\.(weight|bias)", r"head.\1"),
]


def _aligned_reference(config: vitkit.ViViTConfig) -> tuple[ViViT, nn.Linear]:
    t, h, w = config.tubelet_size
    reference = ViViT(
        image_size=config.image_size, image_patch_size=(h, w), frames=config.num_frames, frame_patch_size=t,
        num_classes=config.num_classes, dim=config.dim, spatial_depth=config.depth,
        temporal_depth=config.temporal_depth, heads=config.heads, mlp_dim=config.hidden_dim,
        dim_head=config.dim // config.heads, channels=config.in_channels, variant="factorized_encoder",
    ).eval()
    linear = nn.Linear(config.in_channels * t * h * w, config.dim)  # difference 1
    reference.to_patch_embedding = nn.Sequential(reference.to_patch_embedding[0], linear)
    with torch.no_grad():  # difference 2
        reference.pos_embedding.copy_(reference.pos_embedding[:, :1].expand_as(reference.pos_embedding))
    return reference, linear


def _vitkit_state(reference: ViViT, linear: nn.Linear, config: vitkit.ViViTConfig) -> dict[str, torch.Tensor]:
    state = {k: v for k, v in reference.state_dict().items()
             if not k.startswith(("to_patch_embedding", "pos_embedding"))}
    state["patch_linear.weight"] = linear.weight
    state["patch_linear.bias"] = linear.bias
    state = rename_keys(state, VIT_PYTORCH_TO_VITKIT, "vit-pytorch ViViT")
    # vit-pytorch flattens a tubelet as (frame, row, column, channel); a Conv3d kernel is [D, C, t, h, w].
    t, h, w = config.tubelet_size
    kernel = state["patch_embed.proj.weight"].reshape(config.dim, t, h, w, config.in_channels)
    state["patch_embed.proj.weight"] = kernel.permute(0, 4, 1, 2, 3)
    frame_pos = reference.pos_embedding[0, 0]
    state["pos_embed.weight"] = torch.cat([torch.zeros(1, config.dim), frame_pos])[None]
    state["temporal_pos_embed.weight"] = torch.zeros(1, config.temporal_tokens + 1, config.dim)  # difference 3
    return state


@pytest.mark.parametrize("overrides", [
    {},
    {"tubelet_size": (1, 8, 8), "temporal_depth": 2},
    {"image_size": (32, 48), "tubelet_size": (4, 16, 8), "mlp_dim": 40, "in_channels": 1},
])
def test_model_2_logits_equal_vit_pytorch_factorised_encoder(overrides: dict) -> None:
    options = dict(variant="factorised_encoder", image_size=32, num_frames=8, tubelet_size=(2, 8, 8), dim=48,
                   depth=2, temporal_depth=1, heads=4, num_classes=7, qkv_bias=False, norm_eps=1e-5) | overrides
    config = vitkit.ViViTConfig(**options)  # qkv_bias=False: difference 4; vit-pytorch's LayerNorm eps is 1e-5
    reference, linear = _aligned_reference(config)
    model = vitkit.VideoVisionTransformer(config).eval()
    model.load_state_dict(_vitkit_state(reference, linear, config), strict=True)
    clips = torch.randn(3, *config.input_shape)
    with torch.no_grad():
        diff = (model(clips) - reference(clips)).abs().max().item()
    assert diff <= 1e-5, f"max |vitkit - vit-pytorch| = {diff:.2e}"
