"""``--device`` / ``device=``: where a model runs. ``auto`` is CUDA when there is a GPU, else Apple's MPS, else
the CPU; a device this machine does not have is one clear error naming the fix."""

from __future__ import annotations

import torch

from ..errors import VitkitError

DEVICE_HELP = "where the model runs: auto (CUDA if available, else MPS, else CPU), cpu, cuda, cuda:N or mps"


def resolve_device(name: str | torch.device = "auto", *, int8: bool = False) -> torch.device:
    """The device ``name`` stands for, checked on this machine. ``int8`` models run on the CPU only, so ``auto``
    then means the CPU and any other device is refused."""
    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cpu") if int8 else _best_available()
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise VitkitError(f"--device {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda":
        _check_cuda(device, str(name))
    if device.type == "mps" and not _mps_available():
        raise VitkitError(f"--device {name}: this machine (or this torch build) has no Apple MPS; "
                          "use --device cpu or auto")
    if int8 and device.type != "cpu":
        raise VitkitError("--int8 runs on CPU only; drop --int8 or use --device cpu")
    return device


def _best_available() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("mps" if _mps_available() else "cpu")


def _check_cuda(device: torch.device, name: str) -> None:
    if not torch.cuda.is_available():
        raise VitkitError(f"--device {name}: this machine (or this torch build) has no CUDA GPU; "
                          "use --device cpu or auto")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise VitkitError(f"--device {name}: this machine has {count} CUDA GPU{'s' * (count != 1)} "
                          f"(cuda:0..cuda:{count - 1}); use one of those or --device auto")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())
