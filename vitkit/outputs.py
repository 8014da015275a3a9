"""What a command may write over: nothing that exists, unless the user says ``--overwrite``.

Every command that writes files (``train``, ``convert``, ``export``, ``eval``, ``explain``) checks its outputs
here before it starts work, so a typo in ``--out`` can never replace a trained model, a report or a figure:

- a new training run needs an absent or empty folder (an existing run is continued with ``--resume``);
- ``convert`` needs an absent output file or an absent or empty output folder;
- ``export``, ``eval`` and ``explain`` need their output files to be absent.

With ``overwrite`` the files are replaced; for a training run, the files an earlier run left in the folder are
removed first (see :data:`RUN_FILES`), so no stale checkpoint or log can mix with the new run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterable

from .errors import VitkitError

RUN_FILES = ("config.json", "model.safetensors", "last.safetensors", "checkpoints", "metrics.jsonl", "tensorboard",
             "plots", "summary.json", "eval.json")
"""What a training run writes into its folder (``train/loop.py``); ``--overwrite`` removes exactly these."""

FIX = "pass --overwrite to replace {it}, or choose another {flag}"


def refuse_existing(paths: Iterable[str | os.PathLike], *, overwrite: bool, flag: str = "--out") -> None:
    """Raise a one-line :class:`VitkitError` if any of ``paths`` exists, unless ``overwrite``."""
    if overwrite:
        return
    taken = [Path(p) for p in paths if Path(p).exists() or Path(p).is_symlink()]
    if taken:
        more = f" (and {len(taken) - 1} more of the files it would write)" if len(taken) > 1 else ""
        raise VitkitError(f"{taken[0]} already exists{more}; " + FIX.format(it="it" if len(taken) == 1 else "them",
                                                                           flag=flag))


def refuse_non_empty(out: str | os.PathLike, *, overwrite: bool, flag: str = "--out") -> None:
    """Raise if ``out`` is an existing file or a folder with anything in it, unless ``overwrite``."""
    out = Path(out)
    if overwrite or not (out.exists() or out.is_symlink()):
        return
    if not out.is_dir():
        raise VitkitError(f"{out} already exists; " + FIX.format(it="it", flag=flag))
    found = _entries(out)
    if found:
        raise VitkitError(f"{out} is not empty (it holds {_names(found)}); " + FIX.format(it="its files", flag=flag))


def claim_run_folder(run_dir: str | os.PathLike, *, overwrite: bool, clear: bool = True) -> None:
    """Make sure a new training run may write to ``run_dir``: absent, empty, or ``overwrite`` (then, when
    ``clear``, the :data:`RUN_FILES` of an earlier run are removed; other files stay)."""
    from .train.checkpoint import has_checkpoint

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        if run_dir.exists():
            raise VitkitError(f"--out {run_dir} is a file, not a folder; choose another --out")
        return
    if overwrite:
        if clear:
            for name in RUN_FILES:
                path = run_dir / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                elif path.exists() or path.is_symlink():
                    path.unlink()
        return
    found = _entries(run_dir)
    if not found:
        return
    if has_checkpoint(run_dir):
        raise VitkitError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, or choose "
                          "another --out, or pass --overwrite to start it again from scratch")
    raise VitkitError(f"--out {run_dir} is not empty (it holds {_names(found)}) and holds no run to resume; choose "
                      "another --out, or pass --overwrite to replace it with the new run")


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _names(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
