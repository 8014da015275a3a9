"""Augmentation operations against analytic results, and the published magnitude ranges (no torchvision here;
tests/test_augment_peers.py compares every operation with torchvision's)."""

from __future__ import annotations

import pytest
import torch

from vitkit.data import augment as A
from vitkit.data.pipeline import Augment
from vitkit.errors import ConfigError
from vitkit.train.config import TrainConfig


@pytest.fixture
def square() -> torch.Tensor:
    return torch.randint(0, 256, (3, 16, 16), generator=torch.Generator().manual_seed(0)).float()


def test_a_quarter_turn_is_rot90_and_whole_pixel_translations_shift_in_grey(square) -> None:
    assert torch.allclose(A.rotate(square, 90.0), torch.rot90(square, 1, dims=(1, 2)), atol=1e-3)
    moved = A.translate_x(square, 5.0)
    assert torch.allclose(moved[:, :, 5:], square[:, :, :-5], atol=1e-4)
    assert torch.all(moved[:, :, :5] == A.FILL)
    up = A.translate_y(square, -3.0)
    assert torch.allclose(up[:, :-3], square[:, 3:], atol=1e-4) and torch.all(up[:, -3:] == A.FILL)


def test_shear_moves_each_row_by_factor_times_its_distance_from_the_top_edge() -> None:
    image = torch.full((3, 8, 40), A.FILL)  # on the fill colour, so only the line has weight
    image[:, :, 20] = 255.0  # a vertical line at x = 20
    sheared = A.shear_x(image, 1.0)  # x_in = x + (y + 0.5): row y shows the line at x = 20 - y - 0.5
    for y in range(8):
        row = (sheared[0, y] - A.FILL)[:30]  # (the column that meets the right edge blends with the fill)
        assert abs(float((row * torch.arange(30.0)).sum() / row.sum()) - (19.5 - y)) < 1e-3, y


def test_color_operations_at_their_end_points(square) -> None:
    assert torch.equal(A.brightness(square, 0.0), torch.zeros_like(square))
    grey = A.color(square, 0.0)
    assert torch.allclose(grey[0], grey[1]) and torch.allclose(grey[0], 0.299 * square[0] + 0.587 * square[1]
                                                               + 0.114 * square[2], atol=1e-4)
    flat = A.contrast(square, 0.0)
    assert torch.allclose(flat, flat.mean().expand_as(flat), atol=1e-3)
    for op in (A.brightness, A.color, A.contrast, A.sharpness):
        assert torch.allclose(op(square, 1.0), square, atol=1e-4), op.__name__
    assert torch.equal(A.solarize(square, 0.0), 255 - square)
    assert torch.equal(A.solarize(square, 200 / 255), torch.where(square >= 200, 255 - square, square))
    assert torch.equal(A.posterize(torch.tensor([[[200.0, 63.0]]]), 2), torch.tensor([[[192.0, 0.0]]]))


def test_equalize_spreads_two_values_as_pil_does() -> None:
    image = torch.tensor([10.0] * 6 + [20.0] * 10).reshape(1, 4, 4).expand(3, 4, 4)
    # PIL: step = (16 - 10) // 255 = 0 -> unchanged; with more pixels below the top value it spreads them.
    assert torch.equal(A.equalize(image), image)
    ramp = torch.arange(256.0).reshape(1, 16, 16).expand(3, 16, 16)
    assert torch.equal(A.equalize(ramp), ramp)  # already uniform


def test_the_published_magnitude_ranges() -> None:
    size = (224, 224)
    assert A.op_value("translate_x", 30, A.TRIVIAL_WIDE, size) == 32.0  # not half the image
    assert A.op_value("translate_x", 30, A.RANDAUGMENT, size) == int(150 / 331 * 224)
    assert A.op_value("rotate", 30, A.TRIVIAL_WIDE, size) == pytest.approx(135.0)
    assert A.op_value("rotate", 9, A.RANDAUGMENT, size) == pytest.approx(9.0)
    assert A.op_value("posterize", 30, A.TRIVIAL_WIDE, size) == 2 and A.op_value("posterize", 30, A.RANDAUGMENT, size) == 4
    assert A.op_value("solarize", 0, A.RANDAUGMENT, size) == 1.0  # level 0 changes nothing
    assert all(A.op_value(name, 0, A.TRIVIAL_WIDE, size) in (None, 0.0, 1.0, 8.0) for name in A.OPS)


def test_randaugment_magnitude_and_ops_reach_the_pipeline_and_are_checked() -> None:
    config = TrainConfig(augment="randaugment", randaugment_magnitude=15, randaugment_ops=3)
    assert config.augmentation() == Augment(policy="randaugment", randaugment_magnitude=15, randaugment_ops=3,
                                            crop_scale=config.crop_scale)
    with pytest.raises(ConfigError, match="--randaugment-magnitude must be in 0..30"):
        TrainConfig(randaugment_magnitude=31)


def test_stronger_randaugment_changes_images_more(square) -> None:
    def change(m: int) -> float:
        return sum(float((A.rand_augment(square, torch.Generator().manual_seed(s), 2, m) - square).abs().mean())
                   for s in range(40))
    assert change(0) < change(15) < change(30)


def test_vitkit_never_imports_torchvision() -> None:
    import subprocess
    import sys

    code = "import sys, vitkit.data.pipeline, vitkit.train.loop; print('torchvision' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
