"""``vitkit shard``: write an image or video folder as WebDataset tar shards (see data/shard_writer.py)."""

from __future__ import annotations

import argparse
import sys

from .args import positive_int


def cmd_shard(args: argparse.Namespace) -> int:
    from ..data.shard_writer import parse_size, write_shards

    report = write_shards(args.folder, args.out_dir, parse_size(args.shard_size), args.short_side, args.task,
                          args.val_fraction, args.seed, progress=lambda line: print(line, file=sys.stderr))
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    total = sum(report.samples.values())
    print(f"wrote {total} samples in {sum(report.shards.values())} shards to {report.out} ("
          + ", ".join(f"{split} {report.samples[split]} in {report.shards[split]}" for split in report.samples)
          + f"); train with --data {report.out}" + (f"; {len(report.skipped)} files skipped" if report.skipped else ""))
    return 0


def register(add) -> None:
    shard = add("shard", cmd_shard, "write an image (or video) folder as WebDataset tar shards, with the class list")
    shard.add_argument("folder", help="PATH/{train,val}/<class>/* or PATH/<class>/* (split by --val-fraction)")
    shard.add_argument("out_dir", help="empty folder for train-000000.tar ..., val-000000.tar ..., index.json")
    shard.add_argument("--shard-size", default="1GB", help="largest shard, e.g. 1GB or 500MB (default 1GB)")
    shard.add_argument("--short-side", type=positive_int, default=None,
                       help="images: re-encode larger images as JPEG with this shorter side (default: keep the files)")
    shard.add_argument("--task", choices=["image", "video"], default="image", help="image (default) or video folders")
    shard.add_argument("--val-fraction", type=float, default=0.2,
                       help="val share when the folder has no train/val split (default 0.2)")
    shard.add_argument("--seed", type=int, default=0, help="seed of the sample order and split (default 0)")
