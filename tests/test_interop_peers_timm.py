"""Checkpoints in and out against timm's ``VisionTransformer`` (random init, no downloads; peers environment)."""

from __future__ import annotations

import pytest
import torch
from conftest import max_diff, randomize_, run_cli
from safetensors.torch import load_file, save_file

import vitkit
from vitkit.interop.save import save_as
from vitkit.store import save_model

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.peers

from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn  # noqa: E402

# Three architectures in timm's own terms: with / without qkv bias, different widths, depths and patch sizes.
TIMM_CONFIGS = {
    "d64_p16_bias": dict(img_size=64, patch_size=16, embed_dim=64, depth=2, num_heads=4, num_classes=7),
    "d96_p8_nobias": dict(img_size=48, patch_size=8, embed_dim=96, depth=3, num_heads=3, qkv_bias=False,
                          num_classes=5),
    "d128_p14_mlp200": dict(img_size=56, patch_size=14, embed_dim=128, depth=2, num_heads=8, mlp_ratio=200 / 128,
                            num_classes=10),
}


def save_timm(model: torch.nn.Module, path) -> None:
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)


@pytest.mark.parametrize("name", list(TIMM_CONFIGS))
def test_timm_weights_load_with_equal_logits(name, tmp_path) -> None:
    kwargs = TIMM_CONFIGS[name]
    reference = randomize_(VisionTransformer(**kwargs))
    save_timm(reference, tmp_path / "timm.safetensors")
    model = vitkit.load(tmp_path / "timm.safetensors", heads=kwargs["num_heads"])
    assert model.config.extra["source"]["format"] == "timm"
    images = torch.randn(3, 3, kwargs["img_size"], kwargs["img_size"])
    with torch.no_grad():
        diff = max_diff(model(images), reference(images))
    assert diff <= 1e-5, f"{name}: max |vitkit - timm| = {diff:.2e}"


@pytest.mark.parametrize("name", list(TIMM_CONFIGS))
def test_vitkit_weights_export_to_timm_with_equal_logits(name, tmp_path) -> None:
    kwargs = TIMM_CONFIGS[name]
    config = vitkit.ViTConfig(
        image_size=kwargs["img_size"], patch_size=kwargs["patch_size"], dim=kwargs["embed_dim"],
        depth=kwargs["depth"], heads=kwargs["num_heads"], qkv_bias=kwargs.get("qkv_bias", True),
        mlp_dim=int(kwargs["embed_dim"] * kwargs.get("mlp_ratio", 4.0)), num_classes=kwargs["num_classes"],
    )
    model = randomize_(vitkit.VisionTransformer(config))
    written = save_as(model, "timm", tmp_path / "out.safetensors")
    reference = VisionTransformer(**kwargs).eval()
    reference.load_state_dict(load_file(written), strict=True)
    images = torch.randn(3, 3, kwargs["img_size"], kwargs["img_size"])
    with torch.no_grad():
        diff = max_diff(model(images), reference(images))
    assert diff <= 1e-5, f"{name}: max |vitkit - timm| = {diff:.2e}"


def test_standard_sizes_need_no_head_count(tmp_path) -> None:
    reference = randomize_(timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1, num_classes=4))
    torch.save(reference.state_dict(), tmp_path / "vit_ti.pth")
    model = vitkit.load(tmp_path / "vit_ti.pth")
    assert model.config.heads == 3 and model.config.image_size == (224, 224)
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert max_diff(model(images), reference(images)) <= 1e-5


@pytest.mark.parametrize("options", [
    {},                                                   # [CLS] with its own position
    {"no_embed_class": True},                             # [CLS] without a position (vitkit: learned_patches)
    {"class_token": False, "global_pool": "avg"},         # no [CLS]: every position is a patch
])
@pytest.mark.parametrize("new_size", [384, 160])
def test_a_224_checkpoint_runs_at_another_size_like_timm_resamples_it(options, new_size, tmp_path) -> None:
    base = dict(patch_size=16, embed_dim=64, depth=1, num_heads=4, num_classes=3, **options)
    source = randomize_(VisionTransformer(img_size=224, **base))
    save_timm(source, tmp_path / "224.safetensors")
    reference = VisionTransformer(img_size=new_size, **base).eval()
    reference.load_state_dict(checkpoint_filter_fn(source.state_dict(), reference), strict=True)
    model = vitkit.load(tmp_path / "224.safetensors", image_size=new_size, heads=4)
    images = torch.randn(2, 3, new_size, new_size)
    with torch.no_grad():
        diff = max_diff(model(images), reference(images))
    assert diff <= 1e-5, f"{options} at {new_size}: max |vitkit - timm| = {diff:.2e}"


def test_convert_cli_writes_what_timm_loads(tmp_path) -> None:
    config = vitkit.ViTConfig(image_size=32, patch_size=8, dim=64, depth=1, heads=4, num_classes=2, pool="mean")
    model = randomize_(vitkit.VisionTransformer(config))
    save_model(tmp_path / "run", model)
    result = run_cli("convert", str(tmp_path / "run"), "--to", "timm", str(tmp_path / "timm"))
    assert result.returncode == 0, result.stderr
    reference = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=4, num_classes=2,
                                  global_pool="avg").eval()
    reference.load_state_dict(load_file(tmp_path / "timm" / "model.safetensors"), strict=True)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert max_diff(model(images), reference(images)) <= 1e-5


def test_timm_models_vitkit_cannot_express_are_refused(tmp_path) -> None:
    # A gated MLP (timm's mlp_layer=SwiGLU, as EVA-02 uses) is no option of vitkit's: one line naming the key.
    from timm.layers import SwiGLU

    reference = VisionTransformer(img_size=32, patch_size=8, embed_dim=64, depth=1, num_heads=4, mlp_layer=SwiGLU)
    save_timm(reference, tmp_path / "swiglu.safetensors")
    with pytest.raises(vitkit.VitkitError, match=r"^this timm ViT uses a gated \(SwiGLU\) MLP \(key blocks\.0\."
                                                 r"mlp\.fc1_g\.bias\), which vitkit does not support$"):
        vitkit.load(tmp_path / "swiglu.safetensors")


def test_timm_hub_names_offline_give_a_one_line_error(tmp_path, monkeypatch) -> None:
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    result = run_cli("convert", "timm:vit_base_patch16_224.augreg_in21k", "--to", "vitkit", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "could not download" in result.stderr and "pass the file's path" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_default_pretrained_tags_are_timms() -> None:
    """``timm:NAME`` / ``pretrained=True`` pick the weights timm's ``create_model(NAME, pretrained=True)`` picks."""
    from timm.models import get_pretrained_cfg

    from vitkit.interop.hub import TIMM_DEFAULT_TAGS, hub_repo

    for name, tag in TIMM_DEFAULT_TAGS.items():
        cfg = get_pretrained_cfg(name)
        assert cfg.tag == tag, name
        assert hub_repo(f"timm:{name}") == cfg.hf_hub_id
