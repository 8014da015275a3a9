"""The worker processes' side of the streaming loader (``stream.StepLoader``): each worker records its pid and the
file it is reading in shared memory (so a crash or a stall can name the file), ignores Ctrl-C (the training
process handles it) and keeps freed memory for reuse."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from pathlib import Path

PATH_BYTES = 1024


class WorkerSlots:
    """Shared memory where each worker records its pid and the file it is reading (read after a crash)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pids = multiprocessing.RawArray(ctypes.c_long, max(1, workers))
        self.paths = multiprocessing.RawArray(ctypes.c_char, max(1, workers) * PATH_BYTES)

    def claim(self, worker: int) -> None:
        self.pids[worker] = os.getpid()

    def mark(self, worker: int, path: str) -> None:
        data = os.fsencode(path)[: PATH_BYTES - 1] + b"\0"
        self.paths[worker * PATH_BYTES : worker * PATH_BYTES + len(data)] = data

    def path_of(self, pid: int) -> str | None:
        for worker in range(self.workers):
            if self.pids[worker] == pid:
                raw = bytes(self.paths[worker * PATH_BYTES : (worker + 1) * PATH_BYTES]).split(b"\0", 1)[0]
                return os.fsdecode(raw) or None
        return None


_current: tuple[WorkerSlots, int] | None = None  # set in each worker process by init_worker


def reading(path: str | Path) -> None:
    """Record that this process is about to read ``path`` (a no-op outside loader workers)."""
    if _current is not None:
        _current[0].mark(_current[1], str(path))


def in_worker() -> bool:
    """Whether this process is a loader worker."""
    return _current is not None


def current_path() -> str | None:
    """The file this worker process recorded last (None outside workers)."""
    return None if _current is None else _current[0].path_of(os.getpid())


def init_worker(slots: WorkerSlots, worker: int, niceness: int = 0) -> None:
    global _current
    _current = (slots, worker)
    slots.claim(worker)
    _keep_freed_memory()
    if niceness:
        os.nice(niceness)
    # Ctrl-C (and a TERM sent to the process group) is the training process's to handle: it saves at the next
    # step boundary and then stops the workers itself (they also exit when it is gone).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
KEEP_FREED = 32 * 2**20


def _keep_freed_memory() -> None:
    """Let this worker's allocator keep up to 32 MiB it freed. By default glibc hands freed blocks over 128 KiB
    back to the kernel, so every image-sized temporary of the augmentation is fresh memory, faulted in page by
    page again (~12% of a worker's time at 224 px). A no-op where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, KEEP_FREED)
        libc.mallopt(M_TRIM_THRESHOLD, 2 * KEEP_FREED)
    except (OSError, AttributeError):
        pass


class WorkerInit:
    """The DataLoader's ``worker_init_fn`` (a picklable callable holding the shared slots)."""

    def __init__(self, slots: WorkerSlots, niceness: int = 0) -> None:
        self.slots, self.niceness = slots, niceness

    def __call__(self, worker: int) -> None:
        init_worker(self.slots, worker, self.niceness)
