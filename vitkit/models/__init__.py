"""Models: the ViT family (``vit.py``), its building blocks (``layers.py``), ViViT (``vivit.py``) and the name registry."""

from .config import ViTConfig
from .registry import build_model, create_model, get_config, get_spec, list_models, register
from .vit import VisionTransformer
from .vivit import VideoVisionTransformer
from .vivit_config import ViViTConfig

__all__ = [
    "ViTConfig", "ViViTConfig", "VideoVisionTransformer", "VisionTransformer", "build_model", "create_model",
    "get_config", "get_spec", "list_models", "register",
]
