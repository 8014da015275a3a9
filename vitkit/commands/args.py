"""Argument types shared by the sub-commands."""

from __future__ import annotations

import argparse
import sys


def size(text: str) -> tuple[int, ...]:
    """Parse ``3x224x224`` into (3, 224, 224)."""
    try:
        values = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 3x224x224, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be positive integers like 3x224x224, got {text!r}")
    return values


def positive_int(text: str) -> int:
    """Parse a positive integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


HEAP_HELP = ("glibc heap: speed keeps freed tensors for reuse, memory returns them at once, system leaves glibc's "
             "defaults; auto = memory with --grad-checkpointing, else speed (see docs/speed.md)")


def tune_heap(goal: str, grad_checkpointing: bool = False) -> None:
    """Apply ``--heap`` (process-wide): called first, before any data or model is allocated."""
    from ..fast.allocator import resolve_heap, tune_allocator

    done = tune_allocator(resolve_heap(goal, grad_checkpointing))
    if "refused" in done:
        print(f"warning: heap {done}", file=sys.stderr)
