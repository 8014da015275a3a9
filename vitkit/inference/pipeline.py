"""``vitkit.pipeline``: a classifier that takes images (or videos) in any common form and answers the top
classes, batched; and ``vitkit.transforms``: a model's evaluation preprocessing on its own.

    >>> clf = vitkit.pipeline("runs/pets")
    >>> clf("cat.jpg")                       # [{"label": "cat", "score": 0.93}, {"label": "dog", "score": 0.07}]
    >>> clf(["a.jpg", pil_image, array])     # one such list per input

``vitkit predict`` is this pipeline's :meth:`Classifier.files` with a printer; its answers are the pipeline's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import torch

from ..errors import VitkitError
from .open import OpenedModel, default_preprocess, is_vitkit_folder, open_model
from .transforms import transform_of

Batch = tuple[list[str], torch.Tensor, list[tuple[str, str]]]
"""(names of the files used, their probabilities [n, classes], (file, reason) of those skipped)."""


class Classifier:
    """An opened model with its preprocessing: call it on one input or a list (see :func:`pipeline`)."""

    def __init__(self, opened: OpenedModel, top_k: int = 5, batch_size: int = 32,
                 views: tuple[int, int] = (2, 3)) -> None:
        if top_k < 1 or batch_size < 1:
            raise VitkitError(f"top_k and batch_size must be positive, got {top_k} and {batch_size}")
        self.opened, self.top_k, self.batch_size, self.views = opened, top_k, batch_size, views
        self.transform = transform_of(opened.preprocess, views)

    @property
    def model(self) -> torch.nn.Module:
        return self.opened.model

    @property
    def class_names(self) -> list[str]:
        return self.opened.class_names

    def __call__(self, inputs: Any, top_k: int | None = None) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        """Top classes of one input (a list of ``{"label", "score"}``), or of each input of a list (or of a batch
        tensor [B, 3, H, W] for an image model)."""
        if not self.opened.is_video and isinstance(inputs, torch.Tensor) and inputs.ndim == 4:
            inputs = list(inputs)
        single = not isinstance(inputs, (list, tuple))
        ranked = self.rank(self.probabilities([inputs] if single else list(inputs)), top_k or self.top_k)
        return ranked[0] if single else ranked

    @torch.inference_mode()
    def probabilities(self, inputs: list[Any]) -> torch.Tensor:
        """Class probabilities [len(inputs), classes] (fp32, CPU). A video's are averaged over its views."""
        rows = []
        if self.opened.is_video:
            for video in inputs:
                clips = self.transform(video)
                clips = clips if self.views else clips[None]
                rows.append(self._forward(clips).softmax(dim=-1).mean(dim=0, keepdim=True))
        else:
            for start in range(0, len(inputs), self.batch_size):
                rows.append(self._forward(self.transform(inputs[start:start + self.batch_size])).softmax(dim=-1))
        return torch.cat(rows) if rows else torch.empty(0, len(self.class_names))

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(batch.to(self.opened.device)).float().cpu()

    def files(self, paths: list[Path], workers: int | None = None, progress: bool = True) -> Iterator[Batch]:
        """Probabilities of image (or video) files one batch at a time, unreadable files skipped and listed: they
        are decoded in ``workers`` processes (default: the cores less one), so any number of files holds one
        batch in memory. ``progress``: a bar on stderr when it is a terminal."""
        from tqdm import tqdm

        from ..train.feed import resolve_workers
        from ..train.stream_tasks import predict_files
        from ..train.video_stream_tasks import predict_video_files

        unit = "video" if self.opened.is_video else "image"
        if self.opened.is_video:
            batches = predict_video_files(self.model, paths, self.opened.preprocess, resolve_workers(workers),
                                          self.views)
        else:
            batches = predict_files(self.model, paths, self.opened.preprocess, resolve_workers(workers),
                                    batch_size=self.batch_size)
        with tqdm(total=len(paths), unit=unit, leave=False, dynamic_ncols=True,
                  disable=None if progress else True) as bar:
            for names, logits, skipped in batches:
                bar.update(len(names) + len(skipped))
                yield names, logits.softmax(dim=-1), skipped

    def rank(self, probabilities: torch.Tensor, k: int | None = None) -> list[list[dict[str, Any]]]:
        """The ``k`` most probable classes of each row: ``[{"label": name, "score": probability}, ...]``."""
        values, indices = probabilities.topk(min(k or self.top_k, probabilities.shape[1]), dim=1)
        return [[{"label": self.class_names[i], "score": float(p)} for p, i in zip(v, idx)]
                for v, idx in zip(values.tolist(), indices.tolist())]

    def __repr__(self) -> str:
        return f"Classifier({self.opened.name}, {self.opened.kind}, {len(self.class_names)} classes, " \
               f"on {self.opened.device})"


def pipeline(source: str | os.PathLike | OpenedModel, device: str | torch.device = "auto", top_k: int = 5,
             batch_size: int = 32, *, views: tuple[int, int] = (2, 3), int8: bool = False,
             merge: int | list[int] = 0) -> Classifier:
    """A classifier for ``source`` (anything :func:`vitkit.open` opens, or what it returned): call it on image
    paths, Pillow images, numpy arrays [H, W, 3] or tensors [3, H, W] (video models: video paths or frames);
    ``views`` (clips x crops) are a video's views, averaged as ``vitkit predict --views`` does."""
    opened = source if isinstance(source, OpenedModel) else open_model(source, device, int8=int8, merge=merge)
    return Classifier(opened, top_k=top_k, batch_size=batch_size, views=views)


def transforms(source: str | os.PathLike | OpenedModel, views: tuple[int, int] | None = (2, 3)) -> Any:
    """The exact evaluation preprocessing of ``source`` as a callable: an image (path, Pillow, numpy, tensor)
    -> the normalised model input [3, S, S] (a list -> [B, 3, S, S]); for a video model, a video -> its
    ``views`` [V, 3, T, S, S] (``views=None``: the central clip [3, T, S, S]). Loads no weights when it need not."""
    return transform_of(preprocess_of_source(source), views)


def preprocess_of_source(source: str | os.PathLike | OpenedModel) -> Any:
    """The preprocessing :func:`vitkit.open` would give ``source``, without loading weights where the config is
    enough (a vitkit folder, a registered name)."""
    if isinstance(source, OpenedModel):
        return source.preprocess
    text = str(source)
    if is_vitkit_folder(Path(text)):
        from ..models.registry import config_class
        from ..store import read_config

        meta = read_config(text)
        try:
            config = config_class(meta["architecture"]).from_dict(meta["model"])
        except (KeyError, TypeError, ValueError) as error:
            raise VitkitError(f"{Path(text) / 'config.json'} does not describe a model ({error}); restore it") from None
        return default_preprocess(config, meta)
    from ..models import get_config, list_models

    if not Path(text).exists() and text in list_models():
        return default_preprocess(get_config(text), {})
    return open_model(text, "cpu").preprocess
