"""The configuration of a Video Vision Transformer (Arnab et al. 2021): one dataclass, plain data, JSON-able.

The four models of the paper differ only in how attention covers the T' x N tokens of a clip:

==============================  =====================================================================
``spatiotemporal`` (Model 1)    every token attends to every other token of the clip
``factorised_encoder`` (2)      a ViT per frame (spatial encoder), then a Transformer over the frames
``factorised_self_attention``   each block: attention within a frame, then across frames, then MLP
``factorised_dot_product`` (4)  each block: half the heads attend within a frame, half across frames
``divided_space_time``          TimeSformer (Bertasius et al. 2021): each block attends across frames,
                                then within each frame (with the [CLS] token), then MLP
==============================  =====================================================================

Two more published video Transformers are options of the same config: TimeSformer (the variant above, Model 3's
sibling) and VideoMAE (Tong et al. 2022): Model 1 with ``pos_embed="sincos"``, ``key_bias=False``, mean pooling
and ``fc_norm`` (see ``registry.py``'s ``videomae_*`` and ``timesformer_*``).

A tubelet of ``(1, p, p)`` is the paper's "uniform frame sampling" embedding (each frame embedded as by ViT);
``(t, p, p)`` with ``t > 1`` is its "tubelet embedding".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ..errors import ConfigError
from .base import TransformerConfig, TupleFields, check_choice, to_pair

Variant = Literal["spatiotemporal", "factorised_encoder", "factorised_self_attention", "factorised_dot_product",
                  "divided_space_time"]
VideoPooling = Literal["cls", "mean"]
VideoPosEmbed = Literal["learned", "sincos"]

# The paper's model numbers, for names and messages.
VARIANT_NUMBERS: dict[str, int] = {
    "spatiotemporal": 1, "factorised_encoder": 2, "factorised_self_attention": 3, "factorised_dot_product": 4,
}


def to_triple(value: int | tuple[int, int, int] | list[int]) -> tuple[int, int, int]:
    """Return ``(t, h, w)`` for a triple; an int means a cube."""
    if isinstance(value, int):
        return (value, value, value)
    triple = tuple(int(v) for v in value)
    if len(triple) != 3:
        raise ConfigError(f"expected a tubelet size (t, h, w), got {value!r}")
    return triple  # type: ignore[return-value]


@dataclass
class ViViTConfig(TransformerConfig):
    """Every option of :class:`vitkit.models.vivit.VideoVisionTransformer`.

    Inputs are clips ``[B, C, T, H, W]``. Blocks are pre-norm, as in the paper's code (Scenic) and transformers.
    """

    # image_size, in_channels, num_classes and the Transformer's sizes and drop rates: see TransformerConfig.
    # ``depth`` counts the blocks of the encoder; for the factorised encoder, of its spatial (per-frame) encoder.
    num_classes: int = 400
    """Kinetics-400's classes by default (0 removes the head: the model returns pooled features)."""
    variant: Variant = "spatiotemporal"
    num_frames: int = 32
    tubelet_size: int | tuple[int, int, int] = (2, 16, 16)
    """Frames x height x width of one tubelet; ``(1, p, p)`` embeds each frame separately."""
    temporal_depth: int = 4
    """Blocks of the temporal encoder of the factorised encoder (Model 2); unused by the other models."""
    pool: VideoPooling = "cls"
    """``cls``: classify from a [CLS] token (Model 2: one per frame in the spatial encoder and one in the
    temporal encoder). ``mean``: the mean of the normalised tokens. Models 3 and 4 have no [CLS] token (the
    paper: it would be ambiguous when tokens are reshaped between space and time), so they need ``mean``."""
    pos_embed: VideoPosEmbed = "learned"
    """``learned``: one learned vector per token (the paper). ``sincos``: VideoMAE's fixed 1-D sinusoid table
    (Vaswani et al. 2017) over the T'N tokens in frame-major order, a buffer not saved with the weights; it needs
    a model without [CLS] (``pool='mean'``) and one token sequence (not Model 2)."""
    fc_norm: bool = False
    """Normalise the pooled vector instead of every token before pooling (VideoMAE's ``fc_norm``; needs
    ``pool='mean'``)."""
    fc_norm_eps: float | None = None
    """The eps of that norm when it differs from ``norm_eps`` (transformers' VideoMAE: PyTorch's default 1e-5,
    its blocks' 1e-12)."""
    key_bias: bool = True
    """False: queries and values have a bias, keys none (VideoMAE, as BEiT: a key bias adds the same amount to
    every logit of a query, so attention ignores it). Needs ``qkv_bias=True``; not for Model 4."""
    dynamic_img_size: bool = False
    """Accept clips of any frame count and size divisible by the tubelet (timm's ``dynamic_img_size`` for video):
    the position embedding is resampled to the clip's grid once per size (see ``video_positions.py``). Off, a clip
    of another shape than ``num_frames`` x ``image_size`` is an error."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form metadata (where the config came from); not used by the model."""

    kind: ClassVar[str] = "ViViT"
    tuple_fields: ClassVar[TupleFields] = {"image_size": to_pair, "tubelet_size": to_triple}

    def _validate(self) -> None:
        check_choice("variant", self.variant, Variant)
        check_choice("pool", self.pool, VideoPooling)
        check_choice("pos_embed", self.pos_embed, VideoPosEmbed)
        sizes = (self.num_frames, *self.image_size)
        for size, step, axis in zip(sizes, self.tubelet_size, ("num_frames", "image height", "image width")):
            if size <= 0 or step <= 0:
                raise ConfigError(f"{axis} and tubelet sizes must be positive, got {size} and {step}")
            if size % step:
                raise ConfigError(f"{axis} {size} is not a multiple of the tubelet size {step}; "
                                  f"use {axis} {size // step * step or step}")
        self.check_transformer(("depth", "temporal_depth", "heads", "dim", "in_channels"))
        if self.variant in ("factorised_self_attention", "factorised_dot_product") and self.pool == "cls":
            raise ConfigError(f"Model {VARIANT_NUMBERS[self.variant]} ({self.variant}) has no [CLS] token; "
                              "use pool='mean'")
        if self.variant == "factorised_dot_product" and self.heads < 2:
            raise ConfigError("factorised_dot_product splits heads between space and time; use heads >= 2")
        self._validate_options()

    def _validate_options(self) -> None:
        """The checks of the TimeSformer and VideoMAE options."""
        if self.variant == "divided_space_time" and self.pool != "cls":
            raise ConfigError("divided_space_time (TimeSformer) classifies from its [CLS] token; use pool='cls'")
        if self.pos_embed == "sincos" and (self.pool != "mean" or self.variant in ("factorised_encoder",
                                                                                   "divided_space_time")):
            raise ConfigError("pos_embed='sincos' (VideoMAE's table) covers one sequence of patch tokens: it needs "
                              "pool='mean' and a variant other than factorised_encoder / divided_space_time")
        if self.fc_norm and self.pool != "mean":
            raise ConfigError("fc_norm normalises the mean of the tokens; it needs pool='mean'")
        if not self.key_bias and (not self.qkv_bias or self.variant == "factorised_dot_product"):
            raise ConfigError("key_bias=False removes only the keys' bias: it needs qkv_bias=True and a variant "
                              "other than factorised_dot_product")

    @property
    def grid_size(self) -> tuple[int, int, int]:
        """Tubelets along time, height and width: ``(T', H', W')``."""
        return (self.num_frames // self.tubelet_size[0], self.image_size[0] // self.tubelet_size[1],
                self.image_size[1] // self.tubelet_size[2])

    @property
    def temporal_tokens(self) -> int:
        """T': tubelets along time."""
        return self.grid_size[0]

    @property
    def spatial_tokens(self) -> int:
        """N: tubelets per frame (H' x W')."""
        return self.grid_size[1] * self.grid_size[2]

    @property
    def num_patches(self) -> int:
        """T' x N: tubelets per clip."""
        return self.temporal_tokens * self.spatial_tokens

    @property
    def spatial_heads(self) -> int:
        """Heads that attend within a frame in Model 4 (the rest attend across frames)."""
        return self.heads // 2

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """One clip: ``(C, T, H, W)``."""
        return (self.in_channels, self.num_frames, *self.image_size)
