"""Peak memory of one candidate, measured alone in a fresh subprocess.

CPU: just before the model is built, the kernel's resident-set high-water mark is reset to the current
resident set (``/proc/self/clear_refs``, Linux); afterwards the high-water mark minus that baseline is the
memory the candidate added at its peak: weights, gradients, optimizer state and activations, with the
libraries' code and import-time allocations cancelled out. A fresh process per candidate keeps the allocator's
cached pages of one candidate from hiding another's. CUDA: ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import gc

import torch

from . import child
from .timing import Candidate


def status_bytes(field: str) -> int:
    """A memory figure of this process (VmRSS, VmHWM, ...) from ``/proc/self/status`` (Linux), in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    raise OSError(f"/proc/self/status has no {field}")


def reset_peak() -> int:
    """Reset the resident-set high-water mark to the current resident set; returns that baseline in bytes."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status_bytes("VmRSS")


def measure_here(candidate: Candidate, device: str = "cpu", steps: int = 2) -> int:
    """Peak bytes used by building ``candidate`` and running ``steps`` steps, in this process."""
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        step, _ = candidate.setup()
        for _ in range(steps):
            step()
        return torch.cuda.max_memory_allocated()
    baseline = reset_peak()
    step, _ = candidate.setup()
    for _ in range(steps):
        step()
    return status_bytes("VmHWM") - baseline


def report_here(candidate: Candidate, device: str = "cpu") -> None:
    """Measure in this process and send the result to the parent (the child side of :func:`measure_in_subprocess`)."""
    child.send({"name": candidate.name, "peak_bytes": measure_here(candidate, device)})


def measure_in_subprocess(argv: list[str], timeout: float = 1800) -> int | None:
    """Run ``python ARGV`` (a child that calls :func:`report_here`) and return its peak bytes, or None."""
    result = child.run_child(argv, timeout)
    return None if result is None else int(result["peak_bytes"])
