"""``vitkit models`` and ``vitkit summary``: what a model is made of, without training it."""

from __future__ import annotations

import argparse
import json

from .args import positive_int, size


def cmd_models(args: argparse.Namespace) -> int:
    from ..analysis import summarize
    from ..models import create_model, get_spec, list_models

    rows = []
    for name in list_models():
        model = create_model(name, device="meta")
        if not hasattr(model.config, "input_shape"):  # point-cloud models: shapes depend on the scan (see summary)
            rows.append({"name": name, "params": sum(p.numel() for p in model.parameters()), "gflops": None,
                         "input": "points", "description": get_spec(name).description})
            continue
        config = model.config
        summary = summarize(model, (1, *config.input_shape), name=name)
        rows.append({"name": name, "params": summary.total_params, "gflops": summary.total_flops / 1e9,
                     "input": "x".join(map(str, summary.input_shape[1:])), "description": get_spec(name).description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'model':<{width}}  {'params':>13}  {'GFLOPs':>8}  {'input':<11}  description")
    for r in rows:
        gflops = "-" if r["gflops"] is None else f"{r['gflops']:.2f}"
        print(f"{r['name']:<{width}}  {r['params']:>13,}  {gflops:>8}  {r['input']:<11}  {r['description']}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from .. import summarize_model
    from ..models import get_config

    if not hasattr(get_config(args.model), "input_shape"):  # a point-cloud model (Swin3D)
        from ..analysis.pointcloud import summarize_points

        points = summarize_points(args.model, args.points)
        print(json.dumps(points.to_dict(), indent=2) if args.json else points.to_table())
        return 0

    summary = summarize_model(args.model, input_size=args.input_size, batch=args.batch)
    print(summary.to_json() if args.json else summary.to_table())
    return 0


def register(add) -> None:
    models = add("models", cmd_models, "list every registered model with its parameters and GFLOPs")
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")

    summary = add("summary", cmd_summary, "layer-by-layer dry run: output shape, parameters and FLOPs of each stage")
    summary.add_argument("model", help="a registered model name (see `vitkit models`)")
    summary.add_argument("--input-size", type=size, default=None, metavar="CxHxW",
                         help="input size, e.g. 3x224x224, or CxTxHxW for video models, e.g. 3x16x224x224 "
                              "(default: the model's own)")
    summary.add_argument("--batch", type=positive_int, default=1, help="batch size (default 1)")
    summary.add_argument("--points", type=positive_int, default=100_000,
                         help="point-cloud models: points of the synthetic scan (default 100000)")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
