"""The ``vitkit`` command: a thin layer over the Python API. Each sub-command is one small function.

User mistakes raise :class:`VitkitError`; ``main`` prints their one-line message and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Sequence

from . import __version__
from .errors import VitkitError


def _size(text: str) -> tuple[int, ...]:
    """Parse ``3x224x224`` into (3, 224, 224)."""
    try:
        values = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 3x224x224, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"sizes must be positive integers like 3x224x224, got {text!r}")
    return values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def cmd_models(args: argparse.Namespace) -> int:
    from .analysis import summarize
    from .models import create_model, get_spec, list_models

    rows = []
    for name in list_models():
        model = create_model(name, device="meta")
        config = model.config
        summary = summarize(model, (1, config.in_channels, *config.image_size), name=name)
        rows.append({"name": name, "params": summary.total_params, "gflops": summary.total_flops / 1e9,
                     "input": "x".join(map(str, summary.input_shape[1:])), "description": get_spec(name).description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'model':<{width}}  {'params':>13}  {'GFLOPs':>8}  {'input':<11}  description")
    for r in rows:
        print(f"{r['name']:<{width}}  {r['params']:>13,}  {r['gflops']:>8.2f}  {r['input']:<11}  {r['description']}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from . import summarize_model

    summary = summarize_model(args.model, input_size=args.input_size, batch=args.batch)
    print(summary.to_json() if args.json else summary.to_table())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vitkit", description="Vision Transformers for images and video.")
    parser.add_argument("--version", action="version", version=f"vitkit {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    models = add("models", cmd_models, "list every registered model with its parameters and GFLOPs")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")

    summary = add("summary", cmd_summary, "layer-by-layer dry run: output shape, parameters and FLOPs of each stage")
    summary.add_argument("model", help="a registered model name (see `vitkit models`)")
    summary.add_argument("--input-size", type=_size, default=None, metavar="CxHxW",
                         help="input size, e.g. 3x224x224 (default: the model's own)")
    summary.add_argument("--batch", type=_positive_int, default=1, help="batch size (default 1)")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vitkit`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except VitkitError as error:
        print(f"vitkit: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vitkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
