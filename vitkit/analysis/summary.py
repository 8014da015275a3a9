"""The blog's "dry run", for any model: each stage's output shape, parameters and FLOPs.

The model is built on the meta device, so even ViT-H costs no memory: shapes propagate, nothing is computed.
FLOPs come from ``torch.utils.flop_counter`` (matrix multiplications, convolutions and attention; the cheap
element-wise work of norms, activations and softmax is not counted). One FLOP is one multiply or one add,
so a multiply-accumulate is 2 FLOPs; papers that say "17.6 GFLOPs" for ViT-B/16 count MACs (half of ours).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import ConfigError
from ..models import ViTConfig, ViViTConfig, build_model, create_model, get_config, layers
from ..models.rope import RotaryEmbedding2d

_SKIPPED = (nn.Dropout, nn.Identity, RotaryEmbedding2d)  # RoPE runs inside each block's attention


@dataclass
class Stage:
    """One row of the dry run."""

    name: str
    """The module's path in the model, e.g. ``blocks.3``."""
    label: str
    """What the stage is, in words."""
    output_shape: list[int]
    params: int
    flops: int


class DryRun:
    """What both dry runs share (this one and ``pointcloud.PointSummary``, dataclasses whose fields end with
    ``stages``): the totals, the JSON form and the table layout."""

    model: str
    stages: list[Any]

    @property
    def total_params(self) -> int:
        return sum(s.params for s in self.stages)

    @property
    def total_flops(self) -> int:
        return sum(s.flops for s in self.stages)

    def to_dict(self) -> dict[str, Any]:
        """The fields (stages as dicts), then the totals."""
        fields = asdict(self)  # type: ignore[call-overload]
        return {**fields, "total_params": self.total_params, "total_flops": self.total_flops}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def render_table(title: str, rows: list[tuple[str, ...]], left_columns: int, note: str) -> str:
    """``title``, then ``rows`` (a header first, the totals last) in aligned columns, the first ``left_columns``
    flush left and the others flush right, a rule under the header and above the totals; then ``note``."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [title]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) if j < left_columns else cell.rjust(w)
                               for j, (cell, w) in enumerate(zip(row, widths))))
        if i in (0, len(rows) - 2):
            lines.append("  ".join("-" * w for w in widths))
    lines.append(note)
    return "\n".join(lines)


@dataclass
class Summary(DryRun):
    """The whole dry run: stages in execution order, then totals."""

    model: str
    input_shape: list[int]
    stages: list[Stage] = field(default_factory=list)

    def to_table(self) -> str:
        rows = [("stage", "module", "output shape", "params", "GFLOPs")]
        rows.append(("input", "", _shape(self.input_shape), "", ""))
        rows += [(s.label, s.name, _shape(s.output_shape), f"{s.params:,}", f"{s.flops / 1e9:.3f}") for s in self.stages]
        rows.append(("total", "", "", f"{self.total_params:,}", f"{self.total_flops / 1e9:.3f}"))
        return render_table(f"{self.model}: dry run on the meta device (no weights allocated)", rows, 3,
                            "FLOPs count a multiply-add as 2 (matmuls, convolutions, attention).")


def summarize(model: nn.Module, input_shape: tuple[int, ...], name: str = "") -> Summary:
    """Run ``model`` on a meta tensor of ``input_shape`` (batch first) and record every stage.

    Stages are the model's direct children, and the children of its block lists, in the order they run.
    """
    if _has_real_tensors(model):
        model = build_model(model.config, device="meta")  # type: ignore[arg-type]
    summary = Summary(name or type(model).__name__, list(input_shape))
    counter = FlopCounterMode(display=False)
    handles = []
    for stage_name, module in _stage_modules(model):
        handles.append(module.register_forward_pre_hook(_start(counter)))
        handles.append(module.register_forward_hook(_finish(counter, summary, stage_name)))
    try:
        # The trace shows the architecture (the blog's dry run), not the shortcut forward takes in the last block.
        with counter, torch.no_grad(), layers.every_token(model):
            model.eval()(torch.empty(input_shape, device="meta"))
    finally:
        for handle in handles:
            handle.remove()
    return summary


def summarize_model(name: str, input_size: tuple[int, ...] | None = None, batch: int = 1, **overrides) -> Summary:
    """The layer-by-layer dry run of a named model; ``input_size`` is (C, H, W), or (C, T, H, W) for video
    models, and sets the model's input size."""
    if input_size is not None:
        overrides = {**overrides, **input_overrides(get_config(name), input_size)}
    model = create_model(name, device="meta", **overrides)
    return summarize(model, (batch, *model.config.input_shape), name=name)


def input_overrides(config: ViTConfig | ViViTConfig, input_size: tuple[int, ...]) -> dict:
    """Config overrides that make a model accept inputs of ``input_size`` = (C, H, W), or (C, T, H, W) for video."""
    text = "x".join(map(str, input_size))
    if isinstance(config, ViViTConfig):
        if len(input_size) != 4:
            raise ConfigError(f"a video input size is C x T x H x W (e.g. 3x32x224x224), got {text}")
        channels, frames, height, width = input_size
        return {"in_channels": channels, "num_frames": frames, "image_size": (height, width)}
    if len(input_size) != 3:
        raise ConfigError(f"an image input size is C x H x W, got {text}")
    channels, height, width = input_size
    return {"in_channels": channels, "image_size": (height, width)}


def _stage_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    stages = []
    for name, child in model.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList)):
            stages += [(f"{name}.{sub}", grandchild) for sub, grandchild in child.named_children()]
        elif not isinstance(child, _SKIPPED):
            stages.append((name, child))
    return stages


def _start(counter: FlopCounterMode):
    def hook(module: nn.Module, args: Any) -> None:
        module._vitkit_flops_before = counter.get_total_flops()  # type: ignore[attr-defined]

    return hook


def _finish(counter: FlopCounterMode, summary: Summary, stage_name: str):
    def hook(module: nn.Module, args: Any, output: torch.Tensor) -> None:
        flops = counter.get_total_flops() - module._vitkit_flops_before  # type: ignore[attr-defined]
        params = sum(p.numel() for p in module.parameters())
        summary.stages.append(Stage(stage_name, _label(stage_name, module), list(output.shape), params, flops))

    return hook


def _label(stage_name: str, module: nn.Module) -> str:
    container, _, index = stage_name.rpartition(".")
    number = f" {int(index) + 1}" if index.isdigit() else ""
    custom = getattr(module, "stage_label", None)
    if callable(custom):
        return custom() + number
    # A block list named "spatial_blocks" labels its blocks "spatial block N"; plain "blocks", "encoder block N".
    kind = container.removesuffix("blocks").replace("_", " ") or "encoder "
    labels = {
        layers.PatchEmbed: "patch embedding",
        layers.ClassToken: "[CLS] token",
        layers.PositionEmbedding: "position embedding",
        layers.Block: f"{kind}block{number}",
        nn.LayerNorm: "norm",
        nn.Linear: "classification head",
    }
    for cls, label in labels.items():
        if isinstance(module, cls):
            return label
    return stage_name


def _has_real_tensors(model: nn.Module) -> bool:
    return any(not t.is_meta for t in list(model.parameters()) + list(model.buffers()))


def _shape(shape: list[int]) -> str:
    return "[" + ", ".join(map(str, shape)) + "]"
