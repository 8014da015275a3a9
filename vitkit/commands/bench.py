"""``vitkit bench``: vitkit's own speed on this machine, fast paths against the plain PyTorch path (the same
model without vitkit's [CLS]-only last block, with default AdamW, fp32 for int8).

The peer comparison (timm, transformers, vit-pytorch) is ``benchmarks/peers.py`` in the peers environment;
both use the same measuring code (``vitkit.bench``): each candidate in a worker process of its own (``vitkit
bench ... --worker MODE NAME``), vitkit's with the heap ``vitkit predict`` / ``train`` set up by default
(``bench.worker.VITKIT_HEAP``), plain PyTorch's with glibc's defaults.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import positive_int

MODES = ("infer-fp32", "infer-bf16", "infer-int8", "train-fp32", "train-bf16")


def cmd_bench(args: argparse.Namespace) -> int:
    import datetime

    import torch

    from ..bench import report, suite, worker
    from ..errors import VitkitError
    from ..inference.device import resolve_device

    args.device = str(resolve_device(args.device))
    if args.worker:  # one candidate of the run below, in a process of its own
        mode, name = args.worker
        worker.serve(suite.find(_group(args, mode), name))
        return 0
    modes = args.modes.split(",") if args.modes else default_modes(args.device)
    unknown = sorted(set(modes) - set(MODES))
    if unknown:
        raise VitkitError(f"unknown --modes {', '.join(unknown)}; choose from {', '.join(MODES)}")
    if "infer-int8" in modes and args.device != "cpu":
        raise VitkitError("--modes infer-int8 runs on CPU only; drop it or use --device cpu")
    results = {"meta": {"date": datetime.datetime.now().isoformat(timespec="seconds"), "model": args.model,
                        "torch": torch.__version__, "threads": torch.get_num_threads(), "rounds": args.rounds,
                        "min_seconds_per_sample": args.min_seconds, "device": args.device}, "groups": []}
    log = lambda line: print(line, flush=True)  # noqa: E731
    for mode in modes:
        argv = ["-m", "vitkit", "bench", "--model", args.model, "--batch", str(args.batch), "--device", args.device,
                "--worker", mode]
        start = worker.starter(lambda name: [*argv, name])  # noqa: B023 (used at once)
        results["groups"].append(suite.run_group(_group(args, mode), args.rounds, args.min_seconds, log, start))
    paths = report.write_all(results, args.out)
    print(report.markdown(results))
    print("wrote " + ", ".join(map(str, paths)))
    return 0


def _group(args: argparse.Namespace, mode: str):
    """vitkit's model with its fast paths for ``mode`` against the same model run the plain PyTorch way."""
    import dataclasses

    import torch

    from ..bench import suite
    from ..bench.recipes import peer_candidate, vitkit_candidate
    from ..bench.worker import VITKIT_HEAP
    from ..models import get_config, get_spec

    config = get_config(args.model)
    build = lambda: get_spec(args.model).build(config)  # noqa: E731
    plain = lambda: _without_shortcuts(build())  # noqa: E731
    shape = (config.in_channels, *config.image_size)
    classes = max(config.num_classes, 1)
    plain_mode = "infer-fp32" if mode == "infer-int8" else mode
    device = args.device
    candidates = [
        dataclasses.replace(vitkit_candidate("vitkit", build, mode, args.batch, shape, classes, device),
                            heap=VITKIT_HEAP),
        peer_candidate("plain pytorch", plain, plain_mode, args.batch, shape, classes, device),
    ]
    return suite.Group(args.model, mode, args.batch, candidates, peers=["plain pytorch"], targets={"vitkit": 1.0},
                       peak_dtype=torch.bfloat16 if mode.endswith("bf16") else torch.float32, device=device)


def default_modes(device: str = "cpu") -> list[str]:
    """Every mode, less bf16 where ``device`` only emulates it (5-10x slower than fp32: nothing to learn) and
    int8 off the CPU (int8 Linear layers are CPU kernels)."""
    from ..fast import bf16_is_native

    native = bf16_is_native(device)
    if not native:
        print(f"vitkit bench: {device} has no native bf16, so the bf16 modes are left out (ask with --modes)")
    return [m for m in MODES if (native or not m.endswith("bf16")) and (device == "cpu" or m != "infer-int8")]


def _without_shortcuts(model):
    """The reference: the same model running every block on every token (see ``models/layers.readout_queries``)."""
    if hasattr(model, "prune_readout"):
        model.prune_readout = False
    return model


def register(add) -> None:
    from ..inference.device import DEVICE_HELP

    bench = add("bench", cmd_bench, "measure vitkit's fast paths against plain PyTorch, interleaved (images/s, MFU)",
                ["vitkit bench", "vitkit bench --model vit_s16 --modes infer-fp32,infer-int8 --batch 64"])
    bench.add_argument("--model", default="vit_ti16", help="a registered model name (default vit_ti16)")
    bench.add_argument("--modes", default=None,
                       help="comma-separated: " + ", ".join(MODES) + " (default: all, less bf16 where it is emulated)")
    bench.add_argument("--batch", type=positive_int, default=32, help="batch size (default 32)")
    bench.add_argument("--rounds", type=positive_int, default=5, help="interleaved rounds (default 5)")
    bench.add_argument("--min-seconds", type=float, default=1.0, help="minimum seconds per sample (default 1)")
    bench.add_argument("--out", type=Path, default=Path("runs/bench"), help="folder for results.json/.md/.png (default runs/bench)")
    bench.add_argument("--device", default="auto", help=DEVICE_HELP)
    bench.add_argument("--worker", nargs=2, metavar=("MODE", "NAME"), help=argparse.SUPPRESS)
