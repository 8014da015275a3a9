"""``vitkit models`` and ``vitkit summary``: what a model is made of, without training it."""

from __future__ import annotations

import argparse
import json

from .args import positive_int, size


def cmd_models(args: argparse.Namespace) -> int:
    from ..analysis.counts import count, swin3d_params
    from ..models import get_spec, list_models

    rows = []
    for name in list_models():  # counted from the configs: no model is built
        spec = get_spec(name)
        if not hasattr(spec.config, "input_shape"):  # point-cloud models (Swin3D): FLOPs depend on the scan
            params = swin3d_params(spec.config)
            rows.append({"name": name, "params": params, "gmacs": None, "gflops": None, "input": "points",
                         "description": spec.description})
            continue
        counts = count(spec.config)
        rows.append({"name": name, "params": counts.params, "gmacs": counts.macs / 1e9, "gflops": counts.flops / 1e9,
                     "input": "x".join(map(str, spec.config.input_shape)), "description": spec.description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'model':<{width}}  {'params':>13}  {'GMACs':>8}  {'GFLOPs':>8}  {'input':<11}  description")
    for r in rows:
        gmacs, gflops = (f"{r[k]:.2f}" if r[k] is not None else "-" for k in ("gmacs", "gflops"))
        print(f"{r['name']:<{width}}  {r['params']:>13,}  {gmacs:>8}  {gflops:>8}  {r['input']:<11}  "
              f"{r['description']}")
    print("Per input, every token through every block. GMACs: multiply-accumulates, as timm and papers quote them "
          "(ViT-B/16: 17.6); GFLOPs = 2 x GMACs.")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from ..analysis.summary import summarize_model
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
    models = add("models", cmd_models, "list every registered model with its parameters, GMACs and GFLOPs",
                 ["vitkit models", "vitkit models --json"])
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")

    summary = add("summary", cmd_summary, "layer-by-layer dry run: output shape, parameters and FLOPs of each stage",
                  ["vitkit summary vit_b16", "vitkit summary vit_b16 --input-size 3x384x384 --batch 8",
                   "vitkit summary vivit_b16x2 --json"])
    summary.add_argument("model", help="a registered model name (see `vitkit models`)")
    summary.add_argument("--input-size", type=size, default=None, metavar="CxHxW",
                         help="input size, e.g. 3x224x224, or CxTxHxW for video models, e.g. 3x16x224x224 "
                              "(default: the model's own)")
    summary.add_argument("--batch", type=positive_int, default=1, help="batch size (default 1)")
    summary.add_argument("--points", type=positive_int, default=100_000,
                         help="point-cloud models: points of the synthetic scan (default 100000)")
    summary.add_argument("--json", action="store_true", help="print JSON instead of a table")
