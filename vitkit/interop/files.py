"""Reading checkpoint files safely: ``.safetensors``, PyTorch pickles (``.pth``/``.pt``/``.bin``) and ``.npz``.

Pickles are loaded with ``weights_only=True``: only tensors and plain containers, never code. A pickle that
needs a class to rebuild (a whole ``nn.Module``, an ``argparse.Namespace``) is refused with the reason, since
unpickling it could run anything.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from ..errors import VitkitError

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
SUFFIXES = (".safetensors", *PICKLE_SUFFIXES, ".npz")
# Where training scripts nest the weights inside a checkpoint dict (timm, DeiT, Lightning, plain loops).
_NESTED = ("state_dict", "model", "model_state_dict", "module", "model_ema", "state_dict_ema")


@dataclass
class Checkpoint:
    """The arrays of a checkpoint file, its safetensors header metadata, and the ``config.json`` beside it."""

    path: Path
    arrays: dict[str, Any]
    """Tensors (numpy arrays for ``.npz``)."""
    metadata: dict[str, str] = field(default_factory=dict)
    sidecar: dict[str, Any] | None = None


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint file, with a one-line error for a missing, corrupt, truncated or unsafe one."""
    path = Path(path)
    if not path.is_file():
        raise VitkitError(f"{path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        arrays, metadata = _read_safetensors(path)
    elif suffix in PICKLE_SUFFIXES:
        arrays, metadata = _read_pickle(path), {}
    elif suffix == ".npz":
        arrays, metadata = _read_npz(path), {}
    else:
        raise VitkitError(f"{path}: unknown checkpoint type {suffix!r}; expected one of {', '.join(SUFFIXES)}")
    if not arrays:
        raise VitkitError(f"{path} holds no weights")
    return Checkpoint(path, arrays, metadata, read_sidecar(path.parent))


def read_sidecar(folder: Path, name: str = "config.json") -> dict[str, Any] | None:
    """The JSON object file ``name`` in ``folder`` (the ``config.json`` of a Hub snapshot or a vitkit model
    folder, transformers' ``preprocessor_config.json``), or None."""
    config = folder / name
    if not config.is_file():
        return None
    try:
        data = json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise VitkitError(f"{config} is not valid JSON ({error}); fix or remove it") from None
    return data if isinstance(data, dict) else None


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: f.get_tensor(key) for key in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, ValueError, OSError, RuntimeError) as error:
        raise _unreadable(path, "safetensors file", error) from None


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        culprit = re.search(r"GLOBAL ([\w.]+)", str(error))
        needs = f"the Python class {culprit[1]}" if culprit else "Python code"
        raise VitkitError(
            f"{path} is a pickle that needs {needs} to load, and unpickling can run arbitrary code, so vitkit "
            "refuses it; if you trust it, re-save only the weights: torch.save(model.state_dict(), 'weights.pth')"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError, zipfile.BadZipFile) as error:
        raise _unreadable(path, "PyTorch checkpoint", error) from None
    return _state_dict_in(data, path)


def _state_dict_in(data: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a (possibly nested, possibly DistributedDataParallel-prefixed) state dict."""
    if isinstance(data, dict):
        for key in _NESTED:
            if isinstance(data.get(key), dict) and any(torch.is_tensor(v) for v in data[key].values()):
                data = data[key]
                break
    if not isinstance(data, dict) or not any(torch.is_tensor(v) for v in data.values()):
        raise VitkitError(f"{path} holds no state dict (a dict of tensors); found {type(data).__name__}")
    tensors = {str(k): v for k, v in data.items() if torch.is_tensor(v)}
    if all(key.startswith("module.") for key in tensors):
        tensors = {key[len("module."):]: value for key, value in tensors.items()}
    return tensors


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise VitkitError(f"{path} holds pickled Python objects, which vitkit refuses: they can run code") from None
        raise _unreadable(path, ".npz file", error) from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise _unreadable(path, ".npz file", error) from None


def _unreadable(path: Path, kind: str, error: BaseException) -> VitkitError:
    return VitkitError(f"{path} is not a readable {kind} ({_first_line(error)}); it may be truncated or corrupt")


def _first_line(error: BaseException) -> str:
    """The first sentence of an error message (library messages run over several lines)."""
    text = str(error).strip().splitlines()
    return text[0].split(". ")[0][:200] if text else type(error).__name__
