"""Run-time input sizes (``dynamic_img_size``), ``forward_intermediates``, layer scale and register tokens of the
image ViT, against references that do not share the code under test: the fixed-size path, a model built at the
other size, forward hooks on the blocks, the formula of each option. timm parity is in
``test_interop_peers_timm_dense.py``."""

from __future__ import annotations

import pytest
import torch
from conftest import block_outputs, intermediates_every_way, randomize_

import vitkit
from vitkit.errors import ConfigError, VitkitError
from vitkit.interop.infer import infer_config
from vitkit.interop.save import save_as
from vitkit.models import layers


def small(**overrides) -> vitkit.VisionTransformer:
    options = dict(image_size=32, patch_size=8, dim=32, depth=3, heads=4, num_classes=5) | overrides
    return randomize_(vitkit.VisionTransformer(vitkit.ViTConfig(**options)))


def same_weights(model: vitkit.VisionTransformer, **overrides) -> vitkit.VisionTransformer:
    other = vitkit.VisionTransformer(model.config.replace(**overrides)).eval()
    other.load_state_dict(model.state_dict())
    return other


@pytest.mark.parametrize("overrides", [{}, {"pos_embed": "learned_patches"}, {"pos_embed": "sincos2d"},
                                       {"reg_tokens": 2, "init_values": 0.1}])
def test_dynamic_size_at_the_configured_size_is_the_fixed_path_bit_for_bit(overrides, monkeypatch) -> None:
    fixed = small(**overrides)
    dynamic = same_weights(fixed, dynamic_img_size=True)

    def no_resampling(*args, **kwargs):
        raise AssertionError("the configured size must not resample the position embedding")

    monkeypatch.setattr(layers, "resample_pos_embed", no_resampling)
    monkeypatch.setattr(layers, "sincos_2d", no_resampling)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(dynamic(images), fixed(images))


def test_other_sizes_are_an_error_without_dynamic_size_and_run_with_it() -> None:
    model = small()
    with pytest.raises(ValueError, match="expected images of shape Bx3x32x32, got 1x3x48x40"):
        model(torch.randn(1, 3, 48, 40))
    dynamic = same_weights(model, dynamic_img_size=True)
    assert dynamic(torch.randn(1, 3, 48, 40)).shape == (1, 5)
    with pytest.raises(ValueError, match="multiples of the patch 8x8, got 1x3x36x40"):
        dynamic(torch.randn(1, 3, 36, 40))


@pytest.mark.parametrize("overrides", [{}, {"pos_embed": "learned_patches", "reg_tokens": 3},
                                       {"class_token": False, "pool": "mean"}])
def test_another_size_equals_the_checkpoint_resized_on_loading(overrides, tmp_path) -> None:
    """Resampling in the forward pass gives what resampling the weights once (``vitkit.load(image_size=)``) gives."""
    model = small(**overrides)
    save_as(model, "vitkit", tmp_path / "run")
    resized = vitkit.load(tmp_path / "run", image_size=(48, 64))
    dynamic = same_weights(model, dynamic_img_size=True)
    images = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        torch.testing.assert_close(dynamic(images), resized(images), rtol=0, atol=1e-6)


@pytest.mark.parametrize("antialias", [True, False])
def test_pos_embed_antialias_picks_the_resampling_kernel(antialias: bool, tmp_path) -> None:
    """The table at another grid is the patch table interpolated bicubic, antialiased or not, [CLS] untouched;
    loading at another size resamples the same way."""
    model = small(dynamic_img_size=True, pos_embed_antialias=antialias)
    table = model.pos_embed.weight.detach()
    grid = table[:, 1:].reshape(1, 4, 4, -1).permute(0, 3, 1, 2)
    resized = torch.nn.functional.interpolate(grid, size=(6, 5), mode="bicubic", antialias=antialias)
    expected = torch.cat([table[:, :1], resized.permute(0, 2, 3, 1).reshape(1, 30, -1)], dim=1)
    torch.testing.assert_close(model.pos_embed.table((6, 5)), expected, rtol=0, atol=1e-6)
    other = same_weights(model, pos_embed_antialias=not antialias)
    assert (other.pos_embed.table((6, 5)) - model.pos_embed.table((6, 5))).abs().max() > 1e-4
    save_as(model, "vitkit", tmp_path / "run")
    loaded = vitkit.load(tmp_path / "run", image_size=(48, 40))
    torch.testing.assert_close(loaded.pos_embed.weight, expected, rtol=0, atol=1e-6)


def test_a_fixed_sincos_table_is_computed_for_the_new_grid() -> None:
    model = small(pos_embed="sincos2d", dynamic_img_size=True)
    built_there = same_weights(model, image_size=(48, 64), dynamic_img_size=False)
    images = torch.randn(2, 3, 48, 64)
    with torch.no_grad():
        assert torch.equal(model(images), built_there(images))


def test_resampled_tables_are_cached_per_size_and_follow_weight_changes(monkeypatch) -> None:
    model = small(dynamic_img_size=True)
    calls = []
    original = layers.resample_pos_embed
    monkeypatch.setattr(layers, "resample_pos_embed", lambda *a, **k: calls.append(a[1]) or original(*a, **k))
    images = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        first = model(images)
        assert torch.equal(model(images), first)
        model(torch.randn(1, 3, 64, 32))
        assert calls == [(6, 6), (8, 4)]
        model.pos_embed.weight.add_(0.5)  # an optimizer step or load_state_dict changes the weights in place
        assert not torch.equal(model(images), first)
    assert calls == [(6, 6), (8, 4), (6, 6)]


def test_training_at_another_size_reaches_the_learned_position_embedding() -> None:
    model = small(dynamic_img_size=True).train()
    model(torch.randn(2, 3, 48, 40)).sum().backward()
    assert model.pos_embed.weight.grad is not None and model.pos_embed.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("indices, taken", [(None, [0, 1, 2]), (2, [1, 2]), ([0, -1], [0, 2]), ((1,), [1])])
@pytest.mark.parametrize("overrides", [{}, {"reg_tokens": 2, "dynamic_img_size": True}])
def test_forward_intermediates_are_the_chosen_blocks_patch_tokens_as_maps(indices, taken, overrides) -> None:
    model = small(**overrides)
    size = (48, 32) if overrides else (32, 32)
    images = torch.randn(2, 3, *size)
    hooked = block_outputs(model, images, model.blocks)
    prefix = model.num_prefix_tokens
    out = intermediates_every_way(model, images, indices)
    assert torch.equal(out["final"], out["features"])
    maps, tokens, normed, early = out["maps"], out["tokens"], out["normed"], out["early"]
    grid = (size[0] // 8, size[1] // 8)
    assert len(maps) == len(taken) and all(m.shape == (2, 32, *grid) for m in maps)
    for i, index in enumerate(taken):
        patches = hooked[index][:, prefix:]
        assert torch.equal(tokens[i], patches)
        assert torch.equal(maps[i], patches.transpose(1, 2).reshape(2, 32, *grid))
        assert torch.equal(early[i], maps[i])
        expected = model.norm(hooked[index])[:, prefix:].transpose(1, 2).reshape(2, 32, *grid)
        torch.testing.assert_close(normed[i], expected)


@pytest.mark.parametrize("indices, message", [(0, "use 1 to 3"), (4, "use 1 to 3"), ([3], "out of range"),
                                              ([-4], "out of range")])
def test_forward_intermediates_rejects_blocks_the_model_lacks(indices, message) -> None:
    with pytest.raises(ValueError, match=message):
        small().forward_intermediates(torch.randn(1, 3, 32, 32), indices=indices)


def test_layer_scale_multiplies_each_branch_per_channel() -> None:
    """gamma = 1 is the model without layer scale; gamma = 0 leaves only the residual path."""
    scaled = small(init_values=1e-5)
    assert scaled.blocks[0].ls1.gamma.shape == (32,)
    plain = vitkit.VisionTransformer(scaled.config.replace(init_values=None)).eval()
    plain.load_state_dict({k: v for k, v in scaled.state_dict().items() if ".ls" not in k})
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        for block in scaled.blocks:
            block.ls1.gamma.fill_(1.0)
            block.ls2.gamma.fill_(1.0)
        assert torch.equal(scaled(images), plain(images))
        block = scaled.blocks[1]
        block.ls1.gamma.zero_()
        block.ls2.gamma.zero_()
        x = torch.randn(2, 17, 32)
        assert torch.equal(block(x), x)
    assert vitkit.VisionTransformer(scaled.config).blocks[0].ls2.gamma.eq(1e-5).all()


def test_layer_scale_trains() -> None:
    model = small(init_values=1e-5).train()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert model.blocks[0].ls1.gamma.grad.abs().sum() > 0


@pytest.mark.parametrize("pos_embed, positions", [("learned", 16 + 1 + 4), ("learned_patches", 16)])
def test_register_tokens_sit_after_cls_with_a_position_only_when_learned_covers_them(pos_embed, positions) -> None:
    model = small(reg_tokens=4, pos_embed=pos_embed)
    assert model.pos_embed.weight.shape[1] == positions
    images = torch.randn(2, 3, 32, 32)
    embedded: list[torch.Tensor] = []
    hook = model.blocks[0].register_forward_pre_hook(lambda m, args: embedded.append(args[0]))
    with torch.no_grad():
        model(images)
    hook.remove()
    prefix = torch.cat([model.cls_token.token, model.reg_token.token], dim=1)  # [1, 5, D]
    if pos_embed == "learned":
        prefix = prefix + model.pos_embed.weight[:, :5]
    assert embedded[0].shape == (2, 5 + 16, 32)
    assert torch.equal(embedded[0][:, :5], prefix.expand(2, -1, -1))


def test_mean_pooling_skips_the_registers() -> None:
    model = small(class_token=False, pool="mean", reg_tokens=2)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens = model.forward_features(images)
        expected = model.head(model.norm(tokens[:, 2:].mean(dim=1)))
        torch.testing.assert_close(model(images), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("overrides", [dict(init_values=0.0), dict(init_values=-1e-5), dict(reg_tokens=-1)])
def test_bad_layer_scale_and_register_options_are_one_line_errors(overrides) -> None:
    with pytest.raises(ConfigError):
        vitkit.ViTConfig(**overrides)


@pytest.mark.parametrize("overrides", [dict(init_values=1e-6, pos_embed="learned_patches"),
                                       dict(reg_tokens=4, init_values=1e-5, pos_embed="learned_patches"),
                                       dict(reg_tokens=2), dict(reg_tokens=1, class_token=False, pool="mean")])
def test_timm_files_with_layer_scale_and_registers_load_back_exactly(overrides, tmp_path) -> None:
    model = small(**overrides)
    written = save_as(model, "timm", tmp_path / "timm.pth")
    loaded = vitkit.load(written, heads=4)
    assert loaded.config.reg_tokens == model.config.reg_tokens
    assert (loaded.config.init_values is None) == (model.config.init_values is None)
    assert loaded.config.pos_embed == model.config.pos_embed
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(images), model(images))


def test_the_config_is_read_from_the_weights_alone() -> None:
    model = small(reg_tokens=4, init_values=1e-6, pos_embed="learned_patches")
    config = infer_config(model.state_dict(), {"heads": 4})
    assert (config.reg_tokens, config.pos_embed, config.image_size) == (4, "learned_patches", (32, 32))
    assert config.init_values is not None


# transformers has layer scale in DINOv2, whose classifier reads [CLS] and the mean patch token (pool='cls_mean').
@pytest.mark.parametrize("fmt, overrides, problem", [
    ("torchvision", {"init_values": 1e-5}, "layer scale"), ("torchvision", {"reg_tokens": 4}, "register tokens"),
    ("hf", {"init_values": 1e-5}, "Dinov2ForImageClassification cannot express pooling 'cls'"),
    ("hf", {"reg_tokens": 4}, "register tokens"),
])
def test_formats_without_these_options_refuse_them_in_one_line(fmt, overrides, problem, tmp_path) -> None:
    with pytest.raises(VitkitError, match=problem) as error:
        save_as(small(**overrides), fmt, tmp_path / "out")
    assert "\n" not in str(error.value)


def test_registered_layer_scale_models_and_their_summary() -> None:
    config = vitkit.get_config("deit3_s16")
    assert (config.init_values, config.pos_embed, config.dim) == (1e-6, "learned_patches", 384)
    assert vitkit.get_config("deit3_small_patch16_384").image_size == (384, 384)
    summary = vitkit.summarize_model("dinov2_s14_reg")
    assert [s.label for s in summary.stages[:4]] == ["patch embedding", "position embedding", "register tokens",
                                                     "[CLS] token"]
    assert summary.stages[3].output_shape == [1, 1 + 4 + 37 * 37, 384]
