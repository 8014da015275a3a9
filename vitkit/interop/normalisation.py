"""The input normalisation (per-channel mean and std) and evaluation crop fraction a checkpoint's weights expect,
read from the files that come with them:

- a vitkit model or run folder: ``config.json`` -> ``preprocess`` (what training used; crop = image_size / short_side;
  ``interpolation``);
- timm (a Hub snapshot, or ``timm.models.save_for_hf``): ``config.json`` -> ``pretrained_cfg`` (``mean``, ``std``,
  ``crop_pct``, ``interpolation``);
- transformers: ``preprocessor_config.json`` -> ``image_mean``, ``image_std`` and ``crop_pct`` where present (else,
  for a shortest-edge resize then center crop, crop_size / shortest_edge), and ``resample`` (Pillow's filter number).

Google's augreg ViTs, for example, expect mean = std = 0.5, not ImageNet's statistics; fine-tuning them with the
wrong ones shifts every input the pretrained weights see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.images import RESIZE_MODES
from ..data.pipeline import DEFAULT_CROP_PCT
from ..errors import VitkitError
from .files import read_sidecar
from .hub import download, is_hub_name

PREPROCESSOR_FILE = "preprocessor_config.json"
"""transformers' image processor settings, beside its ``config.json``."""

Triple = tuple[float, float, float]
PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
"""Pillow's resampling filter numbers, as transformers' ``resample`` writes them."""


@dataclass(frozen=True)
class Normalisation:
    """A per-channel mean and std, and where they were read (for the run's start line)."""

    mean: Triple
    std: Triple
    origin: str
    crop_pct: float | None = None
    """Evaluation: the shorter side is resized to image_size / crop_pct, then center-cropped (None: not recorded)."""
    interpolation: str | None = None
    """How that resize interpolates: ``bicubic`` or ``bilinear`` (None: not recorded; vitkit then uses bicubic)."""

    def preprocess(self, image_size: int, default_crop: float = DEFAULT_CROP_PCT) -> dict[str, Any]:
        """The ``preprocess`` entry of a vitkit folder (see ``data.pipeline.Preprocess``) for ``image_size``."""
        crop = self.crop_pct or default_crop
        return {"image_size": image_size, "short_side": round(image_size / crop), "mean": list(self.mean),
                "std": list(self.std), "interpolation": self.interpolation or "bicubic"}


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
        if "mean" not in prep:
            return None
        crop = prep["image_size"] / prep["short_side"] if "image_size" in prep and "short_side" in prep else None
        return _read(prep, "mean", "std", f"the vitkit config {where}", crop, prep.get("interpolation"))
    timm = config.get("pretrained_cfg")
    if isinstance(timm, dict) and "mean" in timm:
        return _read(timm, "mean", "std", f"timm's pretrained_cfg in {where}", timm.get("crop_pct"),
                     timm.get("interpolation"))
    processor = read_sidecar(folder, PREPROCESSOR_FILE) or {}
    if "image_mean" in processor:
        resample = processor.get("resample")
        return _read(processor, "image_mean", "image_std", f"transformers' {folder / PREPROCESSOR_FILE}",
                     _processor_crop(processor), PIL_FILTERS.get(resample, resample))
    return None


def _processor_crop(processor: dict[str, Any]) -> Any:
    """A transformers image processor's ``crop_pct``, else crop_size / shortest_edge when it resizes the shortest
    edge and then center-crops (BitImageProcessor, CLIPImageProcessor, what ``vitkit convert --to hf`` writes)."""
    if "crop_pct" in processor:
        return processor["crop_pct"]
    size, crop = processor.get("size"), processor.get("crop_size")
    if processor.get("do_center_crop") and isinstance(size, dict) and isinstance(crop, dict) \
            and "shortest_edge" in size and "height" in crop:
        return crop["height"] / size["shortest_edge"]
    return None


def _read(data: dict[str, Any], mean_key: str, std_key: str, origin: str, crop: Any = None,
          interpolation: Any = None) -> Normalisation:
    ok = crop is None or (isinstance(crop, (int, float)) and not isinstance(crop, bool) and 0 < crop <= 1)
    if not ok:
        raise VitkitError(f"{origin}: crop fraction {crop!r} is not a number in (0, 1]; fix the file or pass "
                          "--crop-pct")
    if interpolation is not None and interpolation not in RESIZE_MODES:
        raise VitkitError(f"{origin}: interpolation {interpolation!r} is not one vitkit resizes with "
                          f"({', '.join(RESIZE_MODES)}); fix the file or pass --interpolation")
    return Normalisation(_triple(data, mean_key, origin), _triple(data, std_key, origin, positive=True), origin,
                         None if crop is None else float(crop), interpolation)


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
