"""The model behind ``vitkit serve``: load it once, turn uploaded bytes into model inputs, run batches, answer.

This is the only module of the server that knows how vitkit loads, preprocesses and runs a model; the HTTP
side (``app.py``) and the batcher (``batcher.py``) see bytes in and JSON-ready dicts out. Every step is the
one ``vitkit predict`` takes, so the server's answers are ``predict``'s:

- images: vitkit's decoder (``data.decode``: full decode, EXIF orientation, any mode to RGB), the shorter side
  fitted to the model's ``short_side``, the center crop and normalisation of ``data.pipeline.eval_batch``;
- videos: vitkit's video decoder, and the ``--views`` multi-view clips of ``vitkit predict`` (default 2x3),
  whose softmax is averaged;
- bad files get the reason ``predict`` prints when it skips them; ``explain`` draws the attention rollout of
  ``vitkit.explain`` over the crop (or the central clip) the model saw.

Three methods run in three places: :meth:`Engine.prepare` on the decode threads, :meth:`Engine.process` on
the model's thread (one batch of prepared uploads), :meth:`Engine.answer` on the decode threads again.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.augment import center_crop
from ..data.decode import IMAGE_EXTENSIONS, BadImage
from ..data.images import load_for_model
from ..data.pipeline import Preprocess, eval_batch
from ..data.video import VIDEO_EXTENSIONS, BadVideo, decode_video
from ..data.video_folder import MAX_FRAMES
from ..explain.maps import explain
from ..explain.overlay import enlarge, normalise, overlay
from ..explain.video_figures import blend
from ..train.evaluate import top_k

MAX_VIDEO_FRAMES = 3600
"""Longest video accepted (frames): every frame is decoded before a clip is cut, so length costs memory."""


class InputError(Exception):
    """An upload the model cannot use: ``status`` is the HTTP status (400, 413, 415), ``str()`` the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass
class Prepared:
    """One upload, decoded: what the model runs and what the answer draws on."""

    name: str
    inputs: torch.Tensor
    """[n, ...]: one image, or a video's views (averaged into one answer)."""
    seen: np.ndarray | None = None
    """With explain: the crop uint8 [H, W, 3] (or the central clip's frames [T, S, S, 3]) the model saw."""
    explain_input: torch.Tensor | None = None
    """With explain: the batch of one to explain (the image, or the central clip)."""


@dataclass
class Output:
    """What the model thread returns for one upload."""

    logits: torch.Tensor
    """[classes]: the image's logits, or the log of a video's view-averaged probabilities (as ``predict``)."""
    heat: np.ndarray | None = None
    """With explain: the rollout map [grid_h, grid_w] (video: [T', grid_h, grid_w])."""


class Engine:
    """A loaded model and its preprocessing; ``source`` is anything ``vitkit.open`` opens (a run, a model folder,
    a checkpoint ``vitkit.load`` reads)."""

    def __init__(self, source: str, *, int8: bool = False, views: tuple[int, int] = (2, 3),
                 device: str = "auto") -> None:
        from ..inference import open_model

        opened = open_model(source, device, int8=int8)
        self.model, self.prep, self.class_names, self.name = opened.model, opened.preprocess, opened.class_names, \
            opened.name
        self.device, self.kind = opened.device, opened.kind
        self.views, self.int8 = views, int8

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/model`` answers: name, task, classes, input size and preprocessing."""
        config = self.model.config
        info: dict[str, Any] = {"name": self.name, "task": self.kind, "classes": self.class_names,
                                "architecture": type(self.model).__name__, "int8": self.int8,
                                "device": str(self.device)}
        if self.kind == "video":
            sampler = self.prep.sampler
            info["input_size"] = [sampler.num_frames, sampler.size, sampler.size]
            info["preprocess"] = {"short_side": self.prep.short_side, "num_frames": sampler.num_frames,
                                  "sampling": sampler.sampling, "stride": sampler.stride, "image_size": sampler.size,
                                  "mean": list(sampler.mean), "std": list(sampler.std),
                                  "views": f"{self.views[0]}x{self.views[1]}"}
            info["accepts"] = sorted(VIDEO_EXTENSIONS)
        else:
            info["input_size"] = list(config.image_size)
            info["preprocess"] = {**self.prep.to_dict(), "mean": list(self.prep.mean), "std": list(self.prep.std)}
            info["accepts"] = sorted(IMAGE_EXTENSIONS)
        return info

    # --- decode threads ---------------------------------------------------------------------------------------

    def prepare(self, data: bytes, name: str, content_type: str | None = None, explain: bool = False,
                max_pixels: int = 40_000_000) -> Prepared:
        """Decode one upload into model inputs; raises :class:`InputError` (400, 413 or 415) for unusable ones,
        413 for an image (or video frame) whose header claims more than ``max_pixels`` pixels."""
        kind = upload_kind(data, name, content_type)
        if kind is None:
            accepts = "a video (.mp4, .avi, ...)" if self.kind == "video" else "an image (.jpg, .png, ...)"
            raise InputError(415, f"unsupported file type{_declared(name, content_type)}; send {accepts}")
        if kind != self.kind:
            raise InputError(415, f"this model classifies {self.kind}s, but this upload is {_a(kind)}")
        if kind == "video":
            return self._prepare_video(data, name, explain, max_pixels)
        return self._prepare_image(data, name, explain, max_pixels)

    def _prepare_image(self, data: bytes, name: str, explain: bool, max_pixels: int) -> Prepared:
        prep: Preprocess = self.prep
        _check_pixels(data, max_pixels)
        try:
            image = load_for_model(data, prep.short_side, prep.interpolation)
        except BadImage as error:
            raise InputError(400, str(error)) from None
        inputs = eval_batch([image], prep)
        if not explain:
            return Prepared(name, inputs)
        # The crop drawn under the map, as ``vitkit explain`` cuts it (float: a tiny image is resized up).
        crop = center_crop(image.float(), prep.image_size).round().clamp(0, 255).to(torch.uint8)
        return Prepared(name, inputs, crop.permute(1, 2, 0).contiguous().numpy(), inputs)

    def _prepare_video(self, data: bytes, name: str, explain: bool, max_pixels: int) -> Prepared:
        sampler = self.prep.sampler
        _check_video(data, max_pixels)
        try:
            video = decode_video(data, self.prep.short_side, MAX_FRAMES)
            inputs = sampler.views(video, *self.views)
            if not explain:
                return Prepared(name, inputs)
            clip = sampler.clip(video, False)[None]
            pixels = dataclasses.replace(sampler, mean=(0.0,) * 3, std=(1.0,) * 3).clip(video, False)
        except BadVideo as error:
            raise InputError(400, str(error)) from None
        frames = pixels.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0).contiguous().numpy()
        return Prepared(name, inputs, frames, clip)

    # --- the model thread -------------------------------------------------------------------------------------

    def process(self, batch: list[Prepared]) -> list[Output]:
        """One model call for a whole batch (plus one rollout pass for the uploads that asked for a map)."""
        with torch.inference_mode():
            logits = self.model(torch.cat([item.inputs for item in batch]).to(self.device)).float().cpu()
        rows = logits.split([len(item.inputs) for item in batch])
        if self.kind == "video":  # predict's multi-view rule: average the views' probabilities
            rows = [row.softmax(dim=-1).mean(dim=0).clamp_min(1e-12).log()[None] for row in rows]
        outputs = [Output(row[0]) for row in rows]
        wanted = [i for i, item in enumerate(batch) if item.explain_input is not None]
        if wanted:
            result = explain(self.model, torch.cat([batch[i].explain_input for i in wanted]).to(self.device), "rollout")
            for i, heat in zip(wanted, result.heat[:, 0].cpu().numpy()):
                outputs[i].heat = heat
        return outputs

    # --- decode threads again ---------------------------------------------------------------------------------

    def answer(self, item: Prepared, output: Output, k: int) -> dict[str, Any]:
        """The JSON of one upload: its top-``k`` classes and, with explain, the crop and the overlay as PNGs."""
        ranked = top_k(output.logits[None], self.class_names, k)[0]
        result: dict[str, Any] = {"file": item.name,
                                  "predictions": [{"class": c, "probability": p} for c, p in ranked]}
        if output.heat is not None and item.seen is not None:
            if self.kind == "video":
                seen, drawn = _video_strips(item.seen, output.heat)
            else:
                seen = enlarge(item.seen)
                drawn = overlay(seen, output.heat)
            result["image"], result["overlay"] = png_data_url(seen), png_data_url(drawn)
        return result


def upload_kind(data: bytes, name: str, content_type: str | None) -> str | None:
    """``image``, ``video`` or None (unsupported): by the file name's extension, else the declared content
    type, else the bytes themselves."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared.startswith(("image/", "video/")):
        return declared.split("/")[0]
    if data[4:8] == b"ftyp" or data[:4] == b"\x1aE\xdf\xa3" or (data[:4] == b"RIFF" and data[8:12] == b"AVI "):
        return "video"  # MP4 / MOV, Matroska / WebM, AVI
    try:
        with Image.open(io.BytesIO(data)):
            return "image"
    except Exception:  # noqa: BLE001 - anything Pillow cannot identify is not an image
        return None


def png_data_url(pixels: np.ndarray) -> str:
    """uint8 [H, W, 3] -> ``data:image/png;base64,...``."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=False, compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _video_strips(frames: np.ndarray, heat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The clip's frames side by side, and the same under the rollout of each frame's temporal token (one
    scale for the whole clip, as ``vitkit explain``'s GIF)."""
    tubelet = max(1, len(frames) // len(heat))
    scaled = normalise(heat)
    seen = [enlarge(frame, 112) for frame in frames]
    drawn = [blend(frame, scaled[min(i // tubelet, len(heat) - 1)]) for i, frame in enumerate(seen)]
    return np.concatenate(seen, axis=1), np.concatenate(drawn, axis=1)


def _check_pixels(data: bytes, limit: int) -> None:
    """413 before decoding when the image's header claims more than ``limit`` pixels (a decompression bomb)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError:  # Pillow's own guard, far above any --max-pixels
        raise InputError(413, f"too many pixels: over this server's limit of {limit:,} (--max-pixels)") from None
    except Exception:  # noqa: BLE001 - unreadable headers are reported by the decoder itself, with its reason
        return
    if width * height > limit:
        raise InputError(413, f"too many pixels: {width}x{height} is over this server's limit of {limit:,} "
                              "(--max-pixels)")


def _check_video(data: bytes, pixel_limit: int) -> None:
    """413 when a video's header claims frames over ``pixel_limit`` pixels or more than MAX_VIDEO_FRAMES frames."""
    try:
        import av

        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            frames = stream.frames or int((stream.duration or 0) * (stream.time_base or 0) * (stream.average_rate or 0))
    except Exception:  # noqa: BLE001 - unreadable videos are reported by the decoder itself, with its reason
        return
    if width * height > pixel_limit:
        raise InputError(413, f"too many pixels per frame: {width}x{height} is over this server's limit of "
                              f"{pixel_limit:,} (--max-pixels)")
    if frames > MAX_VIDEO_FRAMES:
        raise InputError(413, f"video too long: {frames} frames, this server takes at most {MAX_VIDEO_FRAMES}")


def _declared(name: str, content_type: str | None) -> str:
    parts = [PurePosixPath(name).suffix or None, content_type or None]
    shown = ", ".join(p for p in parts if p)
    return f" ({shown})" if shown else ""


def _a(kind: str) -> str:
    return "an image" if kind == "image" else "a video"
