"""Run ``vitkit ARGS`` in this process and interrupt it at the COUNT-th EVENT, as a crash or a user would.

    python tests/crash_driver.py EVENT COUNT -- train --data ... --out run

EVENT is where the process is hit:
  step  SIGKILL in the middle of an optimiser step (after the forward pass, before the update)
  save  SIGKILL just before a file or checkpoint folder is renamed into place (a torn save)
  sync  SIGKILL just before an fsync (some files of a checkpoint written, others not)
  eval  SIGKILL in the middle of an evaluation
  term, int  SIGTERM / SIGINT at a step (the run must save and exit cleanly)
  none  no interruption
The signal is real (os.kill on this process), so nothing in Python gets to clean up after a SIGKILL.
"""

from __future__ import annotations

import os
import signal
import sys


def main() -> int:
    event, count, args = sys.argv[1], int(sys.argv[2]), sys.argv[4:]
    import torch
    import torch.nn.functional as F

    import vitkit.train.evaluate as evaluate
    from vitkit.cli import main as vitkit_main

    calls = 0
    sig = {"term": signal.SIGTERM, "int": signal.SIGINT}.get(event, signal.SIGKILL)

    def trip() -> None:
        nonlocal calls
        calls += 1
        if calls == count:
            os.kill(os.getpid(), sig)

    def hook(original, only_training: bool = False):
        def wrapped(*a, **k):
            if not only_training or (torch.is_grad_enabled() and a[0].requires_grad):  # not evaluation losses
                trip()
            return original(*a, **k)
        return wrapped

    if event in ("step", "term", "int"):
        F.cross_entropy = hook(F.cross_entropy, only_training=True)
    elif event == "save":
        os.replace = hook(os.replace)
    elif event == "sync":
        os.fsync = hook(os.fsync)
    elif event == "eval":
        evaluate.eval_batch = hook(evaluate.eval_batch)
    return vitkit_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
