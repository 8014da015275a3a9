"""Explainability: recorded attention, rollout and grad-rollout against hand-computed values, PNG overlays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import vitkit
from conftest import run_cli, shared_data
from vitkit.explain import (
    attention_maps, center_mass, explain, figure_size, grad_rollout, overlay, query_relevance, recording,
    render_figure, rollout, save_figure, save_gif,
)
from vitkit.explain.overlay import enlarge
from vitkit.store import save_model


def tiny(**overrides) -> vitkit.VisionTransformer:
    options = dict(image_size=32, patch_size=16, dim=32, depth=2, heads=2, num_classes=3) | overrides
    return vitkit.VisionTransformer(vitkit.ViTConfig(**options)).eval()


def with_uniform_attention(model: nn.Module) -> nn.Module:
    """Zero query and key projections: every score is 0, so every token attends to all N tokens equally."""
    with torch.no_grad():
        for block in model.blocks:
            dim = block.attn.qkv.in_features
            block.attn.qkv.weight[: 2 * dim] = 0
            block.attn.qkv.bias[: 2 * dim] = 0
    return model


# --- rollout and grad-rollout: the formulas on matrices written by hand -----------------------------------

def test_rollout_equals_the_hand_computed_product() -> None:
    # layer 0: heads average to [[1/2, 1/4, 1/4], [0, 1, 0], [0, 0, 1]]; with the residual: [[3/4, 1/8, 1/8], I rows]
    # layer 1: both heads [[0, 1, 0], [0, 1, 0], [1/2, 0, 1/2]] -> [[1/2, 1/2, 0], [0, 1, 0], [1/4, 0, 3/4]]
    layer0 = torch.tensor([[[.5, .5, 0], [0, 1, 0], [0, 0, 1]], [[.5, 0, .5], [0, 1, 0], [0, 0, 1]]])
    layer1 = torch.tensor([[0, 1, 0], [0, 1, 0], [.5, 0, .5]]).expand(2, 3, 3)
    attention = torch.stack([layer0, layer1])[None].double()  # [1, layers, heads, 3, 3]
    expected = torch.tensor([[3 / 8, 9 / 16, 1 / 16], [0, 1, 0], [3 / 16, 1 / 32, 25 / 32]], dtype=torch.double)
    torch.testing.assert_close(rollout(attention)[0], expected, rtol=0, atol=1e-12)


def test_grad_rollout_equals_the_hand_computed_relevance() -> None:
    # layer 0: grad * A = [[1, -1], [1/4, 3/4]] -> clamp -> A_bar; R = I + A_bar = [[2, 0], [1/4, 7/4]]
    # layer 1: A_bar = [[0, 1], [0, 0]]; R = R + A_bar @ R = [[9/4, 7/4], [1/4, 7/4]]
    attention = torch.tensor([[[[.5, .5], [.25, .75]]], [[[0, 1], [1, 0]]]], dtype=torch.double)
    gradients = torch.tensor([[[[2, -2], [1, 1]]], [[[0, 1], [-1, 0]]]], dtype=torch.double)
    expected = torch.tensor([[9 / 4, 7 / 4], [1 / 4, 7 / 4]], dtype=torch.double)
    torch.testing.assert_close(grad_rollout(attention, gradients), expected, rtol=0, atol=1e-12)


def test_query_is_the_cls_row_or_the_mean_of_patch_rows() -> None:
    matrix = torch.arange(16.0).reshape(4, 4)  # token 0 is [CLS], tokens 1-3 are patches
    torch.testing.assert_close(query_relevance(matrix, "cls", 1), torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(query_relevance(matrix, "mean", 1), torch.tensor([9.0, 10.0, 11.0]))
    torch.testing.assert_close(query_relevance(matrix, "mean", 0), torch.tensor([6.0, 7.0, 8.0, 9.0]))


# --- recording attention from a model ---------------------------------------------------------------------

def test_rollout_of_a_model_with_attention_set_by_construction() -> None:
    """Uniform attention over N = 5 tokens, 2 layers: each layer is 0.5 I + 0.1 J, and
    (0.5 I + 0.1 J)^2 = 0.25 I + 0.15 J: 0.4 on the diagonal, 0.15 elsewhere."""
    model = with_uniform_attention(tiny())
    _, attention = attention_maps(model, torch.randn(2, 3, 32, 32))
    assert attention.shape == (2, 2, 2, 5, 5)
    torch.testing.assert_close(attention, torch.full_like(attention, 0.2), rtol=0, atol=1e-7)
    expected = torch.full((5, 5), 0.15) + 0.25 * torch.eye(5)
    torch.testing.assert_close(rollout(attention)[1], expected, rtol=0, atol=1e-6)
    heat = explain(model, torch.randn(1, 3, 32, 32), "rollout").heat
    torch.testing.assert_close(heat, torch.full((1, 1, 2, 2), 0.15), rtol=0, atol=1e-6)


def test_recording_leaves_outputs_unchanged_and_restores_the_fused_path() -> None:
    model = tiny()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        fused = model(images)
        recorded, attention = attention_maps(model, images)
    torch.testing.assert_close(recorded, fused, rtol=0, atol=1e-5)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 2, 2, 5), rtol=0, atol=1e-6)
    assert all(not m.keep_weights and m.weights is None for m in model.modules() if hasattr(m, "keep_weights"))


def test_recording_is_differentiable_when_gradients_are_on() -> None:
    model = tiny()
    with recording(model) as maps:
        model(torch.randn(1, 3, 32, 32))[0, 1].backward()
    assert len(maps) == 2 and all(m.requires_grad for m in maps)


def test_seed_token_map_is_the_diagonal_of_its_batch_axis_attention() -> None:
    """The seed attends across images: layer 0's weights must equal nn.MultiheadAttention's, fed [B, N, D] as
    (sequence = images, batch = tokens) like the blog; the token-to-token map keeps each token's own-image weight."""
    model = vitkit.create_model("seed", image_size=32, dim=32, depth=1, heads=2, mlp_dim=64).eval()
    block_input = {}
    model.blocks[0].register_forward_pre_hook(lambda _m, args: block_input.setdefault("x", args[0]))
    images = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        _, attention = attention_maps(model, images)
        reference = nn.MultiheadAttention(32, 2).eval()
        reference.in_proj_weight.copy_(model.blocks[0].attn.qkv.weight)
        reference.in_proj_bias.copy_(model.blocks[0].attn.qkv.bias)
        x = block_input["x"]
        _, weights = reference(x, x, x, average_attn_weights=False)  # [tokens, heads, images, images]
    own = weights.diagonal(dim1=-2, dim2=-1).permute(2, 1, 0)  # [images, heads, tokens]
    torch.testing.assert_close(attention[:, 0], torch.diag_embed(own), rtol=0, atol=1e-6)
    assert (own < 1).all(), "with 3 images, each token gives some weight to the other images"
    one = explain(model, images[:1], "rollout").heat
    assert one.abs().max() == 0, "alone, no patch reaches [CLS]"


def test_attention_method_returns_each_head_of_the_chosen_layer() -> None:
    model = tiny()
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        _, attention = attention_maps(model, images)
    result = explain(model, images, "attention", layer=0)
    assert result.captions == ["layer 0 head 0", "layer 0 head 1"]
    torch.testing.assert_close(result.heat.flatten(2), attention[:, 0, :, 0, 1:])
    one = explain(model, images, "attention", layer=-1, head=1)
    torch.testing.assert_close(one.heat.flatten(2), attention[:, 1, 1:2, 0, 1:])


def test_mean_pool_model_without_cls_uses_the_mean_query() -> None:
    model = tiny(class_token=False, pool="mean")
    images = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        _, attention = attention_maps(model, images)
    heat = explain(model, images, "attention", layer=1).heat
    assert heat.shape == (1, 2, 2, 2)
    torch.testing.assert_close(heat.flatten(2), attention[:, 1].mean(dim=-2))


def test_grad_rollout_is_class_specific_and_uses_the_predicted_class_by_default() -> None:
    model = tiny()
    images = torch.randn(1, 3, 32, 32)
    predicted = explain(model, images, "grad-rollout")
    assert int(predicted.target) == int(predicted.probabilities.argmax())
    maps = [explain(model, images, "grad-rollout", target=c).heat for c in range(3)]
    assert not torch.allclose(maps[0], maps[1]) and not torch.allclose(maps[1], maps[2])
    assert all((m >= 0).all() for m in maps), "only attention that raised the score adds relevance"


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "saliency"}, "unknown method"),
    ({"method": "attention", "layer": 2}, "--layer 2 is out of range"),
    ({"method": "attention", "head": -3}, "--head -3 is out of range"),
    ({"method": "grad-rollout", "target": 3}, "target class 3 is out of range"),
])
def test_bad_choices_raise_one_line_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(vitkit.VitkitError, match=message):
        explain(tiny(), torch.randn(1, 3, 32, 32), **kwargs)


# --- how much is in the middle ----------------------------------------------------------------------------

def test_center_mass_of_analytic_maps() -> None:
    uniform = torch.ones(14, 14)
    assert center_mass(uniform, 0.5).item() == pytest.approx(0.5, abs=1e-9)
    assert center_mass(uniform, 0.25).item() == pytest.approx(0.25, abs=1e-9)
    centre, corner = torch.zeros(14, 14), torch.zeros(14, 14)
    centre[6:8, 6:8] = 1
    corner[0, 0] = 1
    assert center_mass(centre).item() == pytest.approx(1.0)
    assert center_mass(corner).item() == 0.0
    # A 2x2 grid and the central quarter of the area: each cell holds a quarter of the box, a sixteenth of the image.
    assert center_mass(torch.tensor([[1.0, 0.0], [0.0, 0.0]]), 0.25).item() == pytest.approx(0.25)


# --- images ---------------------------------------------------------------------------------------------

def test_overlay_puts_red_on_the_hot_patch_and_blue_elsewhere() -> None:
    grey = np.full((64, 64, 3), 100, np.uint8)
    heat = np.zeros((4, 4))
    heat[0, 0] = 1.0  # the top-left patch of a 4 x 4 grid (16 px each)
    image = overlay(grey, heat, alpha=0.5)
    # jet(1) = (0.5, 0, 0) and jet(0) = (0, 0, 0.5), blended half and half with grey 100.
    np.testing.assert_allclose(image[0, 0], [114, 50, 50], atol=2)
    np.testing.assert_allclose(image[63, 63], [50, 50, 114], atol=2)


def test_figure_has_the_documented_size_and_the_input_pixel_for_pixel() -> None:
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    figure = render_figure([crop] * 5, ["a"] * 5, "title", columns=3)
    assert figure.shape == (30 + 2 * (48 + 20), 3 * 64, 3)
    assert figure_size((48, 64), 5, 3) == (192, 166)
    np.testing.assert_array_equal(figure[30 : 30 + 48, 0:64], crop)  # first panel, under the 30 px title
    second_row = 30 + 48 + 20
    np.testing.assert_array_equal(figure[second_row : second_row + 48, 64:128], crop)


def test_small_inputs_are_enlarged_by_a_whole_factor() -> None:
    crop = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    assert enlarge(crop).shape == (7 * 32, 7 * 48, 3)
    assert enlarge(np.zeros((224, 300, 3), np.uint8)).shape == (224, 300, 3)


def test_gif_has_every_frame(tmp_path) -> None:
    frames = [np.full((16, 24, 3), v, np.uint8) for v in (0, 120, 240)]
    with Image.open(save_gif(tmp_path / "a.gif", frames)) as gif:
        assert gif.size == (24, 16) and gif.n_frames == 3


# --- the command --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> str:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("run") / "model"
    model = tiny(image_size=64, patch_size=16, heads=4, num_classes=2)
    save_model(folder, model, class_names=["cat", "dog"])
    return str(folder)


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("img") / "photo.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)).save(path)
    return str(path)


# The 64 px input is drawn 4x (256 px panels): the smallest whole factor that reaches 224 px.
@pytest.mark.parametrize("args, name, size", [
    (["--method", "rollout"], "photo.rollout.png", (2 * 256, 30 + 256 + 20)),
    (["--method", "grad-rollout", "--target", "dog"], "photo.grad-rollout.png", (2 * 256, 30 + 256 + 20)),
    (["--method", "attention"], "photo.attention-layer1.png", (5 * 256, 30 + 256 + 20)),
    (["--method", "attention", "--layer", "0", "--head", "3"], "photo.attention-layer0-head3.png",
     (2 * 256, 30 + 256 + 20)),
])
def test_cli_writes_png_of_the_expected_size(model_folder, photo, tmp_path, args, name, size) -> None:
    result = run_cli("explain", model_folder, photo, *args, "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / name) as png:
        assert png.format == "PNG" and png.mode == "RGB" and png.size == size
        pixels = np.asarray(png)
    assert "predicted cat" in result.stdout or "predicted dog" in result.stdout
    assert pixels.std() > 10, "the figure is not blank"


def test_cli_on_a_real_photo(model_folder, tmp_path) -> None:
    image = shared_data("cats_vs_dogs") / "val" / "cat" / "cat.2000.jpg"
    result = run_cli("explain", model_folder, str(image), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    with Image.open(tmp_path / "cat.2000.rollout.png") as png:
        assert png.size == (512, 306)


@pytest.mark.parametrize("source, image, message", [
    ("MODEL", "missing.jpg", "does not exist"),
    ("MODEL", "BAD", "is not a readable image"),
    ("nowhere", "PHOTO", "nowhere does not exist"),
    ("MODEL", "PHOTO", "--layer 5 is out of range"),
])
def test_cli_errors_are_one_line(model_folder, photo, tmp_path, source, image, message) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"<html>404</html>")
    source = model_folder if source == "MODEL" else source
    image = {"BAD": str(bad), "PHOTO": photo}.get(image, str(tmp_path / image))
    result = run_cli("explain", source, image, "--method", "attention", "--layer", "5", "--out", str(tmp_path))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_models_other_than_the_image_vit_get_a_clear_error() -> None:
    with pytest.raises(vitkit.VitkitError, match="cannot explain a Sequential"):
        explain(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 2)), torch.randn(1, 3, 32, 32))
