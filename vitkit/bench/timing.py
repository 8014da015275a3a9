"""Interleaved throughput measurement: every candidate runs once per round, in an order rotated each round.

Why interleave: on a shared machine the speed drifts (2x under other users' load). Measuring A for a minute and
then B for a minute compares two different machines; measuring A, B, C, then B, C, A, ... spreads the drift over
all candidates, so the median of each, and the ratios between them, are fair.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

Step = Callable[[], None]


@dataclass
class Candidate:
    """One thing to time: ``setup()`` builds it and returns ``(step, flops of one step or None)``; a step
    processes ``items`` items (images, clips or, for a matmul, FLOPs)."""

    name: str
    setup: Callable[[], tuple[Step, float | None]]
    items: float


@dataclass
class Samples:
    """The throughput (items/s) of one candidate, one sample per round."""

    name: str
    items: float
    flops: float | None
    per_round: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.per_round) if self.per_round else float("nan")

    def summary(self) -> dict:
        """Median, min and max throughput, in items/s."""
        if not self.per_round:
            return {"median": None, "min": None, "max": None, "rounds": 0, "error": self.error}
        return {"median": self.median, "min": min(self.per_round), "max": max(self.per_round),
                "rounds": len(self.per_round), "samples": self.per_round, "error": self.error}


def rotated(items: list, shift: int) -> list:
    """``items`` rotated left by ``shift`` (round r runs candidate r first)."""
    shift %= max(len(items), 1)
    return items[shift:] + items[:shift]


def time_step(step: Step, min_seconds: float) -> tuple[int, float]:
    """Run ``step`` until ``min_seconds`` have passed (at least once); returns (steps, seconds)."""
    steps, start = 0, time.perf_counter()
    while True:
        step()
        steps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return steps, elapsed


def interleave(candidates: list[Candidate], rounds: int = 5, min_seconds: float = 1.0, warmup: int = 1,
               log: Callable[[str], None] = lambda line: None) -> list[Samples]:
    """Set up every candidate, warm each up, then time them round-robin for ``rounds`` rounds."""
    results = {c.name: Samples(c.name, c.items, None) for c in candidates}
    steps: dict[str, Step] = {}
    for candidate in candidates:
        try:
            steps[candidate.name], results[candidate.name].flops = candidate.setup()
            for _ in range(warmup):  # first calls pay for allocation, oneDNN primitive creation, lazy state
                steps[candidate.name]()
        except Exception as error:  # a peer that fails to build is reported, not fatal
            results[candidate.name].error = f"{type(error).__name__}: {error}"
            log(f"  {candidate.name}: setup failed: {results[candidate.name].error}")
    names = [c.name for c in candidates if c.name in steps]
    for r in range(rounds):
        for name in rotated(names, r):
            count, seconds = time_step(steps[name], min_seconds)
            results[name].per_round.append(count * results[name].items / seconds)
        log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {results[n].per_round[-1]:.4g}" for n in names))
    steps.clear()
    gc.collect()
    return [results[c.name] for c in candidates]
