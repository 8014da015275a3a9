"""DeiT's distillation token, QK-norm, the norm before the blocks (``norm_pre``), the final norm before or after
pooling (``fc_norm``), attention pooling (``pool='map'``) and the MLP's activation (``act``), each against its
formula written out here from the model's own weights, plus round trips, the [CLS] read-out shortcut and the
one-line errors. timm parity is in ``test_interop_peers_timm_heads.py``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import randomize_

import vitkit
from vitkit.analysis.counts import count
from vitkit.errors import ConfigError, VitkitError
from vitkit.interop.save import save_as

OPTIONS = [dict(distilled=True), dict(qk_norm=True), dict(norm_pre=True, norm_eps=1e-5),
           dict(class_token=False, pool="mean", fc_norm=False), dict(pool="map", class_token=False),
           dict(pool="map", reg_tokens=2, qk_norm=True), dict(fc_norm=True), dict(act="quick_gelu")]


def small(**overrides) -> vitkit.VisionTransformer:
    options = dict(image_size=32, patch_size=8, dim=32, depth=2, heads=4, num_classes=5) | overrides
    return randomize_(vitkit.VisionTransformer(vitkit.ViTConfig(**options)))


def blocks_output(model: vitkit.VisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """The tokens after the last block, recorded by a hook (no shortcut of the model's own code)."""
    seen = []
    handle = model.blocks[-1].register_forward_hook(lambda module, args, out: seen.append(out))
    with torch.no_grad():
        model.prune_readout = False
        model(images)
    handle.remove()
    return seen[0]


def test_distilled_output_is_the_mean_of_the_two_heads() -> None:
    model = small(distilled=True)
    images = torch.randn(3, 3, 32, 32)
    tokens = model.norm(blocks_output(model, images))
    expected = (tokens[:, 0] @ model.head.weight.T + model.head.bias
                + tokens[:, 1] @ model.head_dist.weight.T + model.head_dist.bias) / 2
    with torch.no_grad():
        torch.testing.assert_close(model(images), expected, rtol=0, atol=1e-5)
    assert model.num_prefix_tokens == 2 and model.pos_embed.weight.shape[1] == 16 + 2


def test_distilled_without_head_returns_the_mean_of_both_tokens_and_resets_both_heads() -> None:
    model = small(distilled=True)
    images = torch.randn(2, 3, 32, 32)
    tokens = model.norm(blocks_output(model, images))
    model.reset_classifier(0)
    with torch.no_grad():
        torch.testing.assert_close(model(images), (tokens[:, 0] + tokens[:, 1]) / 2, rtol=0, atol=1e-6)
    model.reset_classifier(3)
    assert model.head_dist.weight.shape == (3, 32) and model(images).shape == (2, 3)


def test_qk_norm_normalises_each_heads_queries_and_keys() -> None:
    model = small(qk_norm=True, depth=1)
    attn = model.blocks[0].attn
    x = torch.randn(2, 17, 32)
    with torch.no_grad():
        q, k, v = attn.qkv(x).reshape(2, 17, 3, 4, 8).permute(2, 0, 3, 1, 4)
        q = F.layer_norm(q, (8,), attn.q_norm.weight, attn.q_norm.bias, 1e-6)
        k = F.layer_norm(k, (8,), attn.k_norm.weight, attn.k_norm.bias, 1e-6)
        weights = (q @ k.transpose(-2, -1) / 8**0.5).softmax(-1)
        expected = attn.proj((weights @ v).transpose(1, 2).reshape(2, 17, 32))
        torch.testing.assert_close(attn(x), expected, rtol=0, atol=1e-5)


def test_norm_pre_normalises_the_tokens_before_the_first_block_and_drops_the_patch_bias() -> None:
    model = small(norm_pre=True)
    assert model.patch_embed.proj.bias is None
    seen = []
    model.blocks[0].register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        model(images)
        patches = model.patch_embed.proj(images).flatten(2).transpose(1, 2)
        tokens = torch.cat([model.cls_token.token.expand(2, -1, -1), patches], dim=1) + model.pos_embed.weight
        torch.testing.assert_close(seen[0], model.norm_pre(tokens), rtol=0, atol=1e-6)


@pytest.mark.parametrize("fc_norm", [False, True])
def test_fc_norm_puts_the_final_norm_before_or_after_mean_pooling(fc_norm: bool) -> None:
    model = small(class_token=False, pool="mean", fc_norm=fc_norm)
    images = torch.randn(2, 3, 32, 32)
    tokens = blocks_output(model, images)
    pooled = model.norm(tokens.mean(1)) if fc_norm else model.norm(tokens).mean(1)
    with torch.no_grad():
        torch.testing.assert_close(model(images), model.head(pooled), rtol=0, atol=1e-5)
    default = small(class_token=False, pool="mean")
    default.load_state_dict(model.state_dict())
    with torch.no_grad():  # None is timm's default: after pooling for mean pooling
        assert torch.equal(default(images), model(images)) == fc_norm


@pytest.mark.parametrize("class_token", [False, True])
def test_attention_pooling_is_a_latent_query_over_the_patches_then_a_residual_mlp(class_token: bool) -> None:
    model = small(pool="map", class_token=class_token, reg_tokens=1)
    pool = model.pool
    images = torch.randn(2, 3, 32, 32)
    patches = model.norm(blocks_output(model, images))[:, model.num_prefix_tokens :]
    with torch.no_grad():
        q = pool.q(pool.latent).reshape(1, 4, 8).transpose(0, 1)  # [heads, 1, head_dim]
        k, v = pool.kv(patches).reshape(2, 16, 2, 4, 8).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-2, -1) / 8**0.5).softmax(-1)
        x = pool.proj((weights @ v).reshape(2, 32))
        x = x + pool.mlp.fc2(F.gelu(pool.mlp.fc1(pool.norm(x))))
        torch.testing.assert_close(model(images), model.head(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("act, formula", [
    ("quick_gelu", lambda x: x * torch.sigmoid(1.702 * x)),
    ("gelu_tanh", lambda x: 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x**3)))),
])
def test_act_is_the_mlps_activation_in_blocks_and_attention_pooling(act, formula) -> None:
    model = small(act=act, pool="map")
    x = torch.randn(2, 5, 32)
    for mlp in (model.blocks[0].mlp, model.pool.mlp):
        with torch.no_grad():
            torch.testing.assert_close(mlp(x), mlp.fc2(formula(mlp.fc1(x))), rtol=0, atol=1e-5)


@pytest.mark.parametrize("overrides", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_options_round_trip_through_vitkit_and_timm_files_and_count_exactly(overrides, tmp_path) -> None:
    model = small(**overrides)
    images = torch.randn(2, 3, 32, 32)
    assert count(model.config).params == sum(p.numel() for p in model.parameters())
    for fmt in ("vitkit", "timm"):
        loaded = vitkit.load(save_as(model, fmt, tmp_path / fmt))
        assert loaded.config.replace(extra={}) == model.config.replace(extra={}), fmt
        with torch.no_grad():
            assert torch.equal(loaded(images), model(images)), fmt


@pytest.mark.parametrize("num_classes", [3, 0])
def test_a_distilled_checkpoint_loads_with_new_heads_for_other_classes(num_classes, tmp_path) -> None:
    model = small(distilled=True)
    path = save_as(model, "timm", tmp_path / "deit.safetensors")
    tuned = vitkit.load(path, num_classes=num_classes)
    assert tuned.config.distilled and tuned.config.num_classes == num_classes
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith(("head.", "head_dist."))}
    assert all(torch.equal(tuned.state_dict()[k], v) for k, v in kept.items())
    assert tuned(torch.randn(2, 3, 32, 32)).shape == (2, num_classes or 32)


@pytest.mark.parametrize("overrides", [dict(distilled=True), dict(distilled=True, qk_norm=True)])
def test_the_cls_readout_shortcut_keeps_the_distillation_token(overrides) -> None:
    model = small(**overrides)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fast = model(images)
        model.prune_readout = False
        torch.testing.assert_close(fast, model(images), rtol=0, atol=1e-6)


def test_timm_weights_of_a_plain_model_written_with_the_new_keys_load(tmp_path) -> None:
    """A timm file is recognised from timm's own key names (dist_token, norm_pre, attn_pool, fc_norm)."""
    model = small(pool="map", class_token=False, qk_norm=True)
    keys = set(vitkit.load(save_as(model, "timm", tmp_path / "m.safetensors")).state_dict())
    assert {"pool.latent", "blocks.0.attn.q_norm.weight", "pool.mlp.fc1.weight"} <= keys


@pytest.mark.parametrize("overrides, message", [
    (dict(distilled=True, pool="mean"), "distilled=True reads [CLS] and the distillation token"),
    (dict(distilled=True, reg_tokens=2), "distilled=True reads [CLS] and the distillation token"),
    (dict(distilled=True, fc_norm=True), "fc_norm unset"),
    (dict(pool="max"), "pool must be one of 'cls', 'mean', 'map', 'cls_mean', got 'max'"),
    (dict(act="relu"), "act must be one of 'gelu', 'gelu_tanh', 'quick_gelu', got 'relu'"),
])
def test_invalid_combinations_are_one_line_errors(overrides, message) -> None:
    with pytest.raises(ConfigError) as error:
        vitkit.ViTConfig(**overrides)
    assert message in str(error.value) and "\n" not in str(error.value)


REFUSED = [(dict(distilled=True), "a distillation token"), (dict(qk_norm=True), "QK-norm"),
           (dict(norm_pre=True), "a norm before the blocks (norm_pre)"), (dict(pool="map"), "pooling 'map'"),
           (dict(fc_norm=True), "the final norm after pooling (fc_norm)")]


# transformers writes a distillation token (DeiT) and norm_pre (CLIP): tests/test_interop_peers_hf_families.py
@pytest.mark.parametrize("overrides, words, fmt", [
    *[(overrides, words, "torchvision") for overrides, words in REFUSED],
    *[(overrides, words, "hf") for overrides, words in REFUSED if not {"distilled", "norm_pre"} & set(overrides)],
])
def test_formats_without_an_option_refuse_it_in_one_line(overrides, words, fmt, tmp_path) -> None:
    with pytest.raises(VitkitError) as error:
        save_as(small(**overrides), fmt, tmp_path / "out")
    assert words in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("name, fields", [
    ("deit_s16_distilled", dict(distilled=True, dim=384)), ("clip_b16", dict(norm_pre=True, norm_eps=1e-5)),
    ("siglip_b16", dict(pool="map", class_token=False)),
    ("vit_base_patch16_clip_384", dict(norm_pre=True, image_size=(384, 384))),
    ("deit_small_distilled_patch16_224", dict(distilled=True)),
    ("vit_base_patch16_clip_quickgelu_224", dict(norm_pre=True, act="quick_gelu")),
])
def test_registered_names(name, fields) -> None:
    config = vitkit.get_config(name)
    for field, value in fields.items():
        assert getattr(config, field) == value, field
    model = vitkit.create_model(name, device="meta")
    assert sum(p.numel() for p in model.parameters()) == count(config).params


def test_cls_mean_pooling_concatenates_the_normed_cls_and_the_mean_patch_token() -> None:
    model = small(pool="cls_mean", reg_tokens=2)
    assert model.head.in_features == 64 and model.config.pooled_dim == 64
    images = torch.randn(2, 3, 32, 32)
    tokens = model.norm(blocks_output(model, images))
    with torch.no_grad():
        expected = model.head(torch.cat([tokens[:, 0], tokens[:, 3:].mean(1)], dim=-1))
        torch.testing.assert_close(model(images), expected, rtol=0, atol=1e-5)
    model.reset_classifier(3)
    assert model.head.in_features == 64 and model(images).shape == (2, 3)
    assert sum(p.numel() for p in model.parameters()) == count(model.config).params
    with pytest.raises(ConfigError, match="pool='cls_mean' .* needs class_token=True and fc_norm unset"):
        vitkit.ViTConfig(pool="cls_mean", fc_norm=True)


def test_final_norm_false_leaves_the_last_blocks_tokens_unnormed() -> None:
    model = small(pool="mean", final_norm=False, norm_pre=True)
    assert isinstance(model.norm, torch.nn.Identity)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.head(blocks_output(model, images)[:, 1:].mean(1))
        torch.testing.assert_close(model(images), expected, rtol=0, atol=1e-5)
    assert sum(p.numel() for p in model.parameters()) == count(model.config).params
