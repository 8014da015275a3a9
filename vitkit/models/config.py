"""The configuration of a Vision Transformer: one dataclass, plain data, serialisable to JSON.

A named model (``vit_b16``, ``seed``) is nothing but an instance of this class; see ``registry.py``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError

NormPlacement = Literal["pre", "post"]
Pooling = Literal["cls", "mean"]
PosEmbed = Literal["learned", "learned_patches", "sincos2d", "none"]
AttentionAxis = Literal["tokens", "batch"]
Stem = Literal["patch", "conv"]


def to_pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Return ``(h, w)`` for an int or a pair."""
    if isinstance(value, int):
        return (value, value)
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ConfigError(f"expected an int or a pair (H, W), got {value!r}")
    return pair  # type: ignore[return-value]


@dataclass
class ViTConfig:
    """Every option of :class:`vitkit.models.VisionTransformer`.

    The defaults are the paper's model (Dosovitskiy et al. 2020) as timm builds it: pre-norm blocks, a [CLS]
    token, a learned position embedding on [CLS] and patches, classification from [CLS].
    """

    image_size: int | tuple[int, int] = 224
    patch_size: int | tuple[int, int] = 16
    in_channels: int = 3
    num_classes: int = 1000
    """0 removes the head: the model returns pooled features."""
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    mlp_dim: int | None = None
    """Hidden size of the feed-forward network; overrides ``mlp_ratio`` when set."""
    qkv_bias: bool = True
    dropout: float = 0.0
    """Dropout after the position embedding, inside the MLP and after each projection."""
    attn_dropout: float = 0.0
    """Dropout on the attention probabilities."""
    drop_path: float = 0.0
    """Stochastic depth: the drop rate of the last block, rising linearly from 0 at the first."""
    norm: NormPlacement = "pre"
    """``pre``: LayerNorm before attention and MLP, plus a final norm (the paper). ``post``: after each residual
    sum, with no final norm (the original Transformer, and the blog)."""
    norm_eps: float = 1e-6
    class_token: bool = True
    pool: Pooling = "cls"
    """``cls``: classify from the [CLS] token. ``mean``: from the mean of the patch tokens (the final norm is
    then applied after pooling, as in timm)."""
    pos_embed: PosEmbed = "learned"
    """``learned``: learned, on [CLS] and patches (the paper). ``learned_patches``: learned, patches only, added
    before [CLS] is prepended (the blog). ``sincos2d``: fixed 2-D sine-cosine on the patches. ``none``."""
    stem: Stem = "patch"
    """``patch``: one linear projection per patch (the paper). ``conv``: a small convolutional stem with the same
    token grid (needs a power-of-two patch size); much more data-efficient on small datasets."""
    attention_axis: AttentionAxis = "tokens"
    """``batch`` reproduces the blog's defect: attention across the images of a batch instead of across the
    tokens of each image (``nn.MultiheadAttention`` without ``batch_first``). Never use it for real work."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form metadata (where the config came from); not used by the model."""

    def __post_init__(self) -> None:
        self.image_size = to_pair(self.image_size)
        self.patch_size = to_pair(self.patch_size)
        self._validate()

    def _validate(self) -> None:
        for (size, patch), axis in zip(zip(self.image_size, self.patch_size), ("height", "width")):
            if patch <= 0 or size <= 0:
                raise ConfigError(f"image and patch sizes must be positive, got image {size} and patch {patch}")
            if size % patch:
                raise ConfigError(
                    f"image {axis} {size} is not a multiple of the patch size {patch}; "
                    f"use an image size like {size // patch * patch or patch}"
                )
        for name in ("depth", "heads", "dim", "in_channels"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.dim % self.heads:  # after the positivity check: heads=0 must not divide by zero
            raise ConfigError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.num_classes < 0:
            raise ConfigError(f"num_classes must be >= 0, got {self.num_classes}")
        for name in ("dropout", "attn_dropout", "drop_path"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        _check_choice("norm", self.norm, NormPlacement)
        _check_choice("pool", self.pool, Pooling)
        _check_choice("pos_embed", self.pos_embed, PosEmbed)
        _check_choice("attention_axis", self.attention_axis, AttentionAxis)
        _check_choice("stem", self.stem, Stem)
        patch = self.patch_size[0]
        if self.stem == "conv" and (self.patch_size[0] != self.patch_size[1] or patch < 2 or patch & (patch - 1)):
            raise ConfigError(f"stem='conv' needs a square power-of-two patch size, got {self.patch_size}")
        if self.pool == "cls" and not self.class_token:
            raise ConfigError("pool='cls' needs class_token=True; use pool='mean' for a model without [CLS]")

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patches along height and width."""
        return (self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1])

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    @property
    def hidden_dim(self) -> int:
        """The feed-forward hidden size actually used."""
        return self.mlp_dim if self.mlp_dim is not None else int(self.dim * self.mlp_ratio)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One image: ``(C, H, W)``."""
        return (self.in_channels, *self.image_size)

    def replace(self, **overrides: Any) -> "ViTConfig":
        """A copy with some fields changed (validated again)."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigError(f"unknown ViT option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["image_size"] = list(self.image_size)
        data["patch_size"] = list(self.patch_size)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ViTConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown ViT option(s) in config: {', '.join(sorted(unknown))}")
        return cls(**data)


def _check_choice(name: str, value: str, choices: Any) -> None:
    allowed = choices.__args__
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
