"""Recorded attention against transformers' ``output_attentions=True`` and timm's explicit attention path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import vitkit
from conftest import run_cli
from vitkit.explain import attention_maps
from vitkit.interop.timm import timm_kwargs, to_timm

transformers = pytest.importorskip("transformers")
timm = pytest.importorskip("timm")
pytestmark = pytest.mark.peers

# transformers' ViTModel names -> vitkit's, for one layer; q, k and v are concatenated into vitkit's qkv.
HF_LAYER = {
    "layernorm_before": "norm1", "layernorm_after": "norm2", "attention.o_proj": "attn.proj",
    "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2",
}


def vitkit_state_from_hf(hf: dict[str, torch.Tensor], depth: int) -> dict[str, torch.Tensor]:
    state = {
        "cls_token.token": hf["embeddings.cls_token"], "pos_embed.weight": hf["embeddings.position_embeddings"],
        "patch_embed.proj.weight": hf["embeddings.patch_embeddings.projection.weight"],
        "patch_embed.proj.bias": hf["embeddings.patch_embeddings.projection.bias"],
        "norm.weight": hf["layernorm.weight"], "norm.bias": hf["layernorm.bias"],
    }
    for i in range(depth):
        for theirs, ours in HF_LAYER.items():
            for kind in ("weight", "bias"):
                state[f"blocks.{i}.{ours}.{kind}"] = hf[f"layers.{i}.{theirs}.{kind}"]
        for kind in ("weight", "bias"):
            state[f"blocks.{i}.attn.qkv.{kind}"] = torch.cat(
                [hf[f"layers.{i}.attention.{p}_proj.{kind}"] for p in "qkv"])
    return state


def sharpen(model: torch.nn.Module, names: tuple[str, ...]) -> None:
    """Larger query/key weights: at the usual 0.02 init every attention row is nearly uniform, and a wrong
    mapping would still agree to 1e-5."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("weight") and any(n in name for n in names):
                parameter.normal_(0, 0.2)  # rows peak around 0.5: neither flat nor one-hot


def test_attention_equals_transformers_output_attentions() -> None:
    hf_config = transformers.ViTConfig(
        hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128, image_size=64,
        patch_size=16, layer_norm_eps=1e-6, attn_implementation="eager",
    )
    reference = transformers.ViTModel(hf_config, add_pooling_layer=False).eval()
    sharpen(reference, ("q_proj", "k_proj", "embeddings"))
    model = vitkit.VisionTransformer(vitkit.ViTConfig(
        image_size=64, patch_size=16, dim=64, depth=3, heads=4, mlp_dim=128, num_classes=0)).eval()
    model.load_state_dict(vitkit_state_from_hf(reference.state_dict(), 3), strict=True)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = torch.stack(reference(pixel_values=images, output_attentions=True).attentions, dim=1)
        _, attention = attention_maps(model, images)
    assert attention.shape == expected.shape == (2, 3, 4, 17, 17)
    assert expected.max() > 0.5, "the reference attention is too flat to tell mappings apart"
    diff = (attention - expected).abs().max().item()
    assert diff <= 1e-5, f"max |vitkit - transformers| attention = {diff:.2e}"


@pytest.mark.parametrize("overrides", [{}, {"class_token": False, "pool": "mean"}])
def test_attention_equals_timm_explicit_attention(overrides: dict) -> None:
    config = vitkit.ViTConfig(image_size=64, patch_size=16, dim=64, depth=2, heads=4, num_classes=5, **overrides)
    model = vitkit.VisionTransformer(config).eval()
    sharpen(model, ("attn.qkv", "patch_embed"))
    reference = timm.models.vision_transformer.VisionTransformer(**timm_kwargs(config)).eval()
    reference.load_state_dict(to_timm(model.state_dict(), config), strict=True)
    captured = []
    for block in reference.blocks:
        block.attn.fused_attn = False  # timm then computes the softmax and passes it through attn_drop
        block.attn.attn_drop.register_forward_hook(lambda _m, _i, out: captured.append(out))
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference(images)
        _, attention = attention_maps(model, images)
    expected = torch.stack(captured, dim=1)
    assert expected.max() > 0.5, "the reference attention is too flat to tell mappings apart"
    torch.testing.assert_close(attention, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("library", ["timm", "transformers"])
def test_cli_explains_checkpoints_of_other_libraries(library: str, tmp_path) -> None:
    """A timm .pth and a Hugging Face folder go through vitkit.load; the figure is written."""
    if library == "timm":
        reference = timm.models.vision_transformer.VisionTransformer(
            img_size=64, patch_size=16, embed_dim=64, depth=2, num_heads=4, num_classes=3)
        source = tmp_path / "timm_vit.pth"
        torch.save(reference.state_dict(), source)
    else:
        reference = transformers.ViTForImageClassification(transformers.ViTConfig(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, image_size=64,
            patch_size=16, num_labels=3))
        source = tmp_path / "hf_vit"
        reference.save_pretrained(source)
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (80, 80, 3), dtype=np.uint8)).save(image)
    result = run_cli("explain", str(source), str(image), "--method", "grad-rollout", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "photo.grad-rollout.png") as png:
        assert png.size == (2 * 256, 30 + 256 + 20) and png.mode == "RGB"
