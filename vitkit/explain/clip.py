"""One video file -> a video model's input clip, and the exact frames the model saw (to draw heat maps on).

The same steps as ``vitkit eval`` and ``vitkit predict --views 1x1``: decode with the shorter side at
``short_side`` (at most ``MAX_FRAMES`` evenly spaced frames, as their video sets keep), take the central clip of
``num_frames`` frames (``uniform`` or ``strided`` sampling) and its centre square, normalise with the model's
mean and std.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from ..data.video import BadVideo, ClipSampler, decode_video, min_frames
from ..data.video_folder import MAX_FRAMES
from ..data.video_preprocess import VideoPreprocess
from ..errors import VitkitError


def load_clip(path: str | Path, prep: VideoPreprocess) -> tuple[np.ndarray, torch.Tensor]:
    """Decode ``path`` and cut the model's view of it: the frames uint8 [T, S, S, 3] and the normalised batch
    of one [1, 3, T, S, S]."""
    path = Path(path)
    sampler: ClipSampler = prep.sampler
    if not path.is_file():
        raise VitkitError(f"{path} does not exist; pass a video file (.mp4, .avi, ...)")
    try:
        video = decode_video(path, prep.short_side, MAX_FRAMES)
        pixels = dataclasses.replace(sampler, mean=(0.0,) * 3, std=(1.0,) * 3).clip(video, False)  # [3, T, S, S]
    except BadVideo as error:
        needed = min_frames(sampler.num_frames, sampler.sampling, sampler.stride)
        raise VitkitError(f"{path} is not a usable video ({error}); this model needs a video file (.mp4, .avi, "
                          f"...) of at least {needed} frames") from None
    # ``pixels`` is the clip before normalisation (to draw on); normalised exactly as ClipSampler.finish does.
    mean = torch.tensor(sampler.mean).view(-1, 1, 1, 1)
    std = torch.tensor(sampler.std).view(-1, 1, 1, 1)
    frames = pixels.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 3, 0).contiguous().numpy()
    return frames, ((pixels - mean) / std)[None]
