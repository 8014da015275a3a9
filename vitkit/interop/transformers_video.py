"""What transformers' three video classifiers (ViViT, VideoMAE, TimeSformer) share in their ``config.json``: the
Transformer's sizes under the same names, the activation, the class names; and the folder ``--to hf`` writes.

Each library's own module (``transformers_vivit.py``, ``transformers_videomae.py``, ``transformers_timesformer.py``)
holds its key map and the fields only it has.
"""

from __future__ import annotations

from typing import Any

from ..errors import VitkitError
from ..models.vivit_config import ViViTConfig
from .hf import class_names_from, label_fields

# transformers config field <-> ViViTConfig field, for the fields that only change names.
CONFIG_PAIRS = [("num_frames", "num_frames"), ("num_channels", "in_channels"), ("hidden_size", "dim"),
                ("num_hidden_layers", "depth"), ("num_attention_heads", "heads"), ("intermediate_size", "mlp_dim"),
                ("layer_norm_eps", "norm_eps"), ("hidden_dropout_prob", "dropout"),
                ("attention_probs_dropout_prob", "attn_dropout")]


def shared_kwargs(config: ViViTConfig) -> dict[str, Any]:
    """The shared fields of a transformers video config for ``config`` (square or [H, W] image size)."""
    height, width = config.image_size
    return {**{theirs: getattr(config, ours) for theirs, ours in CONFIG_PAIRS},
            "image_size": height if height == width else [height, width], "intermediate_size": config.hidden_dim,
            "hidden_act": "gelu", "num_labels": config.num_classes}


def shared_fields(data: dict[str, Any], library: str, default_act: str) -> dict[str, Any]:
    """ViViTConfig fields from a transformers video ``config.json`` (``default_act``: the library's default
    ``hidden_act``); a one-line error for an activation vitkit's MLP does not compute."""
    act = data.get("hidden_act", default_act)
    if act != "gelu":
        raise VitkitError(f"this transformers {library} uses hidden_act={act!r}; vitkit's MLP is the exact GELU: "
                          "save the model with hidden_act='gelu'")
    fields = {ours: data[theirs] for theirs, ours in CONFIG_PAIRS if theirs in data}
    names = class_names_from(data)
    return {**fields, "num_classes": len(names) if names else data.get("num_labels", 2)}


def video_config_json(kwargs: dict[str, Any], model_type: str, architecture: str,
                      class_names: list[str] | None) -> dict[str, Any]:
    """The ``config.json`` of a transformers video classifier built with ``kwargs``."""
    fields = {k: v for k, v in kwargs.items() if k != "num_labels"}
    return {"architectures": [architecture], "model_type": model_type, **fields,
            **label_fields(class_names, kwargs["num_labels"])}
