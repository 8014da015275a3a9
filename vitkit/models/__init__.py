"""Models: the ViT family (``vit.py``), its building blocks (``layers.py``) and the name registry."""

from .config import ViTConfig
from .registry import build_model, create_model, get_config, get_spec, list_models, register
from .vit import VisionTransformer

__all__ = [
    "ViTConfig", "VisionTransformer", "build_model", "create_model", "get_config", "get_spec", "list_models",
    "register",
]
