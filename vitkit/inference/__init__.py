"""Using a model: open it from any source (``open.py``), on a checked device (``device.py``), with its
evaluation preprocessing as a callable (``transforms.py``) and a batched classifier on top (``pipeline.py``)."""

from .device import DEVICE_HELP, resolve_device
from .open import OpenedModel, default_preprocess, open_model
from .pipeline import Classifier, pipeline, transforms
from .transforms import ImageTransform, VideoTransform

__all__ = ["DEVICE_HELP", "Classifier", "ImageTransform", "OpenedModel", "VideoTransform", "default_preprocess",
           "open_model", "pipeline", "resolve_device", "transforms"]
