"""Each benchmark candidate in a long-lived worker process of its own, timed on the parent's request.

Why: process-wide settings leak between candidates that share a process. vitkit sets up glibc's heap for
speed (``vitkit.fast.tune_allocator``), which must apply to vitkit alone; and no library should inherit
another's warmed or fragmented heap. The parent keeps the interleaving (``timing.interleave``: same order,
same statistics); it waits for each reply, so one worker computes at a time and they never compete for cores.

The worker is ``python ARGV``, a script that rebuilds the caller's group from the same command line and calls
:func:`serve` with the candidate of that name (``benchmarks/peers.py --worker SIZE MODE NAME``, ``vitkit bench
--worker MODE NAME``). Protocol, one JSON object a line, parent to worker on stdin, worker to parent on stdout:

    {"do": "setup", "warmup": 1}          -> {"flops": F, "resident": R, "peak": H}
    {"do": "sample", "min_seconds": 1.0}  -> {"steps": N, "seconds": S, "resident": R, "peak": H}

(R: the worker's proportional set size after trimming, H: its peak RSS, bytes; None off Linux.)
    anything that fails                   -> {"error": "RuntimeError: ..."} and the worker exits
    end of stdin                          -> the worker exits

Between samples a worker returns its freed heap to the kernel (``malloc_trim``), so that nine ViT-B training
workers hold their weights and optimizer state but not nine sets of freed activations, and it runs one untimed
step before each timed sample, which brings the heap back to its steady state (vitkit's tuned heap included).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
from typing import Callable

from ..fast import resolve_heap, tune_allocator
from . import child, memory
from .timing import Candidate, CandidateFailed, time_step

VITKIT_HEAP = resolve_heap("auto", grad_checkpointing=False)  # vitkit's candidates' heap: predict / train's default
CLOSE_SECONDS = 10  # how long a worker may take to exit once its stdin is closed, before it is killed


class Worker:
    """The parent's side of one candidate's worker process (a :class:`timing.Runner`)."""

    def __init__(self, candidate: Candidate, argv: list[str]) -> None:
        self.name = candidate.name
        self.resident: int | None = None
        self.peak: int | None = None
        self._stderr = tempfile.TemporaryFile()  # read back only to say why a worker died
        self._process = subprocess.Popen([sys.executable, *argv], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=self._stderr, text=True, env=child.environment())

    def setup(self, warmup: int) -> float | None:
        return self._ask(do="setup", warmup=warmup)["flops"]

    def sample(self, min_seconds: float) -> tuple[int, float]:
        reply = self._ask(do="sample", min_seconds=min_seconds)
        return reply["steps"], reply["seconds"]

    def close(self) -> None:
        """End the worker (closing its stdin; killing it if it does not exit) and wait for it."""
        if self._process.poll() is None:
            try:
                self._process.stdin.close()  # type: ignore[union-attr]
                self._process.wait(CLOSE_SECONDS)
            except (OSError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        for stream in (self._process.stdin, self._process.stdout, self._stderr):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:  # a broken pipe's buffered request
                pass

    def _ask(self, **request) -> dict:
        try:
            self._process.stdin.write(json.dumps(request) + "\n")  # type: ignore[union-attr]
            self._process.stdin.flush()  # type: ignore[union-attr]
            line = self._process.stdout.readline()  # type: ignore[union-attr]
        except BrokenPipeError:
            line = ""
        if not line:
            raise CandidateFailed(self._death())
        reply = json.loads(line)
        if "error" in reply:
            raise CandidateFailed(reply["error"])
        self.resident, self.peak = reply["resident"], reply["peak"]
        return reply

    def _death(self) -> str:
        """Why the worker is gone: its exit status and the last line it wrote on stderr."""
        try:
            code = self._process.wait(CLOSE_SECONDS)
        except subprocess.TimeoutExpired:  # alive but mute: its protocol stream is broken
            self._process.kill()
            code = self._process.wait()
        status = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return f"worker {status}" + (f": {lines[-1]}" if lines else "")


def starter(argv_of: Callable[[str], list[str]]) -> Callable[[Candidate], Worker]:
    """``interleave``'s ``start``: each candidate in a worker ``python argv_of(candidate.name)``."""
    return lambda candidate: Worker(candidate, argv_of(candidate.name))


def serve(candidate: Candidate) -> None:
    """The worker side: answer the parent's requests for ``candidate`` until its stdin ends."""
    replies = os.fdopen(os.dup(1), "w")  # the protocol's own copy of stdout; anything printed goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    step = None
    while request := sys.stdin.readline():
        order = json.loads(request)
        try:
            if order["do"] == "setup":
                if candidate.heap is not None:  # as vitkit predict / train do, before allocating
                    tune_allocator(candidate.heap)
                step, flops = candidate.setup()
                for _ in range(order["warmup"]):
                    step()
                reply = {"flops": flops}
            else:
                assert step is not None, "sample before setup"
                step()  # untimed: refills the heap trimmed after the previous sample
                steps, seconds = time_step(step, order["min_seconds"])
                reply = {"steps": steps, "seconds": seconds}
            trim_heap()
            reply.update(zip(("resident", "peak"), _memory()))
        except Exception as error:
            reply = {"error": f"{type(error).__name__}: {error}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
        if "error" in reply:
            return


def trim_heap() -> None:
    """Return the heap's free memory to the kernel (glibc ``malloc_trim(0)``; nothing elsewhere)."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)


def _memory() -> tuple[int | None, int | None]:
    """This process's share of memory (its proportional set size: the libraries' pages shared with the other
    workers count once over all) and its resident-set high-water mark, in bytes; None where /proc lacks them."""
    try:
        with open("/proc/self/smaps_rollup") as f:
            shared = next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        return shared, memory.status_bytes("VmHWM")
    except (OSError, StopIteration):
        return None, None
