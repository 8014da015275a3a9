"""The configuration of a Vision Transformer: one dataclass, plain data, serialisable to JSON.

A named model (``vit_b16``, ``seed``) is nothing but an instance of this class; see ``registry.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from ..errors import ConfigError
from .base import TransformerConfig, TupleFields, check_choice, to_pair

NormPlacement = Literal["pre", "post"]
Pooling = Literal["cls", "mean", "map", "cls_mean"]
PosEmbed = Literal["learned", "learned_patches", "sincos2d", "sincos2d_jax", "none"]
AttentionAxis = Literal["tokens", "batch"]
Stem = Literal["patch", "conv"]
Activation = Literal["gelu", "gelu_tanh", "quick_gelu"]
QkvLayout = Literal["fused", "split"]


@dataclass
class ViTConfig(TransformerConfig):
    """Every option of :class:`vitkit.models.VisionTransformer`.

    The defaults are the paper's model (Dosovitskiy et al. 2020) as timm builds it: pre-norm blocks, a [CLS]
    token, a learned position embedding on [CLS] and patches, classification from [CLS].
    """

    # image_size, in_channels, num_classes and the Transformer's sizes and drop rates: see TransformerConfig.
    patch_size: int | tuple[int, int] = 16
    norm: NormPlacement = "pre"
    """``pre``: LayerNorm before attention and MLP, plus a final norm (the paper). ``post``: after each residual
    sum, with no final norm (the original Transformer, and the blog)."""
    class_token: bool = True
    pool: Pooling = "cls"
    """``cls``: classify from the [CLS] token. ``mean``: from the mean of the patch tokens (the final norm is
    then applied after pooling, as in timm; see ``fc_norm``). ``map``: multihead attention pooling (Zhai et al.
    2022, "Scaling Vision Transformers"; SigLIP): a learned query attends to the patch tokens, then an MLP
    (timm's ``global_pool='map'``, ``attn_pool``). ``cls_mean``: [CLS] and the mean of the patch tokens,
    concatenated, so the head reads 2 x dim (transformers' ``Dinov2ForImageClassification``; Oquab et al. 2023's
    linear probe)."""
    pos_embed: PosEmbed = "learned"
    """``learned``: learned, on [CLS] and patches (the paper). ``learned_patches``: learned, patches only, added
    before [CLS] is prepended (the blog). ``sincos2d``: fixed 2-D sine-cosine on the patches (MoCo v3's
    frequencies). ``sincos2d_jax``: big_vision's ``posemb_sincos_2d`` (Beyer et al. 2022, "Better plain ViT
    baselines"; vit-pytorch's SimpleViT), whose frequencies end exactly at 1 / 10000; with ``class_token=False,
    pool='mean'`` that is the JAX plain ViT's head. ``none``."""
    stem: Stem = "patch"
    """``patch``: one linear projection per patch (the paper). ``conv``: a small convolutional stem with the same
    token grid (needs a power-of-two patch size); much more data-efficient on small datasets."""
    attention_axis: AttentionAxis = "tokens"
    """``batch`` reproduces the blog's defect: attention across the images of a batch instead of across the
    tokens of each image (``nn.MultiheadAttention`` without ``batch_first``). Never use it for real work."""
    init_values: float | None = None
    """Layer scale (Touvron et al. 2021, CaiT; used by DeiT-3, DINOv2, EVA): a learned per-channel factor on each
    block's attention and MLP branch, starting at this value (e.g. 1e-5). None: no layer scale."""
    reg_tokens: int = 0
    """Register tokens (Darcet et al. 2023, "Vision Transformers Need Registers"; DINOv2-reg): learned tokens
    after [CLS] that no output reads. The position embedding covers them only with ``pos_embed='learned'``
    (timm: registers get no position with ``no_embed_class``, vitkit's ``learned_patches``)."""
    dynamic_img_size: bool = False
    """Accept images of any size divisible by the patch (timm's ``dynamic_img_size``): the position embedding is
    resampled to the input's grid in the forward pass (bicubic, as timm), once per size. Off, an input of
    another size than ``image_size`` is an error: it usually means the preprocessing is wrong."""
    pos_embed_antialias: bool = True
    """How a learned position table is resampled to another grid (``dynamic_img_size``, or loading at another
    ``image_size``): bicubic antialiased, as timm and transformers' DINOv2-with-registers do (True), or plain
    bicubic (False), as transformers' ViT, DeiT, DINOv2, CLIP and SigLIP ``interpolate_pos_encoding`` do."""
    distilled: bool = False
    """DeiT's distillation token (Touvron et al. 2021, "Training data-efficient image transformers"): a second
    learned token after [CLS] with a head of its own (timm's ``dist_token`` / ``head_dist``). The output is the
    mean of the two heads' outputs, as timm's outside distillation training. Needs ``pool='cls'``."""
    fc_norm: bool | None = None
    """Where the final norm goes: True normalises the pooled vector (timm's ``fc_norm``, as in BEiT and MAE
    fine-tuning), False every token before pooling. None: True for ``pool='mean'``, False otherwise (timm's
    default)."""
    qk_norm: bool = False
    """QK-norm (Dehghani et al. 2023, "Scaling Vision Transformers to 22 Billion Parameters"): LayerNorm on each
    head's queries and keys before attention, which keeps the attention logits from growing (timm's ``qk_norm``)."""
    norm_pre: bool = False
    """A LayerNorm on the tokens before the first block (Radford et al. 2021, CLIP's ``ln_pre``; timm's
    ``pre_norm=True``, key ``norm_pre``). As in CLIP and timm, the patch embedding then has no bias."""
    patch_dropout: float = 0.0
    """Patch dropout (Liu et al. 2022, "PatchDropout"): in training only, each image keeps a random
    ``1 - patch_dropout`` of its patch tokens (the prefix tokens always), so the blocks run on fewer tokens;
    eval is unchanged (timm's ``patch_drop_rate``). Applied after the position embedding, before ``norm_pre``."""
    final_norm: bool = True
    """False: no LayerNorm after the last block of a pre-norm model (timm's ``final_norm=False``; transformers'
    ``CLIPForImageClassification`` averages the patch tokens before CLIP's ``post_layernorm``)."""
    act: Activation = "gelu"
    """The MLP's activation: ``gelu`` (Hendrycks & Gimpel 2016, exact), ``gelu_tanh`` (its tanh approximation:
    big_vision's SigLIP) or ``quick_gelu`` (OpenAI CLIP's ``x * sigmoid(1.702 x)``; timm's ``_quickgelu``
    names). Weights do not show it: pass it when loading such a checkpoint from a file."""
    swiglu: bool = False
    """The SwiGLU feed-forward network (Shazeer 2020, "GLU Variants Improve Transformer"; EVA-02) in place of
    Linear-GELU-Linear: ``fc2(SiLU(x W_g) * (x W_x))``. ``hidden_dim`` is the width of each branch (EVA-02: 8/3 of
    ``dim``, the parameters of a 4x MLP). timm's ``swiglu_mlp``."""
    mlp_norm: bool = False
    """A LayerNorm on the SwiGLU's hidden product before ``fc2`` (Shleifer et al. 2021, NormFormer; EVA-02 Base
    and Large, timm's ``scale_mlp``). Needs ``swiglu``."""
    key_bias: bool = True
    """With ``qkv_bias``: whether keys get a bias too. BEiT and EVA bias queries and values only (timm's
    ``q_bias`` / ``v_bias``)."""
    rope: bool = False
    """2-D rotary position embedding on the patch tokens' queries and keys (Su et al. 2021, "RoFormer"; the axial
    2-D form of EVA-02, Fang et al. 2023; ``rope.py``), besides ``pos_embed``. timm's ``use_rot_pos_emb``."""
    rope_grid: int | tuple[int, int] | None = None
    """The patch grid RoPE's positions are scaled to (timm's ``ref_feat_shape``): on a grid of h x w patches, row
    i sits at i * ref_h / h. EVA-02: 16 x 16, its 224 px pre-training, at every size. None: the patch index
    (always None without ``rope``)."""
    qkv_layout: QkvLayout = "fused"
    """How timm files hold the attention projections: one ``qkv`` or, ``split``, separate ``q_proj`` / ``k_proj``
    / ``v_proj`` without a key bias (EVA-02 Base and Large, timm's ``qkv_fused=False``). Only the file layout:
    vitkit computes one fused projection either way."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form metadata (where the config came from); not used by the model."""

    kind: ClassVar[str] = "ViT"
    tuple_fields: ClassVar[TupleFields] = {"image_size": to_pair, "patch_size": to_pair, "rope_grid": to_pair}

    def _validate(self) -> None:
        for (size, patch), axis in zip(zip(self.image_size, self.patch_size), ("height", "width")):
            if patch <= 0 or size <= 0:
                raise ConfigError(f"image and patch sizes must be positive, got image {size} and patch {patch}")
            if size % patch:
                raise ConfigError(
                    f"image {axis} {size} is not a multiple of the patch size {patch}; "
                    f"use an image size like {size // patch * patch or patch}"
                )
        self.check_transformer(("depth", "heads", "dim", "in_channels"))
        check_choice("norm", self.norm, NormPlacement)
        check_choice("pool", self.pool, Pooling)
        check_choice("pos_embed", self.pos_embed, PosEmbed)
        check_choice("attention_axis", self.attention_axis, AttentionAxis)
        check_choice("stem", self.stem, Stem)
        check_choice("act", self.act, Activation)
        patch = self.patch_size[0]
        if self.stem == "conv" and (self.patch_size[0] != self.patch_size[1] or patch < 2 or patch & (patch - 1)):
            raise ConfigError(f"stem='conv' needs a square power-of-two patch size, got {self.patch_size}")
        if self.init_values is not None and not self.init_values > 0:
            raise ConfigError(f"init_values (layer scale) must be positive or None, got {self.init_values}")
        if not 0.0 <= self.patch_dropout < 1.0:
            raise ConfigError(f"patch_dropout must be in [0, 1), got {self.patch_dropout}")
        if self.pos_embed.startswith("sincos2d") and (self.dim % 4 or self.dim < 8):
            raise ConfigError(f"pos_embed={self.pos_embed!r} needs dim a multiple of 4, at least 8; "
                              f"got {self.dim}")
        if self.reg_tokens < 0:
            raise ConfigError(f"reg_tokens must be >= 0, got {self.reg_tokens}")
        if self.pool == "cls_mean" and (not self.class_token or self.fc_norm):
            raise ConfigError("pool='cls_mean' concatenates [CLS] with the mean patch token: it needs "
                              "class_token=True and fc_norm unset")
        if self.pool == "cls" and not self.class_token:
            raise ConfigError("pool='cls' needs class_token=True; use pool='mean' for a model without [CLS]")
        self._validate_eva()
        if self.distilled and (self.pool != "cls" or self.fc_norm or self.reg_tokens):
            raise ConfigError("distilled=True reads [CLS] and the distillation token: it needs pool='cls', "
                              "reg_tokens=0 and fc_norm unset")

    def _validate_eva(self) -> None:
        """The checks of EVA-02's options (RoPE, SwiGLU, the MLP norm, the attention biases' layout)."""
        check_choice("qkv_layout", self.qkv_layout, QkvLayout)
        if not self.rope:
            self.rope_grid = None
        elif (self.dim // self.heads) % 4 or self.attention_axis != "tokens":
            raise ConfigError(f"rope=True needs a head size divisible by 4 (got {self.dim // self.heads}) and "
                              "attention over the tokens")
        elif self.patch_dropout:
            raise ConfigError("patch_dropout is not supported with rope=True (RoPE would need the kept patches' "
                              "positions); set patch_dropout=0")
        if self.mlp_norm and not self.swiglu:
            raise ConfigError("mlp_norm=True is the norm inside the SwiGLU MLP: it needs swiglu=True")
        if self.swiglu and self.act != "gelu":
            raise ConfigError(f"act={self.act!r} has no effect with swiglu=True (SwiGLU uses SiLU); leave act unset")
        if self.qkv_layout == "split" and self.qkv_bias and self.key_bias:
            raise ConfigError("qkv_layout='split' (timm's separate q/k/v projections) has no key bias: "
                              "set key_bias=False")

    @property
    def pooled_dim(self) -> int:
        """The width of the vector the head reads: 2 x dim for ``pool='cls_mean'``, else dim."""
        return 2 * self.dim if self.pool == "cls_mean" else self.dim

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patches along height and width."""
        return (self.image_size[0] // self.patch_size[0], self.image_size[1] // self.patch_size[1])

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One image: ``(C, H, W)``."""
        return (self.in_channels, *self.image_size)
