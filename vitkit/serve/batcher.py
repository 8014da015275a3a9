"""Dynamic batching: requests from many clients become one model call, on one thread that owns the model.

Callers :meth:`Batcher.submit` a job and get a :class:`concurrent.futures.Future`. The model thread takes the
first waiting job, then gathers more until the batch holds ``max_batch`` inputs or ``max_wait_s`` has passed,
whichever comes first, and hands the whole batch to ``process`` (one list in, one result per job out).

It waits only when more work is known to be on its way: callers announce a job while they are still decoding
it (:meth:`Batcher.expecting`). A lone request therefore starts at once and keeps its single-input latency,
while under load the batches fill up. A job of several inputs (a video's views) is never split across batches,
so a batch may exceed ``max_batch`` by that job's size minus one.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, Iterator, Sequence, TypeVar

Job = TypeVar("Job")


@dataclass
class _Entry(Generic[Job]):
    job: Job
    size: int
    future: Future = field(default_factory=Future)


class Batcher(Generic[Job]):
    """One model thread that runs ``process(jobs) -> results`` on batches gathered from concurrent callers."""

    def __init__(self, process: Callable[[list[Job]], Sequence[Any]], *, max_batch: int = 32,
                 max_wait_s: float = 0.005, name: str = "vitkit-model") -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError(f"max_batch must be >= 1 and max_wait_s >= 0, got {max_batch} and {max_wait_s}")
        self.process, self.max_batch, self.max_wait_s = process, max_batch, max_wait_s
        self.batches = 0
        """Model calls so far (a statistic for tests and benchmarks)."""
        self._queue: queue.SimpleQueue[_Entry | None] = queue.SimpleQueue()
        self._coming = 0  # jobs announced by callers that are still decoding them
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def expecting(self) -> Iterator[None]:
        """Announce a job that is being prepared, so a gathering batch waits for it (up to ``max_wait_s``)."""
        with self._lock:
            self._coming += 1
        try:
            yield
        finally:
            with self._lock:
                self._coming -= 1

    def submit(self, job: Job, size: int = 1) -> Future:
        """Queue a job of ``size`` model inputs; its future gets the job's result (or the exception of the
        batch). Cancelling the future before the batch starts drops the job."""
        entry = _Entry(job, size)
        self._queue.put(entry)
        return entry.future

    def close(self) -> None:
        """Stop the model thread after the batch in progress (jobs still queued are cancelled)."""
        self._closed.set()
        self._queue.put(None)  # wakes the thread if it is idle
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._closed.is_set():
            first = self._queue.get()
            if first is None:
                break
            batch, stop = self._gather(first)
            self._call(batch)
            if stop:
                break
        while True:  # after close: nobody will run what is left
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                return
            if entry is not None:
                entry.future.cancel()

    def _gather(self, first: _Entry) -> tuple[list[_Entry], bool]:
        """The batch that starts with ``first``; True as second value when close() was called meanwhile."""
        batch, size = [first], first.size
        deadline = time.monotonic() + self.max_wait_s
        while size < self.max_batch:
            try:
                entry = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0 or not self._coming:
                    break
                try:
                    entry = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if entry is None:
                return batch, True
            batch.append(entry)
            size += entry.size
        return batch, False

    def _call(self, batch: list[_Entry]) -> None:
        live = [entry for entry in batch if entry.future.set_running_or_notify_cancel()]
        if not live:
            return
        self.batches += 1
        try:
            results = self.process([entry.job for entry in live])
        except BaseException as error:  # noqa: BLE001 - handed to every waiting caller, the thread lives on
            for entry in live:
                entry.future.set_exception(error)
            return
        for entry, result in zip(live, results):
            entry.future.set_result(result)
