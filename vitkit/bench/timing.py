"""Interleaved throughput measurement: every candidate runs once per round, in an order rotated each round.

Why interleave: on a shared machine the speed drifts (2x under other users' load). Measuring A for a minute and
then B for a minute compares two different machines; measuring A, B, C, then B, C, A, ... spreads the drift over
all candidates, so the median of each, and the ratios between them, are fair.

Where a candidate runs is the caller's choice (``start``): in this process (:class:`InProcess`, the default) or
each in a worker process of its own (``bench/worker.py``), which keeps process-wide state (the heap, threads,
caches) from leaking from one library into another. The order and the statistics are the same either way.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

Step = Callable[[], None]


@dataclass
class Candidate:
    """One thing to time: ``setup()`` builds it and returns ``(step, flops of one step or None)``; a step
    processes ``items`` items (images, clips or, for a matmul, FLOPs). ``heap`` is the glibc heap goal a
    worker process sets before ``setup`` (``vitkit.fast.tune_allocator``); None keeps glibc's defaults. It is
    process-wide, so :class:`InProcess` leaves it alone."""

    name: str
    setup: Callable[[], tuple[Step, float | None]]
    items: float
    heap: str | None = None


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


class CandidateFailed(Exception):
    """A candidate failed where its own exception cannot reach the caller (another process); says what happened."""


class Runner(Protocol):
    """Where one candidate runs: ``setup`` builds it and runs ``warmup`` steps (returns its FLOPs per step),
    ``sample`` times it once (returns ``time_step``'s steps and seconds), ``close`` lets it go. Where known,
    ``resident`` is the memory its process holds between samples and ``peak`` its high-water mark (bytes)."""

    resident: int | None
    peak: int | None

    def setup(self, warmup: int) -> float | None: ...

    def sample(self, min_seconds: float) -> tuple[int, float]: ...

    def close(self) -> None: ...


class InProcess:
    """A candidate run in this process."""

    resident = peak = None

    def __init__(self, candidate: Candidate) -> None:
        self.candidate = candidate
        self.step: Step | None = None

    def setup(self, warmup: int) -> float | None:
        self.step, flops = self.candidate.setup()
        for _ in range(warmup):  # first calls pay for allocation, oneDNN primitive creation, lazy state
            self.step()
        return flops

    def sample(self, min_seconds: float) -> tuple[int, float]:
        assert self.step is not None, "sample() before setup()"
        return time_step(self.step, min_seconds)

    def close(self) -> None:
        self.step = None


def interleave(candidates: list[Candidate], rounds: int = 5, min_seconds: float = 1.0, warmup: int = 1,
               log: Callable[[str], None] = lambda line: None,
               start: Callable[[Candidate], Runner] = InProcess) -> list[Samples]:
    """Set up every candidate (``start`` says where it runs), warm each up, then time them round-robin for
    ``rounds`` rounds. A candidate that fails in setup is reported and left out; one that fails in a round is
    reported and dropped from the later rounds (its earlier samples are kept). Every runner is closed at the
    end, also on an exception (Ctrl-C)."""
    results = {c.name: Samples(c.name, c.items, None) for c in candidates}
    runners: dict[str, Runner] = {}
    try:
        for candidate in candidates:  # started first, so worker processes import their libraries in parallel
            runners[candidate.name] = start(candidate)
        for candidate in candidates:
            try:
                results[candidate.name].flops = runners[candidate.name].setup(warmup)
            except Exception as error:  # a peer that fails to build is reported, not fatal
                _drop(runners, results[candidate.name], error, "setup failed", log)
        for r in range(rounds):
            for name in rotated(list(runners), r):
                try:
                    count, seconds = runners[name].sample(min_seconds)
                except Exception as error:
                    _drop(runners, results[name], error, f"failed in round {r + 1}", log)
                    continue
                results[name].per_round.append(count * results[name].items / seconds)
            log(f"  round {r + 1}/{rounds}: " + ", ".join(f"{n} {results[n].per_round[-1]:.4g}" for n in runners)
                + _resident(runners.values()))
    finally:
        for runner in runners.values():
            runner.close()
        runners.clear()
        gc.collect()
    return [results[c.name] for c in candidates]


def _drop(runners: dict[str, Runner], samples: Samples, error: Exception, what: str,
          log: Callable[[str], None]) -> None:
    samples.error = str(error) if isinstance(error, CandidateFailed) else f"{type(error).__name__}: {error}"
    log(f"  {samples.name}: {what}: {samples.error}")
    runners.pop(samples.name).close()


def _resident(runners) -> str:
    """How much memory the worker processes hold: what decides whether a group fits in RAM."""
    known = [r for r in runners if r.resident is not None]
    if not known:
        return ""
    held, peak = sum(r.resident for r in known) / 2**30, max(r.peak or 0 for r in known) / 2**30
    return f" ({held:.1f} GiB held by {len(known)} workers between samples, largest peak RSS {peak:.1f} GiB)"
