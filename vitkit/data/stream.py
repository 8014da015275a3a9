"""Batches built in worker processes, so data sets larger than memory train and a GPU is kept fed.

:class:`StepLoader` runs a *build function* ``build(epoch, step) -> StepBatch`` in ``torch.utils.data`` worker
processes (persistent, prefetching, pinned memory for CUDA), independent of the training loop. A batch is still a
pure function of (seed, epoch, step, position), whichever worker builds it, so resume and N processes stay exact.
What the workers build from a folder (files decoded on demand) is in files.py.

A worker that dies (a decoder crash, the OOM killer) or fails names the file it was reading, and the run stops
with one line (:class:`~vitkit.errors.VitkitError`), never a hang: each worker writes the path it is about to
read into a shared slot, which the main process reads when the DataLoader reports the dead worker.
"""

from __future__ import annotations

import atexit
import itertools
import multiprocessing
import multiprocessing.util  # noqa: F401 - registers its exit hook (terminate, join children) before ours
import os
import re
import signal
import sys
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ..errors import VitkitError
from . import loader_workers
from .loader_workers import WorkerInit, WorkerSlots

STALL_SECONDS = float(os.environ.get("VITKIT_LOADER_TIMEOUT", 600))
"""A worker that delivers nothing for this long is stuck (a hung network mount, a decoder loop): the run stops
with one line naming the files the workers were on, rather than waiting for ever."""
MAX_DEFAULT_WORKERS = 16
WORKER_NICENESS = 19
"""Loader workers beside a model that runs on the CPU take the cores only when the model leaves them idle: it uses
every core, and a worker at equal priority stalls each of its parallel operations. Measured on a 2-core CPU
(``benchmarks/loader_training.py``, cats_vs_dogs, ViT-Ti 128 px, RandAugment, 2 workers): training from the
streamed folder 0.62x -> 0.79x of the model alone, from the memory cache 0.78x -> 0.86x."""


def worker_niceness(device: torch.device | str) -> int:
    """The niceness of loader workers that feed a model on ``device`` (0 beside an accelerator)."""
    return WORKER_NICENESS if torch.device(device).type == "cpu" else 0


def default_workers(processes_per_machine: int = 1) -> int:
    """Worker processes per training process: the cores left after one for each training process (1-16)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_DEFAULT_WORKERS, cores // max(1, processes_per_machine) - 1))


# --- the loader ---------------------------------------------------------------------------------------------

@dataclass
class StepBatch:
    """What a worker hands the training loop for one step."""

    inputs: torch.Tensor
    targets: torch.Tensor
    skipped: list[tuple[str, str]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    """Names of the samples (shards), for tests and logs."""

    def pin_memory(self) -> "StepBatch":
        return StepBatch(self.inputs.pin_memory(), self.targets.pin_memory(), self.skipped, self.keys)


@dataclass
class _Failed:
    """A worker's report that building a batch raised: the file it was reading and the error."""

    path: str | None
    error: str
    user_error: bool


def failure(error: Exception) -> "_Failed":
    """What a worker hands back instead of a batch when building it raised: the file it was on and why.
    Outside a worker (``--workers 0``) the error itself is raised again, with its traceback."""
    if not loader_workers.in_worker():
        raise error
    path = loader_workers.current_path()
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    user = isinstance(error, VitkitError)
    return _Failed(path, reason if user else f"{type(error).__name__}: {reason}", user)


class _Steps(Dataset):
    """Map-style: item (epoch, step) -> ``build(epoch, step)``; failures come back as values, not tracebacks."""

    def __init__(self, build: Callable[[int, int], Any]) -> None:
        self.build = build

    def __len__(self) -> int:  # DataLoader never needs it: the sampler says which items to build
        return 0

    def __getitem__(self, key: tuple[int, int]) -> Any:
        try:
            return self.build(*key)
        except Exception as error:  # noqa: BLE001 - reported in the main process with the file's name
            return failure(error)


class EpochStream(IterableDataset):
    """An iterable source of one epoch's batches from ``first_step`` on (shards); set before each pass."""

    epoch: int = 0
    first_step: int = 0


class _Keys:
    """The sampler: the (epoch, step) keys of the steps asked for this time round (set before each pass)."""

    def __init__(self) -> None:
        self.keys: Iterable[tuple[int, int]] = []

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self.keys)

    def __len__(self) -> int:  # DataLoader's len(); the workers only ever iterate
        return len(self.keys) if isinstance(self.keys, list) else sys.maxsize


def _keys_from(epoch: int, steps: range, per_epoch: int | None) -> Iterable[tuple[int, int]]:
    """``steps`` of ``epoch``, then (with ``per_epoch``) every step of every following epoch."""
    keys = ((epoch, step) for step in steps)
    if per_epoch is None:
        return list(keys)
    return itertools.chain(keys, ((e, step) for e in itertools.count(epoch + 1) for step in range(per_epoch)))


_open_loaders: weakref.WeakSet = weakref.WeakSet()
_worker_slots: list[WorkerSlots] = []  # of every loader whose workers may still run


def _stop_workers_at_exit() -> None:
    """Before multiprocessing's own exit hook (registered earlier, so run later), which terminates the daemonic
    children and then joins them: the workers ignore SIGTERM (Ctrl-C is the training process's to handle), so a
    loader nobody closed - a Trainer built but never run, or one dropped while its workers lived on - would block
    the exit for ever. Open loaders are closed; any worker of ours still alive is killed."""
    for loader in list(_open_loaders):
        loader.close()
    ours = {pid for slots in _worker_slots for pid in slots.pids if pid}
    leftover = [child for child in multiprocessing.active_children() if child.pid in ours]  # live children only
    if leftover and hasattr(signal, "SIGCHLD"):
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # torch's handler would report the kill as a worker failure
    for child in leftover:
        child.kill()


atexit.register(_stop_workers_at_exit)


class StepLoader:
    """``build(epoch, step)`` in ``workers`` processes (0: in this process), in step order, prefetched."""

    def __init__(self, build: Callable[[int, int], Any] | EpochStream, workers: int, *, pin_memory: bool = False,
                 prefetch: int = 2, stall_seconds: float = STALL_SECONDS, niceness: int = 0) -> None:
        self.workers = workers
        self.stall_seconds = stall_seconds
        self.slots = WorkerSlots(workers)
        self._keys = _Keys()
        self.stream = build if isinstance(build, EpochStream) else None
        self._ahead: tuple[tuple[int, int], Any] | None = None  # (the key it builds next, a running iterator)
        options: dict[str, Any] = {}
        if workers > 0:
            context = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
            # An epoch stream's workers read the epoch they are started for: they start again each epoch.
            options = dict(prefetch_factor=prefetch, persistent_workers=self.stream is None,
                           multiprocessing_context=context, worker_init_fn=WorkerInit(self.slots, niceness),
                           timeout=stall_seconds)
        if self.stream is None:
            options["sampler"] = self._keys
        # Its own generator: starting workers must not draw from the global RNG, which training uses (drop
        # path) and checkpoints, or a resumed run would diverge from an uninterrupted one.
        self.loader = DataLoader(self.stream or _Steps(build), batch_size=None,  # type: ignore[arg-type]
                                 num_workers=workers, pin_memory=pin_memory, collate_fn=_identity,
                                 generator=torch.Generator().manual_seed(0), **options)
        if workers > 0:
            live = {child.pid for child in multiprocessing.active_children()}
            _worker_slots[:] = [slots for slots in _worker_slots if live & set(slots.pids)] + [self.slots]
            _open_loaders.add(self)

    def batches(self, epoch: int, steps: range, per_epoch: int | None = None) -> Iterator[Any]:
        """The built batches of ``steps`` of ``epoch``, in order; a dead or failing worker -> VitkitError.

        With ``per_epoch`` (the steps of every epoch) the workers go on into the next epoch while this one ends,
        and a later call that asks for exactly the steps that follow takes them from there: no restart, and no
        worker idle at the epoch boundary (which cost ~8% of the loader's throughput on 30-step epochs).
        """
        if self.stream is not None:
            self.stream.epoch, self.stream.first_step, per_epoch = epoch, steps.start, None  # read epoch by epoch
        elif per_epoch and not steps:
            return
        ahead, self._ahead = self._ahead, None
        if per_epoch and ahead and ahead[0] == (epoch, steps.start):
            iterator = ahead[1]
        else:
            self._keys.keys = _keys_from(epoch, steps, per_epoch)
            iterator = iter(self.loader)
        for step in steps if per_epoch else itertools.count():  # the keys run on: take this call's steps only
            try:
                item = next(iterator)
            except StopIteration:
                return
            except RuntimeError as error:
                failure = self._worker_died(error, iterator)
                # Else torch's SIGCHLD check keeps the dead worker registered while anything (a traceback) holds
                # this iterator, and raises at the next child exit, anywhere. An epoch stream's iterator is not
                # the loader's own (no persistent workers), so close() alone would miss it.
                _shutdown(iterator)
                self.close()
                raise failure from None
            if isinstance(item, _Failed):
                where = f" while reading {item.path}" if item.path else ""
                if item.user_error:
                    raise VitkitError(item.error)
                raise VitkitError(f"a data loader worker failed{where}: {item.error}; remove or repair the file "
                                  "(with --workers 0 the error happens in this process, VITKIT_DEBUG=1 shows it)")
            if per_epoch and step == steps[-1]:  # before the last yield: a consumer takes no more than it needs
                self._ahead = ((epoch, steps.stop) if steps.stop < per_epoch else (epoch + 1, 0), iterator)
            yield item

    def _worker_died(self, error: RuntimeError, iterator: Any) -> Exception:
        text = str(error)
        if "timed out" in text:
            on = [p for p in (self.slots.path_of(pid) for pid in self.slots.pids[: self.workers]) if p]
            where = f" (workers were reading {', '.join(on)})" if on else ""
            return VitkitError(f"the data loader delivered nothing for {self.stall_seconds:g} s{where}; check that "
                               "file or its disk, or raise VITKIT_LOADER_TIMEOUT (seconds) for very slow storage")
        if "DataLoader worker" not in text:
            return error
        listed = re.search(r"pid(?:\(s\))? ([\d, ]+)", text)
        pids = [int(p) for p in re.findall(r"\d+", listed.group(1))] if listed else []
        paths = [p for p in (self.slots.path_of(pid) for pid in pids) if p]
        how = "exited unexpectedly"
        for worker in getattr(iterator, "_workers", []):  # the exit code says which signal, when there was one
            if worker.pid in pids and worker.exitcode is not None and worker.exitcode < 0:
                how = f"killed by {signal.Signals(-worker.exitcode).name}"
        where = f" while reading {paths[0]}" if paths else ""
        return VitkitError(f"a data loader worker died ({how}){where}; remove or repair that file, or give the "
                           "machine more memory if it was killed for memory (--workers 0 decodes in this process)")

    def close(self) -> None:
        """Stop the worker processes (persistent workers otherwise live until the loader is collected)."""
        self._ahead = None
        _shutdown(getattr(self.loader, "_iterator", None))
        self.loader._iterator = None


def _shutdown(iterator: Any) -> None:
    """Stop a DataLoader iterator's workers and unregister them from torch's SIGCHLD check."""
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()


def _identity(item: Any) -> Any:
    return item


def log_skipped(found: list[tuple[str, str]], seen: set[str], log: Callable[[str], None]) -> list[tuple[str, str]]:
    """Log each unreadable file once (``seen`` holds the paths already logged); returns the new ones."""
    new = []
    for path, reason in found:
        if path not in seen:
            seen.add(path)
            new.append((path, reason))
            log(f"skipped {path}: {reason}")
    return new

