"""Original JAX/Flax ViT checkpoints (``.npz``), checked against timm's own JAX loader on random arrays laid out
as google-research/vision_transformer and big_vision write them (no downloads; peers environment)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vitkit

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.peers

from timm.models.vision_transformer import VisionTransformer, _load_weights  # noqa: E402

DIM, HEADS, DEPTH, MLP, PATCH, IMAGE, CLASSES = 64, 4, 2, 128, 8, 32, 5


def jax_arrays(big_vision: bool, pre_logits: bool = False) -> dict[str, np.ndarray]:
    """Random weights with the names and Flax shapes of a JAX ViT checkpoint."""
    rng = np.random.default_rng(0)

    def r(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    mha, ln2, mlp = ("MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0") if big_vision else \
        ("MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3")
    head_dim, grid = DIM // HEADS, IMAGE // PATCH
    block = {
        "LayerNorm_0/scale": 1 + r(DIM), "LayerNorm_0/bias": r(DIM),
        **{f"{mha}/{n}/kernel": r(DIM, HEADS, head_dim) for n in ("query", "key", "value")},
        **{f"{mha}/{n}/bias": r(HEADS, head_dim) for n in ("query", "key", "value")},
        f"{mha}/out/kernel": r(HEADS, head_dim, DIM), f"{mha}/out/bias": r(DIM),
        f"{ln2}/scale": 1 + r(DIM), f"{ln2}/bias": r(DIM),
        f"{mlp}/Dense_0/kernel": r(DIM, MLP), f"{mlp}/Dense_0/bias": r(MLP),
        f"{mlp}/Dense_1/kernel": r(MLP, DIM), f"{mlp}/Dense_1/bias": r(DIM),
    }
    arrays = {
        "embedding/kernel": r(PATCH, PATCH, 3, DIM), "embedding/bias": r(DIM), "cls": r(1, 1, DIM),
        "Transformer/encoder_norm/scale": 1 + r(DIM), "Transformer/encoder_norm/bias": r(DIM),
        "head/kernel": r(DIM, CLASSES), "head/bias": r(CLASSES),
    }
    pos = r(1, grid * grid + 1, DIM)
    if big_vision:
        # big_vision: a "params/" prefix, pos_embedding at the top, blocks scanned into one stacked array each.
        arrays["pos_embedding"] = pos
        for name in block:
            arrays[f"Transformer/encoderblock/{name}"] = np.stack([block[name] + r(*block[name].shape)
                                                                   for _ in range(DEPTH)])
        return {f"params/{k}": v for k, v in arrays.items()}
    arrays["Transformer/posembed_input/pos_embedding"] = pos
    for i in range(DEPTH):
        arrays.update({f"Transformer/encoderblock_{i}/{k}": v + r(*v.shape) for k, v in block.items()})
    if pre_logits:
        arrays.update({"pre_logits/kernel": r(DIM, DIM), "pre_logits/bias": r(DIM)})
    return arrays


def timm_reference(path, num_classes: int = CLASSES) -> torch.nn.Module:
    model = VisionTransformer(img_size=IMAGE, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS,
                              mlp_ratio=MLP / DIM, num_classes=num_classes)
    with torch.no_grad():
        _load_weights(model, str(path))
    return model.eval()


@pytest.mark.parametrize("big_vision", [False, True], ids=["vision_transformer", "big_vision_scanned"])
def test_jax_checkpoints_load_like_timm_loads_them(big_vision, tmp_path) -> None:
    path = tmp_path / "vit.npz"
    np.savez(path, **jax_arrays(big_vision))
    reference = timm_reference(path)
    model = vitkit.load(path)  # heads come from the [D, heads, head_dim] query kernels
    assert model.config.heads == HEADS and model.config.extra["source"]["format"] == "jax"
    images = torch.randn(3, 3, IMAGE, IMAGE)
    with torch.no_grad():
        diff = (model(images) - reference(images)).abs().max().item()
    assert diff <= 1e-5, f"max |vitkit - timm| = {diff:.2e}"


def test_in21k_pre_logits_are_dropped_with_the_head(tmp_path) -> None:
    path = tmp_path / "vit_in21k.npz"
    np.savez(path, **jax_arrays(big_vision=False, pre_logits=True))
    reference = timm_reference(path)
    model = vitkit.load(path)
    assert model.config.num_classes == 0
    images = torch.randn(2, 3, IMAGE, IMAGE)
    with torch.no_grad():
        diff = (model.forward_features(images) - reference.forward_features(images)).abs().max().item()
    assert diff <= 1e-5, f"max |vitkit - timm| features = {diff:.2e}"


def big_vision_posemb(h: int, w: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
    """big_vision's ``posemb_sincos_2d`` (written out from "Better plain ViT baselines"), [1, h * w, width]."""
    y, x = np.mgrid[:h, :w]
    omega = 1.0 / temperature ** (np.arange(width // 4) / (width // 4 - 1))
    y, x = np.einsum("m,d->md", y.flatten(), omega), np.einsum("m,d->md", x.flatten(), omega)
    return np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)[None].astype(np.float32)


def test_a_big_vision_plain_vit_loads_with_its_fixed_sincos_table_and_average_pool(tmp_path) -> None:
    """big_vision's plain ViT (posemb='sincos2d', pool_type='gap') stores neither [CLS] nor a table: vitkit reads it
    as pos_embed='sincos2d_jax', the mean of the normed tokens; timm given the same table as a learned one agrees."""
    arrays = {k: v for k, v in jax_arrays(big_vision=True).items() if k not in ("params/cls", "params/pos_embedding")}
    np.savez(tmp_path / "plain.npz", **arrays)
    model = vitkit.load(tmp_path / "plain.npz", image_size=IMAGE)  # no table: the size is not in the weights
    assert (model.config.pos_embed, model.config.class_token, model.config.pool, model.config.fc_norm) == (
        "sincos2d_jax", False, "mean", False)
    grid = IMAGE // PATCH
    np.savez(tmp_path / "learned.npz", **arrays, **{"params/pos_embedding": big_vision_posemb(grid, grid, DIM)})
    reference = VisionTransformer(img_size=IMAGE, patch_size=PATCH, embed_dim=DIM, depth=DEPTH, num_heads=HEADS,
                                  mlp_ratio=MLP / DIM, num_classes=CLASSES, class_token=False, global_pool="avg",
                                  fc_norm=False)
    with torch.no_grad():
        _load_weights(reference, str(tmp_path / "learned.npz"))
        images = torch.randn(3, 3, IMAGE, IMAGE)
        diff = (model(images) - reference.eval()(images)).abs().max().item()
    assert diff <= 1e-5, f"max |vitkit - timm| = {diff:.2e}"
