"""DeiT's distillation token, QK-norm, CLIP's norm before the blocks, the final norm before or after pooling
(``fc_norm``) and attention pooling (SigLIP's MAP head) against timm (random-init reference models built here
and saved to disk, no downloads; peers env): logits at two input sizes, written back to timm, the registered
names' parameter counts, and one-line errors for timm options vitkit does not have."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from conftest import max_diff, randomize_
from safetensors.torch import load_file, save_file

import vitkit
from vitkit.analysis.counts import count
from vitkit.interop.save import save_as
from vitkit.interop.timm import timm_kwargs

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.peers

from timm.models.deit import VisionTransformerDistilled  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

BASE = dict(img_size=64, patch_size=16, embed_dim=64, depth=3, num_heads=4, num_classes=7)
CLIP_NORM = partial(torch.nn.LayerNorm, eps=1e-5)
# name: (timm class, timm options, the vitkit config fields they must give)
CASES = {
    "distilled": (VisionTransformerDistilled, {}, dict(distilled=True, pool="cls")),
    "qk_norm": (VisionTransformer, dict(qk_norm=True), dict(qk_norm=True)),
    "clip": (VisionTransformer, dict(pre_norm=True, norm_layer=CLIP_NORM), dict(norm_pre=True, norm_eps=1e-5)),
    "gap_norm_then_mean": (VisionTransformer, dict(class_token=False, global_pool="avg", fc_norm=False),
                           dict(pool="mean", fc_norm=False)),
    "map": (VisionTransformer, dict(class_token=False, global_pool="map"), dict(pool="map", class_token=False)),
    "map_cls_regs_qk": (VisionTransformer, dict(global_pool="map", reg_tokens=2, qk_norm=True),
                        dict(pool="map", reg_tokens=2, qk_norm=True)),
    "map_fc_norm": (VisionTransformer, dict(class_token=False, global_pool="map", fc_norm=True),
                    dict(pool="map", fc_norm=True)),
}
# The activation is not in the weights: these load with act= given (or from the architecture name, below).
ACTS = {"quick_gelu": dict(pre_norm=True, norm_layer=CLIP_NORM), "gelu_tanh": dict(class_token=False,
                                                                                   global_pool="map")}


def reference(name: str, tmp_path, **extra) -> tuple[torch.nn.Module, object]:
    cls, options, _ = CASES[name]
    model = randomize_(cls(**BASE, **options, **extra))
    path = tmp_path / "timm.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return model, path


def logits(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(images)


@pytest.mark.parametrize("name", list(CASES))
def test_timm_files_load_with_equal_logits_at_two_sizes(name, tmp_path) -> None:
    timm_model, path = reference(name, tmp_path, dynamic_img_size=True)
    model = vitkit.load(path, heads=4)
    for field, value in CASES[name][2].items():
        assert getattr(model.config, field) == value, field
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in timm_model.parameters())
    images = torch.randn(2, 3, 64, 64)
    assert max_diff(logits(model, images), logits(timm_model, images)) <= 1e-5
    # Another size: resampled once on loading, or in the forward pass; timm resamples in its forward pass.
    resized = vitkit.load(path, heads=4, image_size=(96, 48))
    dynamic = vitkit.load(path, heads=4, dynamic_img_size=True)
    images = torch.randn(2, 3, 96, 48)
    expected = logits(timm_model, images)
    for ours in (resized, dynamic):
        diff = max_diff(logits(ours, images), expected)
        assert diff <= 1e-5, f"{name} at 96x48: max |vitkit - timm| = {diff:.2e}"


@pytest.mark.parametrize("name", list(CASES))
def test_vitkit_weights_export_to_timm_with_equal_logits(name, tmp_path) -> None:
    _, path = reference(name, tmp_path)
    model = randomize_(vitkit.load(path, heads=4))  # vitkit's own weights now: written back for timm
    exported = CASES[name][0](**timm_kwargs(model.config)).eval()
    exported.load_state_dict(load_file(save_as(model, "timm", tmp_path / "out.safetensors")), strict=True)
    images = torch.randn(2, 3, 64, 64)
    assert max_diff(logits(model, images), logits(exported, images)) <= 1e-5, name


@pytest.mark.parametrize("act", list(ACTS))
def test_the_mlp_activation_given_on_loading_gives_timms_logits_both_ways(act, tmp_path) -> None:
    timm_model = randomize_(VisionTransformer(**BASE, **ACTS[act], act_layer=act))
    path = tmp_path / "timm.safetensors"
    save_file({k: v.contiguous() for k, v in timm_model.state_dict().items()}, path)
    model = vitkit.load(path, heads=4, act=act)
    images = torch.randn(2, 3, 64, 64)
    assert max_diff(logits(model, images), logits(timm_model, images)) <= 1e-5
    if act == "quick_gelu":  # far from GELU (the tanh form is within ~1e-4 of it: tested per MLP in core tests)
        assert max_diff(logits(vitkit.load(path, heads=4), images), logits(timm_model, images)) > 1e-3
    exported = VisionTransformer(**timm_kwargs(model.config)).eval()
    exported.load_state_dict(load_file(save_as(model, "timm", tmp_path / "out.safetensors")), strict=True)
    assert max_diff(logits(exported, images), logits(model, images)) <= 1e-5


def test_a_timm_hub_folder_gives_heads_eps_and_activation_from_its_architecture_name(tmp_path) -> None:
    """timm's Hub folders hold ``config.json`` with the architecture's name: a registered one tells what the
    weights cannot (here OpenAI CLIP's QuickGELU, LayerNorm eps 1e-5, 12 heads)."""
    import json

    name = "vit_base_patch16_clip_quickgelu_224"
    timm_model = randomize_(timm.create_model(name, pretrained=False, depth=1, img_size=64, num_classes=3))
    save_file({k: v.contiguous() for k, v in timm_model.state_dict().items()}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": name, "num_classes": 3,
                                                      "pretrained_cfg": {"input_size": [3, 64, 64]}}))
    model = vitkit.load(tmp_path)
    assert (model.config.act, model.config.norm_eps, model.config.heads) == ("quick_gelu", 1e-5, 12)
    images = torch.randn(2, 3, 64, 64)
    assert max_diff(logits(model, images), logits(timm_model, images)) <= 1e-5


def test_a_timm_quickgelu_hub_name_keeps_its_activation_though_its_weights_are_the_plain_names(
        tmp_path, monkeypatch) -> None:
    """``timm:vit_base_patch16_clip_quickgelu_224`` downloads ``timm/vit_base_patch16_clip_224.TAG`` (as timm
    does), whose ``config.json`` names the GELU architecture: the name asked for decides the activation."""
    import json

    from vitkit.interop import load as load_module
    from vitkit.interop.hub import hub_repo

    name = "vit_base_patch16_clip_quickgelu_224"
    assert hub_repo(f"timm:{name}.openai") == "timm/vit_base_patch16_clip_224.openai"
    timm_model = randomize_(timm.create_model(name, pretrained=False, depth=1, img_size=64, num_classes=3))
    save_file({k: v.contiguous() for k, v in timm_model.state_dict().items()}, tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "vit_base_patch16_clip_224",
                                                      "pretrained_cfg": {"input_size": [3, 64, 64]}}))
    monkeypatch.setattr(load_module, "download", lambda source: tmp_path / "model.safetensors")
    model = vitkit.load(f"timm:{name}.openai")
    assert model.config.act == "quick_gelu"
    images = torch.randn(2, 3, 64, 64)
    assert max_diff(logits(model, images), logits(timm_model, images)) <= 1e-5


def test_distilled_training_mode_averages_the_heads_as_timm_does(tmp_path) -> None:
    """timm returns the two heads separately only after ``set_distilled_training()``; otherwise, in training
    as in eval, the mean of both: vitkit's forward is that mean, always."""
    timm_model, path = reference("distilled", tmp_path)
    model = vitkit.load(path, heads=4).train()
    timm_model.train()
    images = torch.randn(2, 3, 64, 64)
    assert max_diff(model(images), timm_model(images)) <= 1e-5
    with torch.no_grad():
        tokens = model.forward_features(images)
        alone = (model.head(tokens[:, 0]) + model.head_dist(tokens[:, 1])) / 2
    assert max_diff(model(images), alone) <= 1e-6


def test_a_class_token_model_with_fc_norm_loads_as_mean_pooling_unless_told(tmp_path) -> None:
    """timm's ``fc_norm`` key says the norm follows the pooling, not which pooling: vitkit reads it as mean
    pooling (MAE and BEiT fine-tunes); ``pool='cls'`` loads timm's ``global_pool='token', fc_norm=True``."""
    timm_model = randomize_(VisionTransformer(**BASE, fc_norm=True))
    path = tmp_path / "timm.safetensors"
    save_file({k: v.contiguous() for k, v in timm_model.state_dict().items()}, path)
    assert vitkit.load(path, heads=4).config.pool == "mean"
    model = vitkit.load(path, heads=4, pool="cls")
    images = torch.randn(2, 3, 64, 64)
    assert max_diff(logits(model, images), logits(timm_model, images)) <= 1e-5


# vitkit name -> timm name: the parameter count of each must equal timm's (with timm's 1000 classes) and
# vitkit's count from the config alone.
NAMES = {
    "deit_ti16_distilled": "deit_tiny_distilled_patch16_224", "deit_s16_distilled": "deit_small_distilled_patch16_224",
    "deit_b16_distilled": "deit_base_distilled_patch16_224", "clip_b32": "vit_base_patch32_clip_224",
    "clip_b16": "vit_base_patch16_clip_224", "clip_l14": "vit_large_patch14_clip_224",
    "siglip_b16": "vit_base_patch16_siglip_224",
    "vit_base_patch16_clip_quickgelu_224": "vit_base_patch16_clip_quickgelu_224",  # an alias: clip_b16, QuickGELU
}


@pytest.mark.parametrize("name", list(NAMES))
def test_registered_names_have_timms_parameter_counts(name) -> None:
    with torch.device("meta"):
        timm_model = timm.create_model(NAMES[name], pretrained=False, num_classes=1000)
    model = vitkit.create_model(NAMES[name], device="meta")  # timm's name is an alias of vitkit's
    assert model.config == vitkit.get_config(name)
    expected = sum(p.numel() for p in timm_model.parameters())
    assert sum(p.numel() for p in model.parameters()) == expected == count(model.config).params


def test_registered_names_compute_timms_logits(tmp_path) -> None:
    """Small versions of the names (depth 2, 64 px) with timm's weights give timm's logits."""
    for name, timm_name in NAMES.items():
        if name in ("clip_l14", "deit_b16_distilled") or "quickgelu" in name:
            continue  # clip_b16 / deit_s16_distilled at a larger width; QuickGELU: from a Hub folder, above
        timm_model = randomize_(timm.create_model(timm_name, pretrained=False, num_classes=5, depth=2, img_size=64))
        path = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in timm_model.state_dict().items()}, path)
        model = vitkit.load(path)
        assert model.config == vitkit.get_config(name, depth=2, image_size=64, num_classes=5).replace(
            extra=model.config.extra), name
        images = torch.randn(2, 3, 64, 64)
        diff = max_diff(logits(model, images), logits(timm_model, images))
        assert diff <= 1e-5, f"{name}: max |vitkit - timm| = {diff:.2e}"


@pytest.mark.parametrize("options, words", [
    (dict(scale_mlp_norm=True), "scale_mlp_norm (a norm inside the MLP) (key blocks.0.mlp.norm.bias)"),
    (dict(scale_attn_norm=True), "scale_attn_norm (a norm inside attention) (key blocks.0.attn.norm.bias)"),
])
def test_timm_options_vitkit_lacks_are_refused_in_one_line_naming_the_key(options, words, tmp_path) -> None:
    timm_model = VisionTransformer(**BASE, **options)
    path = tmp_path / "timm.safetensors"
    save_file({k: v.contiguous() for k, v in timm_model.state_dict().items()}, path)
    with pytest.raises(vitkit.VitkitError) as error:
        vitkit.load(path, heads=4)
    message = str(error.value)
    assert words in message and "vitkit does not support" in message and "\n" not in message


@pytest.mark.parametrize("patches, p, prefix", [(16, 0.5, 1), (196, 0.25, 5), (10, 0.95, 0)])
def test_patch_dropout_keeps_as_many_tokens_as_timms_and_nothing_in_eval(patches, p, prefix) -> None:
    from timm.layers import PatchDropout as TimmPatchDropout

    from vitkit.models.patch_dropout import PatchDropout

    tokens = torch.randn(3, prefix + patches, 8)
    ours, theirs = PatchDropout(p, prefix).train(), TimmPatchDropout(p, num_prefix_tokens=prefix).train()
    assert ours(tokens).shape == theirs(tokens).shape
    assert torch.equal(ours(tokens)[:, :prefix], theirs(tokens)[:, :prefix])
    assert torch.equal(ours.eval()(tokens), theirs.eval()(tokens))


def test_a_timm_model_with_patch_drop_rate_is_built_from_the_config_and_agrees_in_eval() -> None:
    config = vitkit.ViTConfig(image_size=64, patch_size=16, dim=64, depth=3, heads=4, num_classes=7,
                              patch_dropout=0.4, reg_tokens=1)
    kwargs = timm_kwargs(config)
    assert kwargs["patch_drop_rate"] == 0.4
    timm_model = randomize_(VisionTransformer(**kwargs)).eval()
    model = vitkit.VisionTransformer(config).eval()
    model.load_state_dict(vitkit.interop.timm.from_timm(timm_model.state_dict()))
    images = torch.randn(2, 3, 64, 64)
    assert max_diff(logits(model, images), logits(timm_model, images)) <= 1e-5
    seen = {}
    for name, net in (("vitkit", model), ("timm", timm_model)):
        net.blocks[0].register_forward_hook(lambda module, args, out, name=name: seen.update({name: out.shape}))
        net.train()(images)
    assert seen["vitkit"] == seen["timm"] == (2, 1 + 1 + 9, 64)  # 9 = int(16 * 0.6) patches kept


def test_the_jax_plain_vit_equals_timms_gap_vit_given_the_same_fixed_table(tmp_path) -> None:
    """timm's ``vit_*_gap`` layout (no [CLS], norm every token, average) with its learned table set to vitkit's
    sincos2d_jax table gives vitkit's logits at two sizes; plain_vit_s16's parameter count is timm's without a
    position table."""
    for size in (64, 96):
        config = vitkit.ViTConfig(image_size=size, patch_size=16, dim=64, depth=3, heads=4, num_classes=7,
                                  class_token=False, pool="mean", fc_norm=False, pos_embed="sincos2d_jax")
        model = randomize_(vitkit.VisionTransformer(config))
        timm_model = VisionTransformer(**{**BASE, "img_size": size}, class_token=False, global_pool="avg",
                                       fc_norm=False)
        state = {k: v for k, v in model.state_dict().items() if k != "pos_embed.weight"}
        timm_model.load_state_dict({**vitkit.interop.timm.to_timm(state, config.replace(pos_embed="learned")),
                                    "pos_embed": model.pos_embed.weight.clone()})
        images = torch.randn(2, 3, size, size)
        assert max_diff(logits(model, images), logits(timm_model.eval(), images)) <= 1e-5
    with torch.device("meta"):
        reference = timm.create_model("vit_small_patch16_224", class_token=False, global_pool="avg", fc_norm=False,
                                      pos_embed="none")
    model = vitkit.create_model("plain_vit_s16", device="meta")
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in reference.parameters())
