"""What the image ViT and the video ViViT share: a config base and a model base.

``TransformerConfig`` gives every model config its checks (sizes, heads, drop rates), ``replace``,
``to_dict`` / ``from_dict`` and ``hidden_dim``. ``TransformerModel`` gives every model its block stacks
(:meth:`TransformerModel.block_stacks`: what activation checkpointing and FSDP sharding walk), the block runner
that honours ``grad_checkpointing``, ``reset_classifier`` and the input-shape check.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..errors import ConfigError
from .layers import init_weights


def to_pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Return ``(h, w)`` for an int or a pair."""
    if isinstance(value, int):
        return (value, value)
    pair = tuple(int(v) for v in value)
    if len(pair) != 2:
        raise ConfigError(f"expected an int or a pair (H, W), got {value!r}")
    return pair  # type: ignore[return-value]


def check_choice(name: str, value: str, choices: Any) -> None:
    """A one-line error unless ``value`` is one of the ``Literal`` type ``choices``."""
    allowed = choices.__args__
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


TupleFields = dict[str, Callable[[Any], tuple[int, ...]]]
"""Config fields held as tuples, each with the function that makes one from an int or a list."""


def unknown_options_error(kind: str, unknown: set[str], known: Sequence[str]) -> ConfigError:
    """The error for option names a config does not have: a close match where there is one, and the list."""
    hints = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, known, n=1)
        hints.append(f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name))
    return ConfigError(f"unknown {kind} option(s) {', '.join(hints)}; valid ones: {', '.join(known)}")


@dataclass
class TransformerConfig:
    """The shared part of :class:`~vitkit.models.config.ViTConfig` and :class:`~vitkit.models.vivit_config.
    ViViTConfig`: the input size, the head and the Transformer's options. The subclasses add their own fields
    after these (a subclass that re-declares one, to change its default, keeps it in this place)."""

    image_size: int | tuple[int, int] = 224
    in_channels: int = 3
    num_classes: int = 1000
    """0 removes the head: the model returns pooled features."""
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_ratio: float = 4.0
    mlp_dim: int | None = None
    """Hidden size of the feed-forward network; overrides ``mlp_ratio`` when set."""
    qkv_bias: bool = True
    dropout: float = 0.0
    """Dropout after the position embedding, inside the MLP and after each projection."""
    attn_dropout: float = 0.0
    """Dropout on the attention probabilities."""
    drop_path: float = 0.0
    """Stochastic depth: the drop rate of the last block, rising linearly from 0 at the first."""
    norm_eps: float = 1e-6

    kind: ClassVar[str] = "model"
    """The name used in messages (``ViT``, ``ViViT``)."""
    tuple_fields: ClassVar[TupleFields] = {"image_size": to_pair}
    """Fields held as tuples (and written to JSON as lists), each with the function that makes one from an int
    or a list."""

    def __post_init__(self) -> None:
        for name, to_tuple in self.tuple_fields.items():
            if getattr(self, name) is not None:  # None: an optional pair left unset
                setattr(self, name, to_tuple(getattr(self, name)))
        self._validate()

    def _validate(self) -> None:
        """A one-line :class:`ConfigError` for the first option that is out of range (each subclass's checks)."""
        raise NotImplementedError

    @property
    def pooled_dim(self) -> int:
        """The width of the vector the head reads (the model width unless a subclass pools otherwise)."""
        return self.dim

    @property
    def hidden_dim(self) -> int:
        """The feed-forward hidden size actually used."""
        return self.mlp_dim if self.mlp_dim is not None else int(self.dim * self.mlp_ratio)

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    def check_transformer(self, positive: Sequence[str]) -> None:
        """The checks every model shares: ``positive`` fields, heads dividing dim, classes, drop rates."""
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.dim % self.heads:  # after the positivity check: heads=0 must not divide by zero
            raise ConfigError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.num_classes < 0:
            raise ConfigError(f"num_classes must be >= 0, got {self.num_classes}")
        for name in ("dropout", "attn_dropout", "drop_path"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def replace(self, **overrides: Any):
        """A copy with some fields changed (validated again)."""
        self._check_names(overrides)
        return dataclasses.replace(self, **overrides)  # type: ignore[type-var]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        for name in self.tuple_fields:
            data[name] = None if data[name] is None else list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        cls._check_names(data)
        return cls(**data)

    @classmethod
    def _check_names(cls, options: dict[str, Any]) -> None:
        known = cls.field_names()
        unknown = set(options) - set(known)
        if unknown:
            raise unknown_options_error(cls.kind, unknown, known)


def drop_path_rates(drop_path: float, depth: int) -> list[float]:
    """Stochastic depth per block: 0 at the first, rising linearly to ``drop_path`` at the last."""
    return [drop_path * i / max(depth - 1, 1) for i in range(depth)]


def block_stack(make_block: Callable[[float], nn.Module], depth: int, drop_path: float) -> nn.Sequential:
    """``depth`` blocks ``make_block(drop_path_rate)`` with linearly rising drop-path rates."""
    return nn.Sequential(*[make_block(rate) for rate in drop_path_rates(drop_path, depth)])


class TransformerModel(nn.Module):
    """The shared behaviour of vitkit's models. Subclasses set ``config``, ``head`` and list their block
    stacks in :meth:`block_stacks`, and run every stack through :meth:`run_stack`."""

    config: Any
    input_name: ClassVar[str] = "inputs"
    """What the input is called in the shape error (``images``, ``clips``)."""
    input_axes: ClassVar[str] = ""
    """The axes of the input, spelled out in the shape error where they are not obvious."""

    def __init__(self) -> None:
        super().__init__()
        self.grad_checkpointing = False
        """Recompute each block's activations in the backward pass instead of storing them (less memory)."""
        self.prune_readout = True
        """In ``forward``, run a last block for the [CLS] token alone when that is all that is read next
        (see :func:`~vitkit.models.layers.readout_queries`); the result is the same."""

    def block_stacks(self) -> list[nn.Sequential]:
        """The model's stacks of encoder blocks, in the order they run (one stack for most models)."""
        raise NotImplementedError

    def run_stack(self, blocks: nn.Sequential, x: torch.Tensor, queries: int | None = None) -> torch.Tensor:
        """Run ``blocks`` in order; the last one computes only its first ``queries`` outputs when given. With
        ``grad_checkpointing`` while training, each block's activations are recomputed in the backward pass
        instead of stored."""
        recompute = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        last = len(blocks) - 1
        for i, block in enumerate(blocks):
            args = (x,) if i != last or queries is None else (x, queries)
            x = checkpoint(block, *args, use_reentrant=False) if recompute else block(*args)
        return x

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` (0: no head)."""
        self.config = self.config.replace(num_classes=num_classes)
        device = next(self.parameters()).device
        self.head = nn.Linear(self.config.pooled_dim, num_classes, device=device) if num_classes else nn.Identity()
        self.head.apply(init_weights)

    def check_input(self, inputs: torch.Tensor) -> None:
        """A one-line error unless ``inputs`` is a batch of the config's ``input_shape``."""
        expected = self.config.input_shape
        if inputs.ndim != len(expected) + 1 or tuple(inputs.shape[1:]) != expected:
            got = "x".join(map(str, inputs.shape))
            want = "Bx" + "x".join(map(str, expected))
            axes = f" ({self.input_axes})" if self.input_axes else ""
            raise ValueError(f"expected {self.input_name} of shape {want}{axes}, got {got}")


def block_stacks(model: nn.Module) -> list[nn.Sequential]:
    """The block stacks of any vitkit model (none for a module that is not one)."""
    return model.block_stacks() if isinstance(model, TransformerModel) else []
