"""``--cache auto|ram|none``: keep the decoded images in memory, or read them from disk at every use.

The in-memory cache wins for small sets (decode once, never again); for a set larger than memory it is
impossible. ``auto`` caches only when the estimated decoded size fits the budget: a quarter of the memory
available at start, shared by the training processes of the machine (each one holds its own cache).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

CHOICES = ("auto", "ram", "none")
BUDGET_SHARE = 4  # auto uses at most 1/BUDGET_SHARE of the memory available at start


def available_memory() -> int:
    """Bytes of memory available to new allocations (MemAvailable on Linux, else the physical total)."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def decoded_bytes(count: int, short_side: int, aspect: float = 4 / 3) -> int:
    """Estimated memory of ``count`` images cached as uint8 RGB with shorter side ``short_side`` (4:3 photos)."""
    return count * 3 * short_side * round(short_side * aspect)


@dataclass(frozen=True)
class CachePlan:
    """The decision and the numbers behind it, for the start line."""

    in_memory: bool
    choice: str
    decoded: int
    budget: int

    def describe(self) -> str:
        size = f"~{self.decoded / 2**30:.2f} GiB decoded"
        if self.choice != "auto":
            return f"cache {'ram' if self.in_memory else 'none'} (--cache {self.choice}; {size})"
        verdict = "fits" if self.in_memory else "exceeds"
        return (f"cache {'ram' if self.in_memory else 'none'} (auto: {size} {verdict} the budget of "
                f"{self.budget / 2**30:.2f} GiB = 1/{BUDGET_SHARE} of available memory per process)")


def plan_cache(choice: str, count: int, short_side: int, processes_per_machine: int = 1,
               budget: int | None = None) -> CachePlan:
    """Decide ``--cache``: ``ram`` / ``none`` as asked, ``auto`` by the estimated decoded size."""
    need = decoded_bytes(count, short_side)
    if budget is None:
        budget = available_memory() // BUDGET_SHARE // max(1, processes_per_machine)
    in_memory = choice == "ram" or (choice == "auto" and need <= budget)
    return CachePlan(in_memory, choice, need, budget)
