"""The input normalisation (per-channel mean and std) a checkpoint's weights expect, read from the files that
come with them:

- a vitkit model or run folder: ``config.json`` -> ``preprocess`` (what training used);
- timm (a Hub snapshot, or ``timm.models.save_for_hf``): ``config.json`` -> ``pretrained_cfg`` (``mean``, ``std``);
- transformers: ``preprocessor_config.json`` -> ``image_mean``, ``image_std``.

Google's augreg ViTs, for example, expect mean = std = 0.5, not ImageNet's statistics; fine-tuning them with the
wrong ones shifts every input the pretrained weights see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import VitkitError
from .files import read_sidecar
from .hub import download, is_hub_name

PREPROCESSOR_FILE = "preprocessor_config.json"
"""transformers' image processor settings, beside its ``config.json``."""

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class Normalisation:
    """A per-channel mean and std, and where they were read (for the run's start line)."""

    mean: Triple
    std: Triple
    origin: str


def checkpoint_normalisation(source: str) -> Normalisation | None:
    """The normalisation recorded with ``source`` (what ``vitkit.load`` accepts: a folder, a weights file, or
    ``timm:NAME`` / ``hf:ORG/NAME``), or None when its files record none."""
    if is_hub_name(source):
        folder = download(source).parent  # the snapshot folder; huggingface_hub caches the files
    else:
        path = Path(source)
        if not path.exists():
            raise VitkitError(f"{path} does not exist (a hub model is written timm:NAME or hf:ORG/NAME)")
        folder = path if path.is_dir() else path.parent
    config = read_sidecar(folder) or {}
    where = folder / "config.json"
    if config.get("format") == "vitkit":
        prep = config.get("preprocess") or {}
        return _read(prep, "mean", "std", f"the vitkit config {where}") if "mean" in prep else None
    timm = config.get("pretrained_cfg")
    if isinstance(timm, dict) and "mean" in timm:
        return _read(timm, "mean", "std", f"timm's pretrained_cfg in {where}")
    processor = read_sidecar(folder, PREPROCESSOR_FILE) or {}
    if "image_mean" in processor:
        return _read(processor, "image_mean", "image_std", f"transformers' {folder / PREPROCESSOR_FILE}")
    return None


def _read(data: dict[str, Any], mean_key: str, std_key: str, origin: str) -> Normalisation:
    return Normalisation(_triple(data, mean_key, origin), _triple(data, std_key, origin, positive=True), origin)


def _triple(data: dict[str, Any], key: str, origin: str, positive: bool = False) -> Triple:
    """Three channel values (one value stands for all three, as some single-channel configs write it)."""
    value = data.get(key)
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    ok = (len(values) in (1, 3) and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                                        and (v > 0 or not positive) for v in values))
    if not ok:
        flag = "--std" if key.endswith("std") else "--mean"
        raise VitkitError(f"{origin}: {key} {value!r} is not 3 finite{' positive' if positive else ''} numbers; "
                          f"fix the file or pass {flag} R G B")
    return tuple(float(v) for v in values * (3 // len(values)))  # type: ignore[return-value]
