"""A video model's clip settings: how ``vitkit train --task video`` saved them in config.json, and the
``VideoPreprocess`` that eval, predict, explain and ``vitkit.open`` cut clips with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def video_preprocess(sampler: Any, short_side: int) -> dict[str, Any]:
    """What eval / predict need to cut clips as training did; saved in the run's config.json."""
    return {"task": "video", "image_size": sampler.size, "short_side": short_side, "num_frames": sampler.num_frames,
            "sampling": sampler.sampling, "stride": sampler.stride, "mean": list(sampler.mean),
            "std": list(sampler.std)}


@dataclass(frozen=True)
class VideoPreprocess:
    """The clip settings of a trained video model (see :func:`video_preprocess`), for eval and predict."""

    sampler: Any
    short_side: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VideoPreprocess":
        from ..data.video import ClipSampler

        sampler = ClipSampler(int(data["num_frames"]), data.get("sampling", "uniform"), int(data.get("stride", 2)),
                              int(data["image_size"]), tuple(data["mean"]), tuple(data["std"]), flip=False)
        return cls(sampler, int(data["short_side"]))

    def eval_set(self, data: str, class_names: list[str] | None = None) -> Any:
        """The labelled videos to evaluate on: ``moving-digits``' val clips, ``data/val``, or ``data/<class>/*``.
        With ``class_names`` (the model's), a folder with other classes is refused before any video is decoded."""
        from ..data import moving_digits
        from ..data.video_folder import VideoFolder

        if data == moving_digits.NAME:
            return moving_digits.MovingDigits("val", self.sampler.num_frames, self.sampler.size)
        names, paths, labels = self.labelled(data, class_names)
        return VideoFolder(paths, labels, names, self.sampler, train=False, short_side=self.short_side)

    def labelled(self, data: str, class_names: list[str] | None = None) -> tuple[list[str], list[Any], list[int]]:
        """(class names, paths, labels) of ``data/val`` or ``data/<class>/*``; with ``class_names`` (the model's),
        other classes are refused before any video is decoded."""
        from pathlib import Path

        from ..data.folders import VAL_NAMES
        from ..data.video_folder import labelled_videos

        root = Path(data)
        root = next((root / n for n in VAL_NAMES if (root / n).is_dir()), root)
        names, paths, labels = labelled_videos(root)
        if class_names is not None and names != list(class_names):
            from ..errors import VitkitError

            raise VitkitError(f"{data} has classes {names} but the model was trained on {list(class_names)}")
        return names, paths, labels

    def files(self, paths: list[Any], class_names: list[str]) -> Any:
        """Unlabelled video files as a clip set (unusable ones are skipped and listed)."""
        from ..data.video_folder import VideoFolder

        return VideoFolder(paths, [0] * len(paths), class_names, self.sampler, train=False, short_side=self.short_side)
