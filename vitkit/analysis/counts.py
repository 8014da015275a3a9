"""Parameters and FLOPs of a model, computed from its config alone: no model is built, nothing is traced.

``vitkit models`` lists every registered model this way in a fraction of a second (building even a meta-device
Swin3D would cost a second: its initialisers pull in torch._dynamo); the layer-by-layer dry run (``summary.py``)
traces the built model and gives the same totals (``tests/test_counts.py`` holds them, and the Swin3D parameter
counts of :func:`swin3d_params`, equal to the built models').
FLOPs count what the dry run counts: matrix multiplications, convolutions and the two products of attention,
a multiply-add as 2 FLOPs (one MAC = 2 FLOPs; papers quoting "17.6 GFLOPs" for ViT-B/16 count MACs). Every
token runs through every block (the architecture, not the [CLS]-only shortcut of ``forward``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..models.config import ViTConfig
from ..models.swin3d.config import Swin3DConfig
from ..models.swin3d.crse import table_lengths
from ..models.vivit_config import ViViTConfig


@dataclass(frozen=True)
class Counts:
    """Parameters, and FLOPs of one forward pass of one input."""

    params: int
    flops: int

    @property
    def macs(self) -> int:
        """Multiply-accumulates: half the FLOPs."""
        return self.flops // 2


def count(config: ViTConfig | ViViTConfig) -> Counts:
    """The parameters and forward FLOPs (batch of one) of the model ``config`` describes."""
    if isinstance(config, ViViTConfig):
        return _vivit(config)
    return _vit(config)


def _linear(tokens: int, d_in: int, d_out: int, bias: bool = True) -> Counts:
    return Counts(d_in * d_out + (d_out if bias else 0), 2 * tokens * d_in * d_out)


def _add(*parts: Counts) -> Counts:
    return Counts(sum(p.params for p in parts), sum(p.flops for p in parts))


def _attention(config: ViTConfig | ViViTConfig, tokens: int, attended: int) -> Counts:
    """qkv and output projections over ``tokens`` tokens; each attends to ``attended`` keys (both products)."""
    c = config
    scores = Counts(0, 4 * tokens * attended * c.dim)
    return _add(_linear(tokens, c.dim, 3 * c.dim, c.qkv_bias), scores, _linear(tokens, c.dim, c.dim))


def _block(config: ViTConfig | ViViTConfig, tokens: int, attention: Counts) -> Counts:
    """Two LayerNorms, the given attention and the MLP, for ``tokens`` tokens."""
    c = config
    swiglu = getattr(c, "swiglu", False)  # two input branches (gate and value), and its optional inner norm
    inner_norm = Counts(2 * c.hidden_dim if getattr(c, "mlp_norm", False) else 0, 0)
    mlp = _add(_linear(tokens, c.dim, (1 + swiglu) * c.hidden_dim), _linear(tokens, c.hidden_dim, c.dim), inner_norm)
    return _add(Counts(4 * c.dim, 0), attention, mlp)


def _head(config: ViTConfig | ViViTConfig) -> Counts:
    return _linear(1, config.pooled_dim, config.num_classes) if config.num_classes else Counts(0, 0)


def _vit(c: ViTConfig) -> Counts:
    patches, dim = c.num_patches, c.dim
    if c.stem == "conv":
        stem = _conv_stem(c)
    else:  # no bias before norm_pre (CLIP)
        stem = _linear(patches, c.in_channels * math.prod(c.patch_size), dim, bias=not c.norm_pre)
    prefix = int(c.class_token) + int(c.distilled) + c.reg_tokens
    tokens = patches + prefix
    positions = {"learned": tokens, "learned_patches": patches}.get(c.pos_embed, 0) * dim
    # Across the batch (the blog's defect), each token attends to the one image of the batch.
    attended = 1 if c.attention_axis == "batch" else tokens
    # Layer scale: two gammas of dim; QK-norm: two LayerNorms of the head size.
    # EVA's q/v-only bias: one bias vector fewer.
    extras = Counts((2 * dim if c.init_values else 0) + (4 * (dim // c.heads) if c.qk_norm else 0)
                    - dim * (c.qkv_bias and not c.key_bias), 0)
    blocks = _add(_block(c, tokens, _attention(c, tokens, attended)), extras)
    norms = Counts(2 * dim * ((c.norm == "pre" and c.final_norm) + c.norm_pre), 0)
    embed = Counts(dim * prefix + positions, 0)
    heads = [_head(c)] * (1 + c.distilled)
    return _add(stem, embed, *[blocks] * c.depth, norms, _attention_pool(c, patches), *heads)


def _attention_pool(c: ViTConfig, patches: int) -> Counts:
    """``pool='map'``: a latent query (q on one token, k and v on the patches, scores), the output projection,
    a LayerNorm and the MLP on one token."""
    if c.pool != "map":
        return Counts(0, 0)
    scores = Counts(c.dim, 4 * patches * c.dim)  # the latent, and both products of one query
    mlp = _add(_linear(1, c.dim, c.hidden_dim), _linear(1, c.hidden_dim, c.dim))
    projections = _add(_linear(1, c.dim, c.dim), _linear(patches, c.dim, 2 * c.dim), _linear(1, c.dim, c.dim))
    return _add(scores, projections, Counts(2 * c.dim, 0), mlp)


def _conv_stem(c: ViTConfig) -> Counts:
    """:class:`~vitkit.models.layers.ConvStem`: stride-2 3x3 convolutions (no bias) with BatchNorm, then 1x1."""
    steps = c.patch_size[0].bit_length() - 1
    height, width = c.image_size
    channels, parts = c.in_channels, []
    for i in range(steps):
        out = max(c.dim // 2 ** (steps - 1 - i), 16)
        height, width = (height + 1) // 2, (width + 1) // 2
        parts += [_linear(height * width, 9 * channels, out, bias=False), Counts(2 * out, 0)]
        channels = out
    return _add(*parts, _linear(c.num_patches, channels, c.dim))


def _vivit(c: ViViTConfig) -> Counts:
    frames, per_frame, dim = c.temporal_tokens, c.spatial_tokens, c.dim
    cls = int(c.pool == "cls")
    embed = _linear(frames * per_frame, c.in_channels * math.prod(c.tubelet_size), dim)
    norm = Counts(2 * dim, 0)
    if c.variant == "factorised_encoder":
        spatial_tokens = per_frame + cls
        spatial = _block(c, spatial_tokens, _attention(c, spatial_tokens, spatial_tokens))
        temporal_tokens = frames + cls
        temporal = _block(c, temporal_tokens, _attention(c, temporal_tokens, temporal_tokens))
        prefix = Counts(2 * cls * dim + (spatial_tokens + temporal_tokens) * dim, 0)
        frames_flops = Counts(spatial.params * c.depth, spatial.flops * c.depth * frames)
        no_key_bias = Counts(-dim * (c.depth + c.temporal_depth) * (not c.key_bias), 0)  # VideoMAE's q/v bias
        return _add(embed, prefix, frames_flops, norm, *[temporal] * c.temporal_depth, no_key_bias, norm, _head(c))
    tokens = frames * per_frame + cls
    if c.variant == "spatiotemporal":
        block = _block(c, tokens, _attention(c, tokens, tokens))
    elif c.variant == "factorised_self_attention":
        within = _attention(c, tokens, per_frame)
        across = _attention(c, tokens, frames)
        block = _add(_block(c, tokens, within), across, norm)
    elif c.variant == "divided_space_time":  # TimeSformer: [CLS] joins every frame's spatial attention
        patches = frames * per_frame
        across = _add(_attention(c, patches, frames), _linear(patches, dim, dim), norm)
        within = _attention(c, frames * (per_frame + 1), per_frame + 1)
        block = _add(_block(c, tokens, within), across)
    else:  # factorised_dot_product: spatial heads attend within the frame, the others across frames
        head_dim, spatial_heads = dim // c.heads, c.spatial_heads
        scores = 4 * tokens * head_dim * (spatial_heads * per_frame + (c.heads - spatial_heads) * frames)
        projections = _add(_linear(tokens, dim, 3 * dim, c.qkv_bias), _linear(tokens, dim, dim))
        block = _block(c, tokens, _add(projections, Counts(0, scores)))
    positions = {"learned": tokens, "sincos": 0}[c.pos_embed] * dim
    if c.variant == "divided_space_time":  # one frame's table ([CLS] and N) plus one vector per frame
        positions = (per_frame + cls + frames) * dim
    no_key_bias = Counts(-dim * c.depth * (1 + (c.variant != "spatiotemporal")) * (not c.key_bias), 0)  # q/v bias
    prefix = Counts(cls * dim + positions, 0)
    return _add(embed, prefix, *[block] * c.depth, no_key_bias, norm, _head(c))


def swin3d_params(config: Swin3DConfig) -> int:
    """The parameters of the Swin3D U-Net ``config`` describes (its FLOPs depend on the scan: the point-cloud dry
    run, ``pointcloud.py``, measures them on one)."""
    c = config

    def norm(dim: int) -> int:  # a LayerNorm or a BatchNorm: weight and bias
        return 2 * dim

    def linear(d_in: int, d_out: int, bias: bool = True) -> int:
        return _linear(0, d_in, d_out, bias).params

    def block(dim: int, heads: int, window: int) -> int:
        # cRSE: per signal, a query, key and value table [3 axes, L, heads, head_dim]; heads * head_dim = dim.
        tables = dim * sum(table_lengths(c.crse, window, c.quant_size))  # the lengths list every axis once
        hidden = int(dim * c.mlp_ratio)
        attention = linear(dim, 3 * dim) + linear(dim, dim) + 3 * tables
        return norm(dim) + attention + norm(dim) + linear(dim, hidden) + linear(hidden, dim)

    ch, stages = c.channels, range(c.num_stages)
    stem = 27 * c.in_channels * ch[0] + norm(ch[0])  # a 3x3x3 sparse convolution without bias, BatchNorm
    encoder = sum(c.depths[i] * block(ch[i], c.heads[i], c.window_sizes[i]) for i in stages)
    downsamples = sum(norm(ch[i]) + linear(ch[i], ch[i + 1], bias=False) for i in stages[:-1])
    upsamples = sum(norm(ch[i]) + linear(ch[i], ch[i]) + norm(ch[i + 1]) + linear(ch[i + 1], ch[i])
                    + (block(ch[i], c.heads[i], c.window_sizes[i]) if c.up_attention else 0) for i in stages[:-1])
    head = linear(ch[0], ch[0]) + norm(ch[0]) + linear(ch[0], c.num_classes)
    return stem + encoder + downsamples + upsamples + head
