"""glibc heap tuning: keep freed tensors for speed, or return them at once for memory.

PyTorch on CPU allocates every tensor with ``malloc``. glibc serves large blocks (above its mmap threshold,
which adapts up to 32 MiB on 64-bit) with fresh ``mmap`` calls and unmaps them when they are freed, so the next
tensor of the same size page-faults all of its memory in again (measured: ~47,000 faults per ViViT forward
pass). Raising the threshold and never trimming keeps freed blocks in the heap for reuse (1.05-1.13x ViT
inference, 1.02-1.06x training here); a low threshold returns every block of 1 MiB or more when it is freed
(the lowest peak RSS, which is what activation checkpointing is for).

The setting is process-wide and affects only later allocations: call :func:`tune_allocator` early, before the
large ones. ``vitkit train`` / ``eval`` / ``predict`` do (``--heap``); the Python API (``train()``,
``Trainer``) leaves it to the caller.
"""

from __future__ import annotations

import ctypes
import sys

from ..errors import ConfigError

HEAP_GOALS = ("auto", "speed", "memory", "system")

# mallopt parameters (<malloc.h>).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# goal -> (mallopt parameter, value, what it means). mallopt(3): a trim threshold of -1 turns trimming off.
# "memory" sets the trim threshold too: glibc raises it on its own as large mmapped blocks are freed, and a
# fixed mmap threshold freezes whatever value it had reached.
_SETTINGS: dict[str, tuple[tuple[int, int, str], ...]] = {
    "speed": ((_M_MMAP_THRESHOLD, 1 << 30, "mmap threshold 1 GiB"), (_M_TRIM_THRESHOLD, -1, "no trimming")),
    "memory": ((_M_MMAP_THRESHOLD, 1 << 20, "mmap threshold 1 MiB"), (_M_TRIM_THRESHOLD, 1 << 20, "trim above 1 MiB")),
    "system": (),
}


def resolve_heap(goal: str, grad_checkpointing: bool) -> str:
    """``auto`` -> ``memory`` with activation checkpointing (the user traded speed for memory), else ``speed``."""
    if goal not in HEAP_GOALS:
        raise ConfigError(f"unknown heap goal {goal!r}: choose {', '.join(HEAP_GOALS)}")
    if goal != "auto":
        return goal
    return "memory" if grad_checkpointing else "speed"


def _glibc() -> ctypes.CDLL | None:
    """The C library this process runs on, when it is glibc (whose mallopt takes these parameters)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None)  # the libc already loaded, whatever its file is called
    if not hasattr(libc, "gnu_get_libc_version"):  # musl and others: mallopt is absent or a stub
        return None
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def tune_allocator(goal: str) -> str:
    """Set glibc's heap for ``speed``, ``memory`` or leave it (``system``); returns what was done, in words."""
    if goal not in _SETTINGS:
        hint = " (resolve 'auto' with resolve_heap first)" if goal == "auto" else ""
        raise ConfigError(f"unknown heap goal {goal!r}: choose {', '.join(_SETTINGS)}{hint}")
    libc = _glibc()
    if libc is None:
        return f"{goal}: not glibc, the C library's allocator is left as it is"
    version = libc.gnu_get_libc_version().decode()
    if not _SETTINGS[goal]:
        return f"system: glibc {version} as configured"
    done, refused = [], []
    for param, value, meaning in _SETTINGS[goal]:
        # mallopt returns 1 on success, 0 when glibc rejects the value (it then keeps its own).
        (done if libc.mallopt(param, value) == 1 else refused).append(meaning)
    if refused:
        kept = f"; set {', '.join(done)}" if done else ""
        return f"{goal}, partly: glibc {version} refused {', '.join(refused)}{kept}"
    return f"{goal}: glibc {version}, {', '.join(done)}"
