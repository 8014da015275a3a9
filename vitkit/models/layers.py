"""The building blocks of a Vision Transformer, one small module per concept.

The model in ``vit.py`` (and the video models) are assembled from these. Each stage of the blog's "dry run"
(patch embedding, position embedding, [CLS] token, encoder block) is its own module, so a forward hook on it
sees that stage's output: that is how ``vitkit summary`` traces shapes.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..interop.resample import resample_pos_embed
from .activations import activation


class PatchEmbed(nn.Module):
    """Cut an image into non-overlapping patches and project each to ``dim``: [B, C, H, W] -> [B, N, dim].

    A convolution whose kernel equals its stride is exactly "flatten each patch, apply one Linear".
    """

    def __init__(self, patch_size: tuple[int, int], in_channels: int, dim: int, bias: bool = True) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)


class ConvStem(nn.Module):
    """A convolutional stem in place of patchify (Xiao et al. 2021, "Early convolutions help transformers see
    better"): stride-2 3x3 convolutions with BatchNorm and ReLU, then a 1x1 projection, giving the same token
    grid as a ``patch`` x ``patch`` patch embedding for a few percent more FLOPs. It gives a ViT the locality
    prior that small datasets lack. [B, C, H, W] -> [B, N, dim].
    """

    def __init__(self, patch_size: tuple[int, int], in_channels: int, dim: int) -> None:
        super().__init__()
        patch = patch_size[0]
        steps = patch.bit_length() - 1
        if patch_size[0] != patch_size[1] or patch != 2**steps or steps < 1:
            raise ValueError(f"a conv stem needs a square power-of-two patch size, got {patch_size}")
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(steps):
            width = max(dim // 2 ** (steps - 1 - i), 16)
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            channels = width
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(channels, dim, kernel_size=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.convs(images)).flatten(2).transpose(1, 2)

    def stage_label(self) -> str:
        return "patch embedding (conv stem)"


class ClassToken(nn.Module):
    """Prepend ``count`` learned tokens to the sequence: [B, N, D] -> [B, N + count, D]. One is the [CLS] token;
    several are register tokens (Darcet et al. 2023, "Vision Transformers Need Registers"): extra tokens that
    no output reads, where attention parks the global information it would otherwise store in patch tokens."""

    def __init__(self, dim: int, count: int = 1, label: str = "[CLS] token") -> None:
        super().__init__()
        self.token = nn.Parameter(torch.zeros(1, count, dim))
        self.label = label

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.token.expand(tokens.shape[0], -1, -1), tokens], dim=1)

    def stage_label(self) -> str:
        return self.label


class PositionEmbedding(nn.Module):
    """Add a position embedding of shape [1, L, D]: learned (a parameter) or fixed (a buffer: the 2-D sine-cosine
    table of :func:`sincos_2d`).

    ``grid`` and ``prefix_tokens`` give its layout: ``prefix_tokens`` positions without a place on the image
    ([CLS], registers), then a ``grid`` of patches. ``forward(tokens, grid)`` with another grid (run-time input
    sizes, timm's ``dynamic_img_size``) adds a learned table resampled to it as timm does (bicubic,
    antialiased: :func:`~vitkit.interop.resample.resample_pos_embed`), or a fixed sine-cosine table computed
    for it. Each grid's table is computed once and reused while the weights do not change; the configured grid
    uses the table itself, untouched.
    """

    def __init__(self, length: int, dim: int, fixed: torch.Tensor | None = None,
                 grid: tuple[int, int] | None = None, prefix_tokens: int = 0, endpoint: bool = False,
                 antialias: bool = True) -> None:
        super().__init__()
        self.antialias = antialias
        """Whether a learned table is resampled antialiased (timm's) or plain bicubic (transformers')."""
        self.endpoint = endpoint
        """For a fixed table: :func:`sincos_2d`'s ``endpoint`` (big_vision's frequencies)."""
        if fixed is None:
            self.weight = nn.Parameter(torch.zeros(1, length, dim))
        else:
            # Not saved in checkpoints: it is a function of the grid, recomputed at any resolution.
            self.register_buffer("weight", fixed.reshape(1, length, dim), persistent=False)
        self.fixed = fixed is not None
        self.grid = grid
        self.prefix_tokens = prefix_tokens
        self._tables: dict[tuple, torch.Tensor] = {}

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
        weight = self.weight if grid is None or grid == self.grid else self.table(grid)
        if tokens.shape[1] != weight.shape[1]:
            raise ValueError(
                f"got {tokens.shape[1]} tokens but the position embedding has {weight.shape[1]}; "
                "the input size must match the model's image_size (or set dynamic_img_size=True)"
            )
        return tokens + weight

    def table(self, grid: tuple[int, int]) -> torch.Tensor:
        """The [1, prefix + grid_h * grid_w, D] table for ``grid``; cached unless gradients must reach the
        learned one (training it)."""
        if self.grid is None:
            raise ValueError("this position embedding has no grid layout; it runs at its own size only")
        if needs_grad(self.weight):
            return self._compute(grid)
        weight = self.weight
        key = (grid, weight._version, weight.data_ptr(), weight.dtype, weight.device)
        if key not in self._tables:
            self._tables = {k: v for k, v in self._tables.items() if k[1:] == key[1:]}  # drop stale weights' tables
            self._tables[key] = self._compute(grid)
        return self._tables[key]

    def _compute(self, grid: tuple[int, int]) -> torch.Tensor:
        if self.fixed:
            table = sincos_2d(grid, self.weight.shape[-1], endpoint=self.endpoint)
            return table.to(self.weight.device, self.weight.dtype).unsqueeze(0)
        return resample_pos_embed(self.weight, grid, self.grid, self.prefix_tokens, antialias=self.antialias)


def sincos_2d(grid: tuple[int, int], dim: int, temperature: float = 10000.0, endpoint: bool = False) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding, [grid_h * grid_w, dim].

    A quarter of the channels each: sin(x), cos(x), sin(y), cos(y) at frequencies 1 / temperature^(i / s),
    i = 0 .. dim/4 - 1, with s = dim/4 (MoCo v3) or, with ``endpoint``, s = dim/4 - 1 so the last one is exactly
    1 / temperature (big_vision's ``posemb_sincos_2d``, "Better plain ViT baselines").
    """
    if dim % 4 or endpoint and dim < 8:
        raise ValueError(f"sincos2d position embedding needs dim divisible by 4 (and >= 8 with endpoint), got {dim}")
    y, x = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(dim // 4) / (dim // 4 - int(endpoint)))
    x = x.flatten()[:, None] * omega[None, :]
    y = y.flatten()[:, None] * omega[None, :]
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1).float()


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection and ``scaled_dot_product_attention``.

    Set ``keep_weights = True`` to compute the attention probabilities explicitly and keep them in
    ``self.weights`` ([B, heads, N, N]); the fused kernel, which never materialises them, stays the default.

    ``forward(x, queries=n)`` computes the output of the first ``n`` tokens only, every token still serving as
    a key and a value: all that a [CLS] read-out needs from the last block (see :func:`readout_queries`).
    """

    over_batch = False
    """Whether the sequence attended over is the batch axis (the blog's defect, :mod:`vitkit.models.seed`)."""

    def __init__(
        self, dim: int, heads: int, qkv_bias: bool = True, attn_dropout: float = 0.0, proj_dropout: float = 0.0,
        qk_norm: bool = False, norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        # QK-norm: a LayerNorm over each head's queries and keys (timm's q_norm / k_norm); None when off.
        self.q_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else None
        self.k_norm = nn.LayerNorm(self.head_dim, eps=norm_eps) if qk_norm else None
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout = attn_dropout
        self.proj_dropout = nn.Dropout(proj_dropout)
        self.keep_weights = False
        self.weights: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, queries: int | None = None) -> torch.Tensor:
        q, k, v = self.project_qkv(x)
        if queries is not None:
            # The q part of qkv is still computed for every token (a third of one projection): slicing the
            # output keeps this working for any Linear replacement (fused, int8), where slicing weights would not.
            q = q[:, :, :queries]
        return self.project_out(self.attend(q, k, v))

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, L, D] -> queries, keys and values, [B, heads, L, head_dim] each."""
        return self.split_heads(self.qkv(x))

    def split_heads(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The qkv projection's output [B, L, 3 D] -> queries, keys and values, [B, heads, L, head_dim] each (with
        QK-norm applied)."""
        batch, length, _ = qkv.shape
        q, k, v = qkv.view(batch, length, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k, v

    def project_out(self, out: torch.Tensor) -> torch.Tensor:
        """The heads' outputs [B, heads, L, head_dim] -> [B, L, D], through the output projection."""
        batch, _, length, _ = out.shape
        return self.proj_dropout(self.proj(out.transpose(1, 2).reshape(batch, length, -1)))

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of every query to every key, [..., L, head_dim] each (subclasses restrict who sees whom)."""
        dropout = self.attn_dropout if self.training else 0.0
        if self.keep_weights:
            return self._explicit(q, k, v, dropout)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)

    def _explicit(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout: float) -> torch.Tensor:
        weights = (q @ k.transpose(-2, -1) * self.head_dim**-0.5).softmax(dim=-1)
        self.weights = weights
        return F.dropout(weights, dropout, self.training) @ v


class QVBiasAttention(Attention):
    """:class:`Attention` whose queries and values have a bias and keys none (BEiT, VideoMAE: ``q_bias`` and
    ``v_bias``). A key bias adds the same amount to every logit of a query, so attention is the same without it."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, attn_dropout: float = 0.0,
                 proj_dropout: float = 0.0, qk_norm: bool = False, norm_eps: float = 1e-6) -> None:
        super().__init__(dim, heads, False, attn_dropout, proj_dropout, qk_norm, norm_eps)
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        return self.split_heads(self.qkv(x) + bias)


class Mlp(nn.Module):
    """The feed-forward network: Linear -> GELU (or ``act``: see :func:`activation`) -> Linear."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0, act: str = "gelu") -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = activation(act)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.fc1(x)
        if type(self.act) is nn.GELU and not needs_grad(hidden):
            # In place when no gradient is kept: saves allocating (and page-faulting) the largest activation.
            hidden = torch._C._nn.gelu_(hidden, approximate=self.act.approximate)
        else:
            hidden = self.act(hidden)
        return self.drop(self.fc2(self.drop(hidden)))


def needs_grad(x: torch.Tensor) -> bool:
    """Whether autograd records operations on ``x`` (so it must not be overwritten in place)."""
    return torch.is_grad_enabled() and x.requires_grad


def add_residual(x: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """``x + branch``, written into ``branch`` when no gradient is kept (``branch`` is a fresh output)."""
    return x + branch if needs_grad(branch) or needs_grad(x) else branch.add_(x)


class LayerScale(nn.Module):
    """Layer scale (Touvron et al. 2021, "Going deeper with image transformers", CaiT): a learned per-channel
    factor ``gamma`` on a residual branch, starting small (``init_values``) so deep models train stably."""

    def __init__(self, dim: int, init_values: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place when no gradient is kept (``x`` is a branch's fresh output).
        return x * self.gamma if needs_grad(x) or needs_grad(self.gamma) else x.mul_(self.gamma)


class DropPath(nn.Module):
    """Stochastic depth: drop a residual branch for whole samples, scaling the kept ones by 1 / (1 - p)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Block(nn.Module):
    """One Transformer encoder block: attention and MLP, each inside a residual connection with LayerNorm.

    ``pre_norm=True`` (the paper): ``x + f(norm(x))``. ``False`` (the blog, the 2017 Transformer):
    ``norm(x + f(x))``. ``attention`` is the attention class (the blog's preset passes its own).
    ``init_values`` turns on layer scale (:class:`LayerScale`) on both branches (timm's ``ls1`` / ``ls2``),
    ``qk_norm`` QK-norm in the attention, ``act`` the MLP's activation (:func:`activation`); ``mlp`` replaces the
    MLP (EVA-02's SwiGLU).
    """

    def __init__(
        self, dim: int, heads: int, hidden_dim: int, *, qkv_bias: bool = True, dropout: float = 0.0,
        attn_dropout: float = 0.0, drop_path: float = 0.0, pre_norm: bool = True, norm_eps: float = 1e-6,
        attention: type[Attention] = Attention, init_values: float | None = None, qk_norm: bool = False,
        act: str = "gelu", mlp: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.pre_norm = pre_norm
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = attention(dim, heads, qkv_bias, attn_dropout, dropout, qk_norm, norm_eps)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, hidden_dim, dropout, act) if mlp is None else mlp
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, queries: int | None = None) -> torch.Tensor:
        """[B, N, D] -> [B, N, D]; with ``queries=n``, only the first ``n`` output tokens, [B, n, D].

        Outputs of token i depend on all tokens only through attention's keys and values, so everything after
        the attention runs on the first ``queries`` tokens alone."""
        kept = x if queries is None else x[:, :queries]
        if self.pre_norm:
            x = add_residual(kept, self.drop_path(self.ls1(self.attn(self.norm1(x), queries))))
            return add_residual(x, self.drop_path(self.ls2(self.mlp(self.norm2(x)))))
        x = self.norm1(add_residual(kept, self.drop_path(self.ls1(self.attn(x, queries)))))
        return self.norm2(add_residual(x, self.drop_path(self.ls2(self.mlp(x)))))


def readout_queries(blocks: nn.Sequential, prefix_tokens: int, pool: str) -> int | None:
    """How many leading output tokens of the last block a [CLS] read-out uses, or None to compute them all.

    With ``pool="cls"`` the head reads one token, so the last block's other outputs are dead code: skipping
    them removes most of that block's work (its MLP and output projection run on one token instead of N) and
    changes no result, in inference or training. None where that does not hold: mean pooling (which ViViT
    Models 3 and 4, whose attention splits the sequence, always use), the blog's attention across the batch,
    and while attention weights are being recorded (explain needs the full map).
    """
    last = blocks[-1] if len(blocks) else None
    if pool != "cls" or prefix_tokens < 1 or not isinstance(last, Block):
        return None
    if last.attn.over_batch or last.attn.keep_weights:
        return None
    return prefix_tokens


@contextlib.contextmanager
def every_token(model: nn.Module) -> Iterator[nn.Module]:
    """Inside the block, ``model`` runs every block on every token (no [CLS]-only last block): for a trace or a
    FLOP count of the architecture itself. Models without the shortcut are left as they are."""
    prune = getattr(model, "prune_readout", None)
    if prune is not None:
        model.prune_readout = False
    try:
        yield model
    finally:
        if prune is not None:
            model.prune_readout = prune


def init_weights(module: nn.Module) -> None:
    """timm-style initialisation: truncated normal (std 0.02) for Linear weights, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.Conv2d, nn.Conv3d)):
        # Same as a Linear over the flattened patch (the "lecun normal" of the JAX ViT).
        fan_in = math.prod(module.weight.shape[1:])
        nn.init.trunc_normal_(module.weight, std=math.sqrt(1.0 / fan_in))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, ClassToken):
        nn.init.normal_(module.token, std=1e-6)
    elif isinstance(module, PositionEmbedding) and isinstance(module.weight, nn.Parameter):
        nn.init.trunc_normal_(module.weight, std=0.02)
