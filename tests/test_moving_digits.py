"""The moving-digits video set: the motion in the pixels matches the label, and it is built from MNIST-5k."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vitkit.data import mnist
from vitkit.data.moving_digits import CLASS_NAMES, MovingDigits, make_clips

EXPECTED_STEP = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}


def centre_of_mass(frame: np.ndarray) -> np.ndarray:
    ys, xs = np.indices(frame.shape)
    total = frame.sum()
    return np.array([(ys * frame).sum() / total, (xs * frame).sum() / total])


def test_each_clip_moves_its_digit_in_the_labelled_direction_by_the_free_space() -> None:
    (train_x, _), _ = mnist.load_mnist_5k()
    clips, labels = make_clips(train_x[:200], num_frames=8, size=40, seed=5)
    assert clips.shape == (200, 8, 40, 40) and set(labels.tolist()) == {0, 1, 2, 3}
    for clip, label, digit in zip(clips, labels, train_x[:200]):
        moved = centre_of_mass(clip[-1].astype(float)) - centre_of_mass(clip[0].astype(float))
        np.testing.assert_allclose(moved, np.array(EXPECTED_STEP[CLASS_NAMES[label]]) * (40 - 28), atol=1e-6)
        # Every frame shows the whole digit, unchanged.
        assert all(int(f.sum()) == int(digit.astype(np.int64).sum()) for f in clip.astype(np.int64))


def test_no_single_frame_tells_the_direction() -> None:
    """Middle frames of left- and right-moving clips are placed alike: the task needs time."""
    (train_x, _), _ = mnist.load_mnist_5k()
    clips, labels = make_clips(train_x[:400], num_frames=9, size=40, seed=1)
    middle_x = {name: [] for name in CLASS_NAMES}
    for clip, label in zip(clips, labels):
        middle_x[CLASS_NAMES[label]].append(centre_of_mass(clip[4].astype(float))[1])
    assert abs(np.mean(middle_x["left"]) - np.mean(middle_x["right"])) < 1.0


def test_dataset_uses_held_out_digits_for_validation_and_yields_clips() -> None:
    train, val = MovingDigits("train", num_frames=4, size=32), MovingDigits("val", num_frames=4, size=32)
    assert (len(train), len(val)) == (4000, 1000)
    clip, label = val[0]
    assert clip.shape == (3, 4, 32, 32) and clip.min() >= -1 and clip.max() <= 1 and 0 <= label < 4
    (_, _), (test_x, _) = mnist.load_mnist_5k()
    assert int(val.clips[0, 0].numpy().astype(np.int64).sum()) == int(test_x[0].astype(np.int64).sum())


def test_a_canvas_no_larger_than_a_digit_is_refused() -> None:
    with pytest.raises(ValueError, match="larger than a digit"):
        make_clips(np.zeros((1, 28, 28), np.uint8), size=28)
