"""vitkit's own model format: a folder with ``config.json`` and ``model.safetensors`` (Hugging Face style).

``config.json`` holds the architecture and its config, the class names, and how inputs were preprocessed, so
a folder is enough to rebuild, run and fine-tune the model. Every file is written atomically (temporary file,
fsync, rename): a crash mid-save leaves the previous file intact, never a torn one.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from ._version import __version__
from .errors import VitkitError
from .models.registry import build_model, config_class

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a partial one.

    The file gets the permissions ``open()`` would give it: an existing file keeps its mode, a new one gets
    0666 less the umask (``tempfile.mkstemp`` would make every file 0600, unreadable to anyone else).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as f:
            with contextlib.suppress(FileNotFoundError):
                os.fchmod(f.fileno(), stat.S_IMODE(path.stat().st_mode))
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _create_temporary(path: Path) -> tuple[int, Path]:
    """A new, exclusively created file next to ``path``; the kernel applies the umask to its mode 0666."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file next to {path}")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


def state_dict_bytes(weights: nn.Module | Mapping[str, torch.Tensor]) -> bytes:
    """A model's weights (or a state dict) as safetensors bytes (contiguous CPU copies; shared tensors are not
    deduplicated)."""
    state = weights.state_dict() if isinstance(weights, nn.Module) else weights
    return save_safetensors_bytes({k: v.detach().to("cpu").contiguous() for k, v in state.items()})


def save_model(folder: str | os.PathLike, model: nn.Module, *, weights_file: str = WEIGHTS_FILE,
               **metadata: Any) -> Path:
    """Save ``model`` (a vitkit model with ``.config``) to ``folder``; ``metadata`` goes into config.json
    (e.g. ``class_names=[...]``, ``preprocess={...}``)."""
    folder = Path(folder)
    atomic_write(folder / weights_file, state_dict_bytes(model))
    atomic_write_json(folder / CONFIG_FILE, model_config_json(model, **metadata))
    return folder


def model_config_json(model: nn.Module, **metadata: Any) -> dict[str, Any]:
    """The ``config.json`` content describing ``model``."""
    return {"format": "vitkit", "vitkit_version": __version__, "architecture": type(model).__name__,
            "model": model.config.to_dict(), **metadata}


def read_config(folder: str | os.PathLike) -> dict[str, Any]:
    """Read and check a vitkit ``config.json``."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise VitkitError(f"{folder} is not a vitkit model folder: {CONFIG_FILE} is missing")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise VitkitError(f"{path} is not valid JSON ({error}); restore it or retrain") from None
    if not isinstance(data, dict) or data.get("format") != "vitkit" or "model" not in data:
        raise VitkitError(f"{path} is not a vitkit config (no 'format': 'vitkit'); use `vitkit convert` for others")
    return data


def load_model(folder: str | os.PathLike, *, weights_file: str = WEIGHTS_FILE,
               device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model saved in ``folder``; returns ``(model, config_json)``. The model is in eval mode."""
    meta = read_config(folder)
    try:
        config = config_class(meta["architecture"]).from_dict(meta["model"])
        model = build_model(config)
    except VitkitError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError, MemoryError) as error:
        # A hand-edited or damaged config.json: name the file, not the line of vitkit that choked on it.
        raise VitkitError(f"{Path(folder) / CONFIG_FILE} does not describe a model vitkit can build "
                          f"({type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}); "
                          "restore it or retrain") from None
    weights = Path(folder) / weights_file
    try:
        model.load_state_dict(read_weights(weights), strict=True)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        raise VitkitError(f"{weights} does not fit the model in {CONFIG_FILE} ({lines[-1][:120] if lines else ''}); "
                          "it belongs to another model") from None
    return model.to(device).eval(), meta


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file, with a one-line error for a missing, empty or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise VitkitError(f"{path} does not exist")
    try:
        return load_safetensors_bytes(path.read_bytes())
    except (SafetensorError, ValueError, OSError) as error:
        raise VitkitError(f"{path} is not a readable safetensors file ({error}); it may be truncated") from None
