"""The trainer's resumable state, kept so that no crash can cost more than the steps since the last save.

A run keeps its last checkpoints as folders ``checkpoints/step-<N>/`` (N = optimiser steps done), each with
``trainer_state.pt`` (weights, optimiser, schedule, EMA, RNG, progress) and ``manifest.json`` (step and the
sha256 of every file). A checkpoint is written into a temporary folder, flushed and fsynced, then renamed
into place, and ``checkpoints/latest`` (a one-line pointer for people and tools) is written last; older ones
are removed only after that. Loading verifies the manifest: a torn or corrupt checkpoint is renamed
``*.damaged`` and the previous good one is used, with a message.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import VitkitError
from ..store import _fsync_dir, atomic_write

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.pt"
MANIFEST = "manifest.json"
LATEST = "latest"
KEEP = 2
"""Checkpoints kept: the newest and the one before it, to fall back to if the newest is damaged."""


def checkpoint_name(step: int) -> str:
    return f"step-{step:09d}"


def _step_of(folder: Path) -> int | None:
    prefix, _, number = folder.name.partition("-")
    return int(number) if prefix == "step" and number.isdigit() and folder.is_dir() else None


def checkpoints(run_dir: Path) -> list[Path]:
    """The complete (renamed into place) checkpoint folders of a run, newest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(step, p) for p in root.iterdir() if (step := _step_of(p)) is not None]
    return [p for _, p in sorted(found, reverse=True)]


def has_checkpoint(run_dir: Path) -> bool:
    """Whether ``run_dir`` already holds a run (any checkpoint, good or not)."""
    return bool(checkpoints(run_dir))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any]) -> Path:
    """Write ``state`` as checkpoint ``step`` (atomically), point ``latest`` at it, drop the older ones."""
    root = Path(run_dir) / CHECKPOINTS
    final = root / checkpoint_name(step)
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    buffer = io.BytesIO()
    torch.save(state, buffer)
    try:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        _write_synced(tmp / STATE_FILE, buffer.getvalue())
        manifest = {"step": step, "epoch": state.get("epoch"), "files": {STATE_FILE: _sha256(tmp / STATE_FILE)},
                    "sizes": {STATE_FILE: (tmp / STATE_FILE).stat().st_size}}
        _write_synced(tmp / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode())
        _fsync_dir(tmp)
        if final.exists():  # a damaged or identical checkpoint of the same step: the older ones still stand
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_dir(root)
        atomic_write(root / LATEST, (final.name + "\n").encode())
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        kept = next((p.name for p in checkpoints(run_dir) if p != final), None)
        raise VitkitError(f"could not write checkpoint {final} ({_reason(error)}); "
                          f"{'the last good one, ' + kept + ', is intact' if kept else 'no earlier checkpoint exists'}"
                          "; free space or fix the folder, then --resume") from None
    for old in checkpoints(run_dir)[KEEP:]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _reason(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "disk full"
    return error.strerror or type(error).__name__


def verify(folder: Path) -> str | None:
    """Why the checkpoint in ``folder`` cannot be trusted, or None when every file matches its manifest."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = manifest["files"]
    except FileNotFoundError:
        return f"no {MANIFEST} (torn write)"
    except (ValueError, KeyError, TypeError, OSError):
        return f"unreadable {MANIFEST}"
    if not isinstance(files, dict) or STATE_FILE not in files:
        return f"{MANIFEST} lists no {STATE_FILE}"
    for name, digest in files.items():
        path = folder / str(name)
        if not path.is_file():
            return f"{name} is missing"
        if _sha256(path) != digest:
            return f"{name} does not match its sha256 (truncated or corrupt)"
    return None


def load_checkpoint(run_dir: Path, log: Callable[[str], None] = print,
                    set_aside: bool = True) -> tuple[dict[str, Any], Path]:
    """The newest checkpoint that verifies, and its folder; damaged ones are renamed ``*.damaged``
    (only by the process that ``set_aside``: in a distributed run, rank 0)."""
    found = checkpoints(run_dir)
    if not found:
        raise VitkitError(f"{run_dir} has no checkpoints: nothing to resume (train without --resume to start)")
    problems = []
    for folder in found:
        reason = verify(folder)
        if reason is None:
            try:
                state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
            except Exception as error:  # verified bytes that torch still refuses (e.g. another vitkit version)
                reason = f"{STATE_FILE} does not load ({type(error).__name__})"
            else:
                if problems:
                    log(f"warning: {'; '.join(problems)}; resuming from the previous good one, {folder.name}")
                return state, folder
        problems.append(f"checkpoint {folder} is damaged ({reason}), kept as {folder.name}.damaged")
        if set_aside:
            _set_aside(folder)
    raise VitkitError(f"no usable checkpoint in {Path(run_dir) / CHECKPOINTS}: {'; '.join(problems)}; "
                      "start again without --resume")


def _set_aside(folder: Path) -> None:
    try:
        os.replace(folder, folder.with_name(folder.name + ".damaged"))
    except OSError:
        pass  # read-only run folder: it is skipped again next time, which is fine
