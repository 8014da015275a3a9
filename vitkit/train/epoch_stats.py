"""Running loss and accuracy of the epoch in progress (saved in mid-epoch checkpoints, so a resumed epoch
reports the same numbers as an uninterrupted one)."""

from __future__ import annotations


class EpochStats:
    """Sums of the loss and of the correct predictions over the images seen so far this epoch."""

    def __init__(self, loss_sum: float = 0.0, correct: int = 0, seen: int = 0) -> None:
        self.loss_sum, self.correct, self.seen = loss_sum, correct, seen

    def add(self, loss: float, correct: int, count: int) -> None:
        """Count one step: its mean ``loss`` and ``correct`` predictions over ``count`` images."""
        self.loss_sum, self.correct, self.seen = self.loss_sum + loss * count, self.correct + correct, self.seen + count

    @property
    def loss(self) -> float:
        return self.loss_sum / max(1, self.seen)

    @property
    def accuracy(self) -> float:
        return self.correct / max(1, self.seen)
