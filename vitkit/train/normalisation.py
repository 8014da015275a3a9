"""The run's input normalisation, eval crop and resize: ``--mean`` / ``--std`` / ``--crop-pct`` /
``--interpolation`` when given, else the ``--init`` checkpoint's (its config.json / pretrained_cfg /
preprocessor_config.json, see interop/normalisation.py), else ImageNet's (crop 0.875, bicubic). The resolved values
are saved in the run's config.json (``train`` and ``preprocess``), so eval, predict, serve and a resumed run use
the same."""

from __future__ import annotations

from ..data.pipeline import DEFAULT_CROP_PCT
from .config import IMAGENET_MEAN, IMAGENET_STD, TrainConfig


def resolve_normalisation(config: TrainConfig, resumed: bool = False) -> tuple[TrainConfig, str]:
    """``config`` with ``mean``, ``std``, ``crop_pct`` and ``interpolation`` filled in, and the start line saying
    which values and where from (the crop and the resize only when the checkpoint gave them)."""
    given = "saved with the run" if resumed else "given (--mean/--std, or the embedded dataset's recipe)"
    found = None
    if config.init and None in (config.mean, config.std, config.crop_pct, config.interpolation):
        from ..interop.normalisation import checkpoint_normalisation  # lazy: the interop layer is optional here

        found = checkpoint_normalisation(config.init)
    crop_line = ""
    if config.crop_pct is None:
        from_checkpoint = found is not None and found.crop_pct is not None
        config = config.replace(crop_pct=found.crop_pct if from_checkpoint else DEFAULT_CROP_PCT)  # type: ignore[union-attr]
        if from_checkpoint:
            crop_line = f"; eval crop {config.crop_pct:g} from the checkpoint ({found.origin})"  # type: ignore[union-attr]
    if config.interpolation is None:
        recorded = found.interpolation if found is not None else None
        config = config.replace(interpolation=recorded or "bicubic")
        if recorded:
            crop_line += f"; resize {recorded} from the checkpoint ({found.origin})"  # type: ignore[union-attr]
    if config.mean is not None and config.std is not None:
        return config, f"normalisation {_values(config.mean, config.std)}, {given}{crop_line}"
    if found is not None:
        default_mean, default_std, origin = found.mean, found.std, f"from the checkpoint ({found.origin})"
    else:
        default_mean, default_std = IMAGENET_MEAN, IMAGENET_STD
        origin = "ImageNet's, the default" + (f" ({config.init} records none)" if config.init else "")
    resolved = config.replace(mean=config.mean or default_mean, std=config.std or default_std)
    if config.mean is None and config.std is None:
        return resolved, f"normalisation {_values(resolved.mean, resolved.std)} {origin}{crop_line}"
    mean_from, std_from = ("given", origin) if config.mean is not None else (origin, "given")
    return resolved, (f"normalisation mean={_text(resolved.mean)} {mean_from}, std={_text(resolved.std)} {std_from}"
                      f"{crop_line}")


def _values(mean: tuple[float, ...], std: tuple[float, ...]) -> str:
    """``mean=std=0.5`` or ``mean=0.485,0.456,0.406 std=0.229,0.224,0.225``."""
    return f"mean=std={_text(mean)}" if mean == std else f"mean={_text(mean)} std={_text(std)}"


def _text(values: tuple[float, ...]) -> str:
    return f"{values[0]:g}" if len(set(values)) == 1 else ",".join(f"{v:g}" for v in values)
