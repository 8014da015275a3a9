"""vitkit's own model format: a folder with ``config.json`` and ``model.safetensors`` (Hugging Face style).

``config.json`` holds the architecture and its config, the class names, and how inputs were preprocessed, so
a folder is enough to rebuild, run and fine-tune the model. Every file is written atomically (temporary file,
fsync, rename): a crash mid-save leaves the previous file intact, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

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
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a partial one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


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


def state_dict_bytes(model: nn.Module) -> bytes:
    """The model's weights as safetensors bytes (contiguous CPU copies; shared tensors are not deduplicated)."""
    return save_safetensors_bytes({k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()})


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
