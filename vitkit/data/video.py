"""Video clips for ViViT: decoding with PyAV, choosing frames, the same spatial transform on every frame,
a cache of decoded videos, and several views per video for evaluation.

A clip is a float tensor [C, T, H, W] (what :class:`vitkit.models.vivit.VideoVisionTransformer` takes per sample).

- Decoding: ``.avi``, ``.mp4``, ``.mkv``, ``.webm`` (anything FFmpeg reads), every frame as RGB uint8, resized
  so that the shorter side is ``short_side`` (the cache then holds small frames). PyAV is imported lazily: it
  is only needed for video.
- Frames: ``uniform`` splits the video into T equal segments and takes one frame from each (the centre, or a
  random frame of the segment in training); ``strided`` takes T frames ``stride`` apart from a start that is
  random in training and central in evaluation.
- A video that cannot be opened, has no video frames, or is shorter than a clip needs is a :class:`BadVideo`;
  datasets skip it and report it, as they do bad images.
"""

from __future__ import annotations

import io
import math
import random
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import torch
import torch.nn.functional as F

from ..errors import VitkitError
from . import augment

VIDEO_EXTENSIONS = {".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v"}
Sampling = Literal["uniform", "strided"]


class BadVideo(Exception):
    """A video file that cannot be used; ``str()`` is the reason in a few words."""


def is_video_file(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS and not path.name.startswith(".")


def _av():
    try:
        import av
    except ImportError:
        raise VitkitError("reading video needs PyAV: run `pip install av` (or `pip install vitkit[video]`)") from None
    return av


def decode_video(path: str | Path | bytes, short_side: int | None = None,
                 max_frames: int | None = None) -> torch.Tensor:
    """The frames of a video (a file, or a file's bytes such as an upload) as uint8 [T, 3, H, W], resized so the
    shorter side is ``short_side`` (if given); with ``max_frames``, at most that many, evenly spaced (a smaller
    cache; clips then sample from these).

    Raises :class:`BadVideo` when the file is empty, unreadable, or has no decodable video frame.
    """
    frames = [_rgb(frame, size) for frame, size in _video_frames(path, short_side)]
    frames = [frames[i] for i in kept_frames(len(frames), max_frames)]
    return torch.stack(frames).permute(0, 3, 1, 2).contiguous()


def decode_frames(path: str | Path | bytes, short_side: int | None, max_frames: int | None,
                  pick: Callable[[int], Sequence[int]]) -> torch.Tensor:
    """``decode_video(path, short_side, max_frames)[pick(length)]`` (``length``: its frame count), equal to it bit
    for bit, but only the picked frames are converted and held: one pass counts the frames, a second converts
    the picked ones (decoding is cheap next to converting every frame to RGB). For clips decoded on demand."""
    kept = kept_frames(sum(1 for _ in _video_frames(path, short_side)), max_frames)
    wanted = [kept[i] for i in pick(len(kept))]
    if not wanted:
        raise ValueError("pick chose no frame")
    needed, last, got = set(wanted), max(wanted), {}
    for i, (frame, size) in enumerate(_video_frames(path, short_side)):
        if i in needed:
            got[i] = _rgb(frame, size)
        if i == last:
            break
    if len(got) < len(needed):
        raise BadVideo("the file changed while it was read (fewer frames the second time)")
    return torch.stack([got[i] for i in wanted]).permute(0, 3, 1, 2).contiguous()


def kept_frames(length: int, max_frames: int | None) -> list[int]:
    """The frames of a video of ``length`` that are kept with ``max_frames`` (all, or that many evenly spaced)."""
    if max_frames and length > max_frames:
        return [int((i + 0.5) * length / max_frames) for i in range(max_frames)]
    return list(range(length))


def _video_frames(path: str | Path | bytes, short_side: int | None) -> Iterator[tuple[Any, tuple[int, int] | None]]:
    """(PyAV frame, the size to convert it to) for each decoded frame in order; a damaged tail ends the video
    (the frames before it are kept, as players do). Raises :class:`BadVideo` when no frame decodes."""
    av = _av()
    if isinstance(path, bytes):
        source: str | io.BytesIO = io.BytesIO(path)
        empty = not path
    else:
        path = Path(path)
        if not path.is_file():
            raise BadVideo("file does not exist")
        source, empty = str(path), path.stat().st_size == 0
    if empty:
        raise BadVideo("empty file (0 bytes)")
    count = 0
    try:
        with av.open(source) as container:
            if not container.streams.video:
                raise BadVideo("no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            codec = stream.codec_context
            if codec is None:  # a truncated header: the stream is listed but its codec was never read
                raise BadVideo("the video stream has no codec (truncated or damaged header)")
            size = _target_size(codec.width, codec.height, short_side)
            for frame in container.decode(stream):
                count += 1
                yield frame, size
    except BadVideo:
        raise
    except (av.error.FFmpegError, OSError, ValueError) as error:  # type: ignore[attr-defined]
        if not count:
            raise BadVideo("not a video FFmpeg can read: " + str(error).splitlines()[0][:120]) from None
    if not count:
        raise BadVideo("no decodable video frames")


def _rgb(frame: Any, size: tuple[int, int] | None) -> torch.Tensor:
    """One decoded frame as uint8 [H, W, 3], resized to ``size`` (width, height) when given."""
    if size is not None:
        frame = frame.reformat(width=size[0], height=size[1])
    return torch.from_numpy(frame.to_ndarray(format="rgb24"))


def _target_size(width: int, height: int, short_side: int | None) -> tuple[int, int] | None:
    if not short_side or not width or not height:
        return None
    scale = short_side / min(width, height)
    # Even sizes: some pixel formats need them, and the cache stays predictable.
    return (max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2))


def min_frames(num_frames: int, sampling: Sampling, stride: int = 1) -> int:
    """The fewest frames a video needs for one clip."""
    return num_frames if sampling == "uniform" else (num_frames - 1) * stride + 1


def uniform_indices(length: int, num_frames: int, train: bool, rng: random.Random | None = None) -> list[int]:
    """One frame from each of ``num_frames`` equal segments: a random one in training, the centre otherwise."""
    _check_length(length, min_frames(num_frames, "uniform"))
    segment = length / num_frames
    if train:
        rng = rng or random.Random()
        return [min(length - 1, int(segment * i + rng.random() * segment)) for i in range(num_frames)]
    return [min(length - 1, int(segment * (i + 0.5))) for i in range(num_frames)]


def strided_indices(length: int, num_frames: int, stride: int, start: int) -> list[int]:
    """``num_frames`` frames ``stride`` apart from ``start``."""
    span = min_frames(num_frames, "strided", stride)
    _check_length(length, span)
    if not 0 <= start <= length - span:
        raise ValueError(f"start {start} leaves no room for {span} frames in a video of {length}")
    return list(range(start, start + span, stride))


def clip_starts(length: int, span: int, count: int) -> list[int]:
    """``count`` evenly spaced starts of a window of ``span`` frames, first and last at the ends (multi-view)."""
    _check_length(length, span)
    room = length - span
    if count == 1:
        return [room // 2]
    return [round(room * i / (count - 1)) for i in range(count)]


def _check_length(length: int, needed: int) -> None:
    if length < needed:
        raise BadVideo(f"too short: {length} frames, a clip needs {needed}")


@dataclass
class ClipSampler:
    """How to take a clip of ``num_frames`` frames from a decoded video, and how to shape it."""

    num_frames: int = 8
    sampling: Sampling = "uniform"
    stride: int = 2
    """Frames between samples, for ``strided``."""
    size: int = 112
    """Clips are ``size`` x ``size``."""
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.5, 0.5, 0.5)
    scale: tuple[float, float] = (0.6, 1.0)
    """Training crops cover this fraction of the shorter side."""
    flip: bool = True
    """Random horizontal flip in training (turn off when left and right matter, e.g. direction of motion)."""
    policy: str = "none"
    """Training appearance augmentation, as ``--augment``: ``trivial``, ``randaugment`` or ``none``."""
    randaugment: tuple[int, int] = (2, 9)
    """RandAugment's (operations, magnitude on 0..30)."""

    def indices(self, length: int, train: bool, rng: random.Random) -> list[int]:
        """The frames of one clip."""
        if self.sampling == "uniform":
            return uniform_indices(length, self.num_frames, train, rng)
        span = min_frames(self.num_frames, "strided", self.stride)
        _check_length(length, span)
        start = rng.randint(0, length - span) if train else (length - span) // 2
        return strided_indices(length, self.num_frames, self.stride, start)

    def clip(self, video: torch.Tensor, train: bool, rng: random.Random | None = None) -> torch.Tensor:
        """One clip [C, T, size, size] from a decoded video [L, 3, H, W] (random in training, central otherwise)."""
        rng = rng or random.Random()
        return self.shape(video[self.indices(len(video), train, rng)], train, rng)

    def shape(self, frames: torch.Tensor, train: bool, rng: random.Random) -> torch.Tensor:
        """The clip of the frames :meth:`indices` chose (drawn with ``rng`` just before): crop, flip, normalise."""
        box = random_box(frames.shape[-2:], self.scale, rng) if train else centre_box(frames.shape[-2:])
        flip = train and self.flip and rng.random() < 0.5
        policy_seed = rng.getrandbits(63) if train and self.policy != "none" else None
        return self.finish(frames, box, flip, policy_seed)

    def views(self, video: torch.Tensor, clips: int = 2, crops: int = 3) -> torch.Tensor:
        """``clips`` temporal x ``crops`` spatial views for evaluation: [clips * crops, C, T, size, size]."""
        return self.views_of([video[indices] for indices in self.view_indices(len(video), clips)], crops)

    def view_indices(self, length: int, clips: int) -> list[list[int]]:
        """The frames of each of the ``clips`` temporal views of a video of ``length`` frames."""
        if self.sampling == "uniform":
            # Shift the segment centres: view k takes the frame at (k + 1) / (clips + 1) of each segment.
            segment = length / self.num_frames
            _check_length(length, self.num_frames)
            return [[min(length - 1, int(segment * (i + (k + 1) / (clips + 1)))) for i in range(self.num_frames)]
                    for k in range(clips)]
        span = min_frames(self.num_frames, "strided", self.stride)
        return [strided_indices(length, self.num_frames, self.stride, s) for s in clip_starts(length, span, clips)]

    def views_of(self, temporal: list[torch.Tensor], crops: int) -> torch.Tensor:
        """``crops`` spatial views of each temporal view's frames: [len(temporal) * crops, C, T, size, size]."""
        return torch.stack([self.finish(frames, box, False) for frames in temporal
                            for box in spatial_boxes(frames.shape[-2:], crops)])

    def finish(self, frames: torch.Tensor, box: tuple[int, int, int, int], flip: bool,
               policy_seed: int | None = None) -> torch.Tensor:
        """Crop the same box from every frame, resize to ``size``, flip, augment (``policy_seed``: the policy's
        draw), normalise: [C, T, size, size]."""
        top, left, height, width = box
        x = frames[:, :, top : top + height, left : left + width].float().div_(255)
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        if flip:
            x = x.flip(-1)
        if policy_seed is not None:
            x = self.augment_alike(x, policy_seed)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return ((x - mean) / std).transpose(0, 1).contiguous()

    def augment_alike(self, frames: torch.Tensor, seed: int) -> torch.Tensor:
        """The policy's operations at the same strengths on every frame of [T, C, H, W] in 0..1 (one draw,
        replayed per frame, as VideoMAE's consistent RandAugment): appearance changes, the motion does not."""
        return torch.stack([augment.apply_policy(frame * 255, self.policy, torch.Generator().manual_seed(seed),
                                                 *self.randaugment) / 255 for frame in frames])


def centre_box(shape: tuple[int, int] | torch.Size) -> tuple[int, int, int, int]:
    """The largest central square: (top, left, height, width)."""
    height, width = shape
    side = min(height, width)
    return ((height - side) // 2, (width - side) // 2, side, side)


def spatial_boxes(shape: tuple[int, int] | torch.Size, count: int) -> list[tuple[int, int, int, int]]:
    """``count`` squares of the shorter side along the longer side (3: start, centre, end), as in the paper."""
    height, width = shape
    side = min(height, width)
    if count == 1:
        return [centre_box(shape)]
    offsets = [round((max(height, width) - side) * i / (count - 1)) for i in range(count)]
    if width >= height:
        return [(0, o, side, side) for o in offsets]
    return [(o, 0, side, side) for o in offsets]


def random_box(shape: tuple[int, int] | torch.Size, scale: tuple[float, float],
               rng: random.Random) -> tuple[int, int, int, int]:
    """A random square whose side is a random fraction ``scale`` of the shorter side."""
    height, width = shape
    side = max(1, int(min(height, width) * math.sqrt(rng.uniform(scale[0] ** 2, scale[1] ** 2))))
    return (rng.randint(0, height - side), rng.randint(0, width - side), side, side)


class DecodedCache:
    """Decoded videos kept in memory (least recently used first out) up to ``max_bytes``.

    Keys include the file's size and modification time, so an edited file is decoded again.
    """

    def __init__(self, max_bytes: int = 2 << 30) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, path: str | Path, short_side: int | None, max_frames: int | None = None) -> torch.Tensor:
        """The decoded video (see :func:`decode_video`), from the cache when possible."""
        path = Path(path)
        stat = path.stat() if path.exists() else None
        key = (str(path.resolve()), short_side, max_frames, stat.st_size if stat else -1,
               stat.st_mtime_ns if stat else -1)
        if key in self._items:
            self.hits += 1
            self._items.move_to_end(key)
            return self._items[key]
        self.misses += 1
        video = decode_video(path, short_side, max_frames)
        size = video.numel() * video.element_size()
        if size <= self.max_bytes:
            self._items[key] = video
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.numel() * old.element_size()
        return video

    @property
    def bytes(self) -> int:
        return self._bytes

