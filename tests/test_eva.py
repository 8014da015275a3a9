"""EVA-02's options without timm: 2-D RoPE against its definition (relative positions, angles, prefix tokens),
SwiGLU and the q/v-only attention bias against their formulas, the registered models' shapes at any input size,
the config checks, and timm Eva files written and read back. (Against timm itself:
test_interop_peers_timm_eva.py.)"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import max_diff, randomize_
from safetensors.torch import save_file

import vitkit
from vitkit.errors import VitkitError
from vitkit.fast.merge import use_token_merging
from vitkit.interop.save import save_as
from vitkit.interop.timm_eva import to_timm_eva
from vitkit.models.eva import RopeQVBiasAttention, SwiGLU
from vitkit.models.layers import Attention, Mlp
from vitkit.models.rope import RotaryEmbedding2d, rope_angles

SMALL = dict(image_size=56, patch_size=14, dim=64, depth=2, heads=4, mlp_ratio=8 / 3, pool="mean", swiglu=True,
             key_bias=False, rope=True, rope_grid=16, num_classes=5)


def scores(rope: RotaryEmbedding2d, q: torch.Tensor, k: torch.Tensor, tokens: int) -> torch.Tensor:
    """q . k after rotation, with the same q and k vectors placed at every position: [tokens, tokens]."""
    queries = rope(q.expand(1, 1, tokens, -1))[0, 0]
    keys = rope(k.expand(1, 1, tokens, -1))[0, 0]
    return queries @ keys.T


@pytest.mark.parametrize("ref_grid", [None, (3, 4)])
def test_rope_dot_products_depend_only_on_the_offset(ref_grid) -> None:
    height, width, shift = 6, 5, (2, 1)
    rope = RotaryEmbedding2d(16, (height, width), ref_grid)
    s = scores(rope, torch.randn(16), torch.randn(16), height * width).reshape(height, width, height, width)
    dy, dx = shift
    # Both tokens moved by the same offset: the same score, for every pair that stays on the grid.
    torch.testing.assert_close(s[:-dy, :-dx, :-dy, :-dx], s[dy:, dx:, dy:, dx:], rtol=0, atol=1e-5)
    # ... but the offset itself matters (the rotation is not the identity), along rows and columns alike.
    assert (s[0, 0, 0, 1] - s[0, 0, 0, 2]).abs() > 1e-3 and (s[0, 0, 1, 0] - s[0, 0, 2, 0]).abs() > 1e-3


def test_rope_angles_are_position_times_frequency() -> None:
    # head size 8: two frequencies, 1 and 10000 ** -0.5; the first two pairs by the row, the last two by the column.
    angles = rope_angles((4, 5), 8).reshape(4, 5, 4)
    torch.testing.assert_close(angles[2, 3], torch.tensor([2.0, 0.02, 3.0, 0.03], dtype=torch.float64))
    # A 4x4 grid on a 2x2 reference grid: patch (2, 3) sits at (1, 1.5).
    scaled = rope_angles((4, 4), 8, ref_grid=(2, 2)).reshape(4, 4, 4)
    torch.testing.assert_close(scaled[2, 3], torch.tensor([1.0, 0.01, 1.5, 0.015], dtype=torch.float64))


def test_rope_rotates_each_pair_by_its_angle_and_leaves_prefix_tokens() -> None:
    rope = RotaryEmbedding2d(8, (2, 3), prefix_tokens=2)
    x = torch.randn(2, 3, 2 + 6, 8)
    out = rope(x)
    assert torch.equal(out[:, :, :2], x[:, :, :2])  # [CLS] and a register: not rotated
    assert torch.equal(out[:, :, 2], x[:, :, 2])  # patch (0, 0): angle 0
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))  # rotations keep lengths
    # patch (1, 2), pair 2 (the column's first frequency, angle 2): (a, b) -> (a cos 2 - b sin 2, b cos 2 + a sin 2)
    a, b = x[..., 2 + 5, 4], x[..., 2 + 5, 5]
    torch.testing.assert_close(out[..., 2 + 5, 4], a * math.cos(2) - b * math.sin(2))
    torch.testing.assert_close(out[..., 2 + 5, 5], b * math.cos(2) + a * math.sin(2))


def test_swiglu_is_silu_gate_times_value_then_fc2() -> None:
    mlp = randomize_(SwiGLU(12, 20, norm=True))
    x = torch.randn(3, 7, 12)
    w, b = mlp.fc1.weight, mlp.fc1.bias
    hidden = F.silu(x @ w[:20].T + b[:20]) * (x @ w[20:].T + b[20:])
    expected = mlp.fc2(F.layer_norm(hidden, (20,), mlp.norm.weight, mlp.norm.bias, eps=1e-6))
    torch.testing.assert_close(mlp(x), expected)


def test_eva_attention_biases_queries_and_values_only_then_rotates() -> None:
    rope = RotaryEmbedding2d(8, (1, 5))
    attn = randomize_(RopeQVBiasAttention(16, 2, rope=rope))
    assert attn.qkv.bias is None and {name for name, _ in attn.named_parameters()} >= {"q_bias", "v_bias"}
    x = torch.randn(2, 5, 16)
    q, k, v = attn.project_qkv(x)
    w = attn.qkv.weight
    heads = lambda y: y.view(2, 5, 2, 8).transpose(1, 2)  # noqa: E731
    torch.testing.assert_close(q, rope(heads(x @ w[:16].T + attn.q_bias)))
    torch.testing.assert_close(k, rope(heads(x @ w[16:32].T)))
    torch.testing.assert_close(v, heads(x @ w[32:].T + attn.v_bias))


def test_plain_vit_builds_none_of_it() -> None:
    model = vitkit.create_model("vit_ti16", image_size=32, depth=1)
    assert model.rope is None and type(model.blocks[0].attn) is Attention and type(model.blocks[0].mlp) is Mlp


@pytest.mark.parametrize("name", ["eva02_ti14", "eva02_b14"])
def test_registered_eva02_runs_at_its_size_and_others(name) -> None:
    model = vitkit.create_model(name, num_classes=3, depth=2).eval()
    assert type(model.blocks[0].mlp) is SwiGLU and model.blocks[0].attn.rope is model.rope
    assert (model.blocks[0].mlp.norm is not None) == (name == "eva02_b14")
    with torch.no_grad():
        fixed = model(torch.randn(2, 3, 224, 224))
        _, maps = model.forward_intermediates(torch.randn(1, 3, 224, 224), indices=1)
    assert fixed.shape == (2, 3) and maps[0].shape == (1, model.config.dim, 16, 16)
    dynamic = vitkit.create_model(name, num_classes=3, depth=2, dynamic_img_size=True).eval()
    dynamic.load_state_dict(model.state_dict())
    images = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(dynamic(images), model(images))  # the configured size: the same tables
        assert dynamic(torch.randn(2, 3, 112, 168)).shape == (2, 3)
    assert dynamic.rope.grid == (8, 12)


def test_eva_config_checks_are_one_line() -> None:
    for options, words in [(dict(mlp_norm=True, swiglu=False), "needs swiglu=True"),
                           (dict(heads=8, dim=48), "head size divisible by 4"),
                           (dict(act="quick_gelu"), "SwiGLU uses SiLU"),
                           (dict(qkv_layout="split", key_bias=True), "set key_bias=False"),
                           (dict(patch_dropout=0.5), "not supported with rope=True")]:
        with pytest.raises(VitkitError, match=words):
            vitkit.ViTConfig(**{**SMALL, **options})
    config = vitkit.ViTConfig(**SMALL)
    assert config.rope_grid == (16, 16) and vitkit.ViTConfig.from_dict(config.to_dict()) == config
    assert config.replace(rope=False).rope_grid is None


def test_token_merging_refuses_rope() -> None:
    model = vitkit.VisionTransformer(vitkit.ViTConfig(**{**SMALL, "pool": "cls"}))
    with pytest.raises(VitkitError, match="without RoPE"):
        use_token_merging(model, 1)


@pytest.mark.parametrize("layout", ["fused", "split"])
def test_timm_eva_files_round_trip(layout, tmp_path) -> None:
    config = vitkit.ViTConfig(**SMALL, mlp_norm=layout == "split", qkv_layout=layout, init_values=0.1)
    model = randomize_(vitkit.VisionTransformer(config))
    keys = set(to_timm_eva(model.state_dict(), config))
    split = {"blocks.0.attn.q_proj.weight", "blocks.0.attn.q_proj.bias", "blocks.0.attn.k_proj.weight",
             "blocks.0.mlp.fc1_g.weight", "blocks.0.mlp.fc1_x.bias", "blocks.0.mlp.norm.weight"}
    fused = {"blocks.0.attn.qkv.weight", "blocks.0.attn.q_bias", "blocks.0.attn.v_bias", "blocks.0.mlp.fc1.weight"}
    assert keys >= (split if layout == "split" else fused) and not keys & (fused if layout == "split" else split)
    assert {"fc_norm.weight", "blocks.0.gamma_1", "blocks.1.gamma_2"} <= keys and "blocks.0.attn.k_bias" not in keys
    images = torch.randn(2, 3, 56, 56)
    back = vitkit.load(save_as(model, "timm", tmp_path / "eva.safetensors"))
    # Without vitkit's header, the keys and shapes tell the rest; RoPE is EVA-02's (grid of 224 px).
    save_file(to_timm_eva(model.state_dict(), config), tmp_path / "bare.safetensors")
    bare = vitkit.load(tmp_path / "bare.safetensors", heads=4, init_values=0.1)
    fields = ("swiglu", "mlp_norm", "key_bias", "qkv_bias", "rope", "rope_grid", "qkv_layout", "hidden_dim", "pool")
    assert [getattr(bare.config, name) for name in fields] == [getattr(config, name) for name in fields]
    with torch.no_grad():
        assert max_diff(back(images), model(images)) == 0 and max_diff(bare(images), model(images)) == 0


def test_timm_eva_options_vitkit_lacks_are_refused_in_one_line(tmp_path) -> None:
    config = vitkit.ViTConfig(**SMALL, init_values=0.1)
    state = to_timm_eva(vitkit.VisionTransformer(config).state_dict(), config)
    for extra, key in [({"blocks.0.attn.norm.weight": torch.ones(64)}, "blocks.0.attn.norm.weight"),
                       ({"rope.freqs": torch.ones(4)}, "rope.freqs")]:
        save_file({**state, **extra}, tmp_path / "eva.safetensors")
        with pytest.raises(VitkitError, match=rf"^this timm Eva uses .*\(key {key}\).*not support$"):
            vitkit.load(tmp_path / "eva.safetensors", heads=4)
    save_file({k: v for k, v in state.items() if ".gamma_2" not in k}, tmp_path / "eva.safetensors")
    with pytest.raises(VitkitError, match="attn_only_layer_scale"):
        vitkit.load(tmp_path / "eva.safetensors", heads=4)


@pytest.mark.parametrize("fmt", ["hf", "torchvision"])
def test_libraries_without_eva_refuse_it_in_one_line(fmt, tmp_path) -> None:
    model = vitkit.VisionTransformer(vitkit.ViTConfig(**SMALL))
    with pytest.raises(VitkitError, match=r"cannot express .*EVA-02's RoPE, SwiGLU or q/v-only biases"):
        save_as(model, fmt, tmp_path / "out")


def test_eva_rope_is_assumed_aloud_and_unknown_eva_names_are_refused(tmp_path, caplog) -> None:
    config = vitkit.ViTConfig(**SMALL)
    save_file(to_timm_eva(vitkit.VisionTransformer(config).state_dict(), config), tmp_path / "model.safetensors")
    with caplog.at_level("WARNING", logger="vitkit"):
        vitkit.load(tmp_path / "model.safetensors", heads=4)
    assert "assumed EVA-02's RoPE (reference grid 16x16)" in caplog.text
    # timm's own config.json names an Eva vitkit does not register: its RoPE settings are unknown.
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "vit_base_patch16_rope_reg1_gap_256"}))
    with pytest.raises(VitkitError, match=r"^timm's vit_base_patch16_rope_reg1_gap_256 is an Eva whose RoPE"):
        vitkit.load(tmp_path, heads=4)


def test_eva02_cannot_initialise_a_vivit() -> None:
    from vitkit.models.inflate import inflate_from_image

    image = vitkit.VisionTransformer(vitkit.ViTConfig(**{**SMALL, "patch_size": 8, "image_size": 32}))
    video = vitkit.create_model("vivit_digits")
    with pytest.raises(VitkitError, match="EVA-02 image ViT .* cannot initialise a ViViT"):
        inflate_from_image(video, image)
