"""Moving digits: a video classification set made offline from the embedded MNIST-5k digits.

Each clip shows one real MNIST digit sliding in a straight line across a black canvas. The label is the
direction of motion (right, left, down, up): no single frame tells it, so a model must compare frames. Training
clips use the training digits and validation clips the held-out digits (the MNIST-5k split of ``mnist.py``);
start positions and directions are drawn from a fixed seed, so the set is the same on every machine.
"""

from __future__ import annotations

import numpy as np
import torch

from . import mnist

NAME = "moving-digits"
DIRECTIONS = {"right": (0, 1), "left": (0, -1), "down": (1, 0), "up": (-1, 0)}
CLASS_NAMES = list(DIRECTIONS)
DIGIT = 28

# `vitkit train --data moving-digits`: a small Model 1 ViViT (see the registry's ``vivit_digits``). No flips,
# crops or photometric changes: each would change or hide the direction. fp32: bf16 casts cost more than they
# save at this size.
RECIPE = dict(task="video", model="vivit_digits", precision="fp32", flip=False, augment="none", crop="center",
              crop_pct=1.0, label_smoothing=0.0, epochs=8, batch_size=64, lr=1e-3, warmup_epochs=1.0,
              weight_decay=0.05, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def trajectory(start: tuple[int, int], direction: str, num_frames: int, travel: int) -> list[tuple[int, int]]:
    """Top-left corners of the digit in each frame: ``travel`` pixels in ``direction``, evenly over the frames."""
    dy, dx = DIRECTIONS[direction]
    steps = [round(travel * i / (num_frames - 1)) for i in range(num_frames)]
    return [(start[0] + dy * s, start[1] + dx * s) for s in steps]


def render(digit: np.ndarray, corners: list[tuple[int, int]], size: int) -> np.ndarray:
    """uint8 [T, size, size]: the digit pasted at each corner of its trajectory."""
    clip = np.zeros((len(corners), size, size), dtype=np.uint8)
    for frame, (top, left) in zip(clip, corners):
        frame[top : top + DIGIT, left : left + DIGIT] = digit
    return clip


def make_clips(images: np.ndarray, num_frames: int = 8, size: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One moving clip per digit image: (uint8 clips [N, T, size, size], direction labels [N])."""
    if size <= DIGIT:
        raise ValueError(f"the canvas must be larger than a digit ({DIGIT} px), got {size}")
    travel = size - DIGIT
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(DIRECTIONS), len(images))
    clips = np.empty((len(images), num_frames, size, size), dtype=np.uint8)
    for i, (digit, label) in enumerate(zip(images, labels)):
        direction = CLASS_NAMES[label]
        dy, dx = DIRECTIONS[direction]
        # The moving axis starts at the side the digit moves away from; the other axis is random.
        along = lambda d: 0 if d > 0 else travel  # noqa: E731
        top = along(dy) if dy else int(rng.integers(0, travel + 1))
        left = along(dx) if dx else int(rng.integers(0, travel + 1))
        clips[i] = render(digit, trajectory((top, left), direction, num_frames, travel), size)
    return clips, labels


class MovingDigits(torch.utils.data.Dataset):
    """Clips [3, T, size, size] in [-1, 1] (the grey digit repeated over RGB) with their direction label."""

    class_names = CLASS_NAMES

    def __init__(self, split: str = "train", num_frames: int = 8, size: int = 40, seed: int = 0) -> None:
        (train_x, _), (test_x, _) = mnist.load_mnist_5k()
        images = train_x if split == "train" else test_x
        clips, labels = make_clips(images, num_frames, size, seed + (0 if split == "train" else 1))
        self.clips = torch.from_numpy(clips)
        self.labels = [int(label) for label in labels]
        self.skipped: list[tuple[str, str]] = []  # made in memory: nothing to skip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        clip = self.clips[index].float().div(127.5).sub(1.0)  # [T, H, W]
        return clip[None].expand(3, -1, -1, -1), self.labels[index]

    def clip_at(self, index: int, train: bool = False, rng: object = None) -> torch.Tensor:
        """Clip ``index`` [3, T, size, size]. Not augmented: a flip or a crop could change the direction label."""
        return self[index][0]

    def views(self, index: int, clips: int = 1, crops: int = 1) -> torch.Tensor:
        """The one view of clip ``index`` (the clips are made, not cut from longer videos): [1, 3, T, size, size]."""
        return self.clip_at(index)[None]
