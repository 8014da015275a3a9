"""Run one measurement in a fresh Python process and get its result back as JSON.

Why: a long benchmark leaves the parent's allocator fragmented by everything it ran before, which slows later
groups by up to 20% (measured: ViViT Model 1 at the end of a full run against the same models alone). A fresh
process per group (and per memory measurement) makes each result independent of the order of the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

MARKER = "VITKIT_CHILD_RESULT "


def send(result: Any) -> None:
    """The child side: print ``result`` on one marked line."""
    print(MARKER + json.dumps(result), flush=True)


def run_child(argv: list[str], timeout: float = 3600, echo: bool = False) -> Any | None:
    """Run ``python ARGV`` and return what it :func:`send`-s, or None (its stderr tail is shown then).
    With ``echo``, the child's other output lines are printed as they come (progress)."""
    repo = str(Path(__file__).resolve().parents[2])  # so the child imports this same vitkit
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    result = None
    with subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as child:
        try:
            for line in child.stdout:  # type: ignore[union-attr]
                if line.startswith(MARKER):
                    result = json.loads(line[len(MARKER):])
                elif echo:
                    print(line, end="", flush=True)
            stderr = child.stderr.read()  # type: ignore[union-attr]
            child.wait(timeout=timeout)
        except BaseException:
            child.kill()
            raise
    if result is None:
        sys.stderr.write(stderr[-2000:])
    return result
