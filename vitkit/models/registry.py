"""Named models. A name is a config, not a function: ``vit_b16`` is ``ViTConfig(dim=768, depth=12, ...)``.

Sizes follow the ViT paper (Ti and S from DeiT) and timm, so parameter counts match timm's models. timm's names
of the same models are aliases: ``vit_base_patch16_224`` is ``vit_b16``, ``vit_base_patch16_384`` is ``vit_b16``
at 384 px.
"""

from __future__ import annotations

import contextlib
import difflib
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from ..errors import ConfigError
from .config import ViTConfig
from .seed import SEED
from .vit import VisionTransformer
from .vivit import VideoVisionTransformer
from .vivit_config import VARIANT_NUMBERS, ViViTConfig


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its config, the class that builds it, and one line on what it is."""

    name: str
    config: Any
    build: Callable[[Any], nn.Module]
    description: str


_REGISTRY: dict[str, ModelSpec] = {}

# width, depth, heads (the MLP is 4x the width for all of them)
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "ti": (192, 12, 3),
    "s": (384, 12, 6),
    "b": (768, 12, 12),
    "l": (1024, 24, 16),
    "h": (1280, 32, 16),
}
_SIZE_NAMES = {"ti": "Tiny", "s": "Small", "b": "Base", "l": "Large", "h": "Huge"}
_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {}
"""timm's name of a registered model -> (vitkit's name, config overrides)."""


def register(name: str, config: Any, build: Callable[[Any], nn.Module], description: str) -> None:
    """Add a named model; names are unique."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = ModelSpec(name, config, build, description)


def list_models() -> list[str]:
    """Every registered model name, in registration order."""
    return list(_REGISTRY)


def get_spec(name: str) -> ModelSpec:
    """The registered spec for ``name`` (or a timm-style alias of one), or a one-line error suggesting close
    names."""
    if name in _ALIASES:
        target, overrides = _ALIASES[name]
        spec = _REGISTRY[target]
        return ModelSpec(name, spec.config.replace(**overrides), spec.build,
                         f"timm's name for {target}{_variant(overrides)}")
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, [*_REGISTRY, *_ALIASES], n=3)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise ConfigError(f"unknown model {name!r}; {hint}`vitkit models` lists them all")
    return _REGISTRY[name]


def timm_name(name: str) -> str | None:
    """timm's name of the registered model ``name`` (itself for a timm alias), or None if timm has no such model."""
    if name in _ALIASES:
        return name
    return next((alias for alias, (target, overrides) in _ALIASES.items() if target == name and not overrides), None)


def aliases() -> dict[str, str]:
    """Every timm-style alias and the vitkit model it names (``vit_b16``, ``vit_b16 at 384 px``)."""
    return {alias: target + _variant(over) for alias, (target, over) in _ALIASES.items()}


def _variant(overrides: dict[str, Any]) -> str:
    """How an alias differs from its model, in words: `` at 384 px``, `` with act='quick_gelu'``."""
    return "".join(f" at {value} px" if field == "image_size" else f" with {field}={value!r}"
                   for field, value in overrides.items())


def get_config(name: str, **overrides: Any) -> Any:
    """The config of a named model, with fields overridden (e.g. ``num_classes=2``)."""
    return get_spec(name).config.replace(**overrides)


def create_model(name: str, *, pretrained: bool = False, device: torch.device | str | None = None,
                 **overrides: Any) -> nn.Module:
    """Build a named model, e.g. ``create_model("vit_s16", num_classes=2)``.

    Any config field can be overridden. ``device="meta"`` builds it without allocating weights.
    ``pretrained=True`` loads timm's default pretrained weights for the model (downloaded once from the Hugging
    Face Hub, as ``vitkit.load("timm:NAME")``), resized to ``num_classes`` / ``image_size`` if given.
    """
    spec = get_spec(name)
    if pretrained:
        from ..interop.load import load_pretrained  # interop builds on models: imported only when asked for

        return load_pretrained(name, **overrides).to(device or "cpu")
    config = spec.config.replace(**overrides)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        return spec.build(config)


def build_model(config: Any, *, device: torch.device | str | None = None) -> nn.Module:
    """Build a model from a config object (as saved in a run's ``config.json``)."""
    builders = {type(spec.config): spec.build for spec in _REGISTRY.values()}
    if type(config) not in builders:
        raise ConfigError(f"no model is built from a {type(config).__name__}")
    with torch.device(device) if device is not None else contextlib.nullcontext():
        return builders[type(config)](config)


def config_class(architecture: str) -> type:
    """The config class of a model class name (as stored in a saved model's ``config.json``)."""
    for spec in _REGISTRY.values():
        if getattr(spec.build, "__name__", "") == architecture:
            return type(spec.config)
    raise ConfigError(f"unknown architecture {architecture!r}; this vitkit knows {sorted(_architectures())}")


def _architectures() -> set[str]:
    return {getattr(spec.build, "__name__", "?") for spec in _REGISTRY.values()}


def _register_vits() -> None:
    for size, patch in [("ti", 16), ("ti", 32), ("s", 16), ("s", 32), ("b", 16), ("b", 32), ("l", 16),
                        ("l", 32), ("h", 14)]:
        dim, depth, heads = VIT_SIZES[size]
        register(
            f"vit_{size}{patch}", ViTConfig(patch_size=patch, dim=dim, depth=depth, heads=heads), VisionTransformer,
            f"ViT-{_SIZE_NAMES[size]}/{patch} at 224 px, as in the ViT paper and timm",
        )
        if (size, patch) == ("ti", 32):  # not in timm
            continue
        timm = f"vit_{_SIZE_NAMES[size].lower()}_patch{patch}"
        _ALIASES[f"{timm}_224"] = (f"vit_{size}{patch}", {})
        if size != "h":  # timm has no ViT-H/14 at 384 px
            _ALIASES[f"{timm}_384"] = (f"vit_{size}{patch}", {"image_size": 384})
    # The blog's model, defects included (see docs/seed.md and seed.py).
    register("seed", SEED, VisionTransformer,
             "the blog's model exactly: post-norm, pos-embed before [CLS], attention across the batch (a defect)")
    register("seed_fixed", SEED.replace(attention_axis="tokens"), VisionTransformer,
             "the blog's model with attention over the tokens of each image (batch-mixing defect fixed)")
    # The embedded demo's model: 28x28 digits in 4x4 patches of 7x7 pixels.
    register("vit_mnist", ViTConfig(image_size=28, patch_size=7, dim=128, depth=6, heads=4, num_classes=10),
             VisionTransformer, "a small ViT for 28x28 digits (the `make demo` model on MNIST-5k)")


_register_vits()


def _register_layer_scale_vits() -> None:
    # DeiT-3 (Touvron et al. 2022, "DeiT III"): layer scale, no position for [CLS] (timm's no_embed_class).
    for size in ("s", "b"):
        dim, depth, heads = VIT_SIZES[size]
        config = ViTConfig(patch_size=16, dim=dim, depth=depth, heads=heads, pos_embed="learned_patches",
                           init_values=1e-6)
        register(f"deit3_{size}16", config, VisionTransformer,
                 f"DeiT-3 {_SIZE_NAMES[size]}/16 at 224 px: layer scale, no position for [CLS] (as timm)")
        timm = f"deit3_{_SIZE_NAMES[size].lower()}_patch16"
        _ALIASES[f"{timm}_224"] = (f"deit3_{size}16", {})
        _ALIASES[f"{timm}_384"] = (f"deit3_{size}16", {"image_size": 384})
    # DINOv2 with 4 registers (Darcet et al. 2023) at its 518 px; only the patches have positions.
    dim, depth, heads = VIT_SIZES["s"]
    register("dinov2_s14_reg", ViTConfig(image_size=518, patch_size=14, dim=dim, depth=depth, heads=heads,
                                         pos_embed="learned_patches", init_values=1e-5, reg_tokens=4),
             VisionTransformer, "DINOv2 Small/14 with 4 registers at 518 px: layer scale, registers (as timm)")
    _ALIASES["vit_small_patch14_reg4_dinov2"] = ("dinov2_s14_reg", {})


_register_layer_scale_vits()


def _register_fine_tuning_vits() -> None:
    """The DeiT distilled models and the CLIP and SigLIP image towers, as timm builds them for fine-tuning."""
    # DeiT (Touvron et al. 2021) with its distillation token and second head.
    for size in ("ti", "s", "b"):
        dim, depth, heads = VIT_SIZES[size]
        register(f"deit_{size}16_distilled", ViTConfig(dim=dim, depth=depth, heads=heads, distilled=True),
                 VisionTransformer, f"DeiT {_SIZE_NAMES[size]}/16 distilled at 224 px: distillation token and "
                 "head, output the mean of both heads (as timm)")
        _ALIASES[f"deit_{_SIZE_NAMES[size].lower()}_distilled_patch16_224"] = (f"deit_{size}16_distilled", {})
    _ALIASES["deit_base_distilled_patch16_384"] = ("deit_b16_distilled", {"image_size": 384})
    # CLIP image towers (Radford et al. 2021): a LayerNorm before the blocks, no patch bias, LayerNorm eps 1e-5.
    for size, patch, sizes in [("b", 32, ()), ("b", 16, (384,)), ("l", 14, (336,))]:
        dim, depth, heads = VIT_SIZES[size]
        config = ViTConfig(patch_size=patch, dim=dim, depth=depth, heads=heads, norm_pre=True, norm_eps=1e-5)
        register(f"clip_{size}{patch}", config, VisionTransformer,
                 f"CLIP image tower ViT-{size.upper()}/{patch} at 224 px: norm before the blocks (as timm)")
        timm = f"vit_{_SIZE_NAMES[size].lower()}_patch{patch}_clip"
        _ALIASES[f"{timm}_224"] = (f"clip_{size}{patch}", {})
        for image_size in sizes:
            _ALIASES[f"{timm}_{image_size}"] = (f"clip_{size}{patch}", {"image_size": image_size})
        _ALIASES[f"{timm}_quickgelu_224"] = (f"clip_{size}{patch}", {"act": "quick_gelu"})  # OpenAI's exact act
    # SigLIP image tower (Zhai et al. 2023): no [CLS], attention pooling (MAP head).
    dim, depth, heads = VIT_SIZES["b"]
    register("siglip_b16", ViTConfig(dim=dim, depth=depth, heads=heads, class_token=False, pool="map"),
             VisionTransformer, "SigLIP image tower ViT-B/16 at 224 px: no [CLS], attention pooling (as timm)")
    _ALIASES["vit_base_patch16_siglip_224"] = ("siglip_b16", {})
    for image_size in (256, 384):
        _ALIASES[f"vit_base_patch16_siglip_{image_size}"] = ("siglip_b16", {"image_size": image_size})

    # "Better plain ViT baselines" (Beyer et al. 2022, big_vision): fixed sincos, no [CLS], average pooling of
    # the normed tokens (big_vision's pool_type='gap' after encoder_norm).
    dim, depth, heads = VIT_SIZES["s"]
    register("plain_vit_s16", ViTConfig(dim=dim, depth=depth, heads=heads, class_token=False, pool="mean",
                                        fc_norm=False, pos_embed="sincos2d_jax"),
             VisionTransformer, "big_vision's plain ViT-S/16 at 224 px: fixed 2-D sincos, no [CLS], global average "
             "pool")


_register_fine_tuning_vits()


def _register_eva02() -> None:
    """EVA-02 (Fang et al. 2023) as timm builds it: 2-D RoPE on a 16x16 reference grid besides the learned position
    embedding, SwiGLU MLP of 8/3 the width (with its inner norm in Base), no key bias, mean of the patches."""
    for size, name in (("ti", "tiny"), ("s", "small"), ("b", "base")):
        dim, depth, heads = VIT_SIZES[size]
        config = ViTConfig(patch_size=14, dim=dim, depth=depth, heads=heads, mlp_ratio=4 * 2 / 3, pool="mean",
                           swiglu=True, mlp_norm=size == "b", key_bias=False, rope=True, rope_grid=16,
                           qkv_layout="split" if size == "b" else "fused")
        register(f"eva02_{size}14", config, VisionTransformer,
                 f"EVA-02 {_SIZE_NAMES[size]}/14 at 224 px: RoPE, SwiGLU{' with its norm' * (size == 'b')}, "
                 "mean pooling (as timm)")
        _ALIASES[f"eva02_{name}_patch14_224"] = (f"eva02_{size}14", {})
        fine_tuned = 448 if size == "b" else 336  # timm's ImageNet fine-tuned classifiers
        _ALIASES[f"eva02_{name}_patch14_{fine_tuned}"] = (f"eva02_{size}14", {"image_size": fine_tuned})


_register_eva02()


def _register_vivits() -> None:
    # The paper's ViViT-{B,L}/16x2 (Arnab et al. 2021): 32 frames at 224 px, 2x16x16 tubelets; Model 2 adds a
    # 4-block temporal encoder. Ti and S use DeiT's widths.
    for variant, number in VARIANT_NUMBERS.items():
        for size in ("ti", "s", "b", "l"):
            dim, depth, heads = VIT_SIZES[size]
            pool = "cls" if number <= 2 else "mean"
            config = ViViTConfig(variant=variant, dim=dim, depth=depth, heads=heads, pool=pool)  # type: ignore[arg-type]
            register(f"vivit_m{number}_{size}", config, VideoVisionTransformer,
                     f"ViViT-{_SIZE_NAMES[size]}/16x2 Model {number} ({variant.replace('_', ' ')}), 32x224x224 clips")


_register_vivits()


def _register_pretrained_video() -> None:
    """VideoMAE and TimeSformer at the sizes of their published Kinetics-400 weights, built as transformers builds
    them (its defaults: LayerNorm eps 1e-12 in VideoMAE's blocks, 1e-5 in its fc_norm, 1e-6 in TimeSformer)."""
    # VideoMAE (Tong et al. 2022): a tubelet ViT, fixed sinusoid positions, no key bias, mean pooling + fc_norm.
    for size in ("s", "b", "l"):
        dim, depth, heads = VIT_SIZES[size]
        config = ViViTConfig(num_frames=16, dim=dim, depth=depth, heads=heads, pool="mean", fc_norm=True,
                             fc_norm_eps=1e-5, pos_embed="sincos", key_bias=False, norm_eps=1e-12)
        register(f"videomae_{size}16", config, VideoVisionTransformer,
                 f"VideoMAE-{_SIZE_NAMES[size]} (16x224x224 clips, 2x16x16 tubelets; transformers' "
                 "VideoMAEForVideoClassification)")
    # TimeSformer (Bertasius et al. 2021): divided space-time attention on 16x16 patches of each frame.
    dim, depth, heads = VIT_SIZES["b"]
    for name, frames, size, what in [("timesformer_b16", 8, 224, ""), ("timesformer_hr_b16", 16, 448, "-HR")]:
        config = ViViTConfig(variant="divided_space_time", num_frames=frames, image_size=size, tubelet_size=(1, 16, 16),
                             dim=dim, depth=depth, heads=heads)
        register(name, config, VideoVisionTransformer,
                 f"TimeSformer{what} (divided space-time attention, {frames}x{size}x{size} clips; transformers' "
                 "TimesformerForVideoClassification)")


_register_pretrained_video()
# The embedded video demo (`vitkit train --data moving-digits`): 8 frames of 40x40 moving MNIST digits.
register("vivit_digits", ViViTConfig(image_size=40, num_frames=8, tubelet_size=(2, 8, 8), dim=64, depth=4, heads=4,
                                     num_classes=4), VideoVisionTransformer,
         "a tiny ViViT Model 1 for the moving-digits demo (8x40x40 clips, 2x8x8 tubelets)")


def _register_point_clouds() -> None:
    from .swin3d.names import register_swin3d  # Swin3D (sparse voxels); its names live in its package

    register_swin3d(register)


_register_point_clouds()
