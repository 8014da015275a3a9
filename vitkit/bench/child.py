"""Fresh Python processes for the benchmark: one-shot children that send one JSON result back (peak memory),
and the environment the benchmark's worker processes (``worker.py``) start in.

What runs where: ``benchmarks/peers.py`` (and ``vitkit bench``) only coordinates; each candidate of a group is
built and timed in a worker process of its own, and each peak-memory row is measured by a child of its own.
Why: process-wide state leaks between whatever shares a process. A long benchmark left one process's allocator
fragmented by everything it ran before, which slowed later groups by up to 20% (measured: ViViT Model 1 at the
end of a full run against the same models alone), and vitkit's heap setting (``vitkit.fast.tune_allocator``)
must apply to vitkit alone, not to the peers timed next to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

MARKER = "VITKIT_CHILD_RESULT "


def environment() -> dict[str, str]:
    """This process's environment with this vitkit first on PYTHONPATH, so a child imports the same code."""
    repo = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}


def send(result: Any) -> None:
    """The child side: print ``result`` on one marked line."""
    print(MARKER + json.dumps(result), flush=True)


def run_child(argv: list[str], timeout: float = 3600) -> Any | None:
    """Run ``python ARGV`` and return what it :func:`send`-s, or None (its stderr tail is shown then)."""
    result = None
    with subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=environment()) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except BaseException:
            child.kill()
            raise
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            result = json.loads(line[len(MARKER):])
    if result is None:
        sys.stderr.write(stderr[-2000:])
    return result
