"""vitkit against timm, transformers and vit-pytorch, in one interleaved run (run in the peers environment).

    PYTHONPATH=. $(scripts/venv.sh peers)/bin/python benchmarks/peers.py            # the full run (long)
    PYTHONPATH=. $(scripts/venv.sh peers)/bin/python benchmarks/peers.py --tiny     # a 1-minute smoke run
    PYTHONPATH=. $(scripts/venv.sh peers)/bin/python benchmarks/peers.py --sizes v1,v2 --update   # redo some

What runs where: this process only coordinates. Each candidate of a (size, mode) group (vitkit, each peer, the
blog's model, the matmul peak) is built once in a worker process of its own (this script with ``--worker SIZE
MODE NAME``, ``vitkit/bench/worker.py``), and this process times the workers round-robin, one at a time, with
the order rotated each round. Each peak-memory row is measured in a fresh child (``vitkit/bench/memory.py``).
Why: process-wide state must not leak between libraries: vitkit's workers set up glibc's heap as ``vitkit
predict`` / ``train`` do (``worker.VITKIT_HEAP``), the peers' keep glibc's defaults, and the ``vitkit
default-heap`` row (vitkit with glibc's defaults) shows how much of vitkit's speed is the heap.

Writes results.json, results.md and results.png to --out (benchmarks/results/). How each library is run in
each mode is the table in ``vitkit/bench/recipes.py``; the blog's model is a reference row, not a peer (its
attention runs across the batch, so it computes something else)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing vitkit
sys.path.insert(0, str(Path(__file__).resolve().parent))

import vitkit  # noqa: E402
from vitkit.bench import memory, report, suite, worker  # noqa: E402
from vitkit.bench.recipes import peer_candidate, vitkit_candidate  # noqa: E402
from vitkit.bench.worker import VITKIT_HEAP  # noqa: E402
from vitkit.fast import bf16_is_native, checkpoint_blocks  # noqa: E402
from vitkit.fast.merge import use_token_merging  # noqa: E402
from vitkit.interop.timm import timm_kwargs  # noqa: E402


@dataclass(frozen=True)
class Size:
    """An image model size: vitkit registry name, width, depth, heads, CPU batch."""

    label: str
    vitkit_name: str
    dim: int
    depth: int
    heads: int
    batch: int
    image: int = 224
    patch: int = 16
    classes: int = 1000


SIZES = {
    "ti": Size("ViT-Ti/16", "vit_ti16", 192, 12, 3, 32),
    "s": Size("ViT-S/16", "vit_s16", 384, 12, 6, 32),
    "b": Size("ViT-B/16", "vit_b16", 768, 12, 12, 16),
}
TINY = Size("tiny (64px, depth 2)", "vit_ti16", 64, 2, 2, 4, image=64)

# ViViT at a small video setting: batch 4 clips of 16 frames x 112 px, tubelets 2x16x16, width 384, 6 heads,
# depth 12 (Model 2: 12 spatial + 4 temporal blocks).
VIDEO = dict(image_size=112, num_frames=16, tubelet_size=(2, 16, 16), dim=384, heads=6, depth=12, num_classes=400)
VIDEO_BATCH = 4
VIDEO_SIZES = {"v1": ("ViViT model 1", "spatiotemporal", "hf-vivit"),
               "v2": ("ViViT model 2", "factorised_encoder", "vit-pytorch-vivit")}
VIDEO_MODES = ["infer-fp32", "infer-bf16", "train-fp32"]
VIDEO_TARGETS = {"v1": 1.3, "v2": 1.1}

DEFAULT_HEAP_ROW = "vitkit default-heap"  # the reference row: vitkit's "vitkit" candidate with glibc's defaults

PEERS = ["timm", "hf-sdpa", "hf-eager", "vit-pytorch", "simple-vit", "hf-vivit", "vit-pytorch-vivit"]
MODES = ["infer-fp32", "infer-bf16", "train-fp32", "train-bf16"]

# The targets: vitkit / best peer, per mode and size ("vitkit int8" is compared with fp32 peers).
TARGETS: dict[str, dict[str, dict[str, float]]] = {
    "infer-fp32": {"ti": {"vitkit": 1.05, "vitkit int8": 1.8}, "s": {"vitkit": 1.05, "vitkit int8": 1.8},
                   "b": {"vitkit": 1.0, "vitkit int8": 1.8}},
    "train-fp32": {"ti": {"vitkit": 1.05}, "s": {"vitkit": 1.05}, "b": {"vitkit": 1.0}},
    "infer-bf16": {size: {"vitkit": 1.15} for size in SIZES},
    "train-bf16": {size: {"vitkit": 1.15} for size in SIZES},
}


def vitkit_model(size: Size) -> Callable[[], nn.Module]:
    """Builder of vitkit's ViT of this size."""
    return lambda: vitkit.VisionTransformer(_vitkit_config(size))


def _vitkit_config(size: Size) -> vitkit.ViTConfig:
    return vitkit.ViTConfig(image_size=size.image, patch_size=size.patch, dim=size.dim, depth=size.depth,
                            heads=size.heads, num_classes=size.classes)


def peer_builders(size: Size) -> dict[str, tuple[Callable[[], nn.Module], Callable | None]]:
    """Each peer's equal-size model (imported lazily) and, where its forward is not ``model(x) -> logits``,
    an adapter."""

    def timm_vit() -> nn.Module:
        from timm.models.vision_transformer import VisionTransformer

        return VisionTransformer(**timm_kwargs(_vitkit_config(size)))

    def hf(attention: str) -> Callable[[], nn.Module]:
        def build() -> nn.Module:
            from transformers import ViTConfig, ViTForImageClassification

            config = ViTConfig(hidden_size=size.dim, num_hidden_layers=size.depth, num_attention_heads=size.heads,
                               intermediate_size=4 * size.dim, image_size=size.image, patch_size=size.patch,
                               num_labels=size.classes)
            config._attn_implementation = attention
            return ViTForImageClassification(config)

        return build

    def lucidrains(kind: str) -> Callable[[], nn.Module]:
        def build() -> nn.Module:
            import vit_pytorch

            cls = vit_pytorch.ViT if kind == "vit" else vit_pytorch.SimpleViT
            return cls(image_size=size.image, patch_size=size.patch, num_classes=size.classes, dim=size.dim,
                       depth=size.depth, heads=size.heads, mlp_dim=4 * size.dim, dim_head=size.dim // size.heads)

        return build

    def blog() -> nn.Module:
        from blog_model import BlogViT

        return BlogViT(size.image, size.patch, size.dim, size.heads, 4 * size.dim, size.classes, size.depth)

    hf_logits = lambda model: (lambda x: model(pixel_values=x).logits)  # noqa: E731
    return {
        "timm": (timm_vit, None), "hf-sdpa": (hf("sdpa"), hf_logits), "hf-eager": (hf("eager"), hf_logits),
        "vit-pytorch": (lucidrains("vit"), None), "simple-vit": (lucidrains("simple"), None), "blog": (blog, None),
    }


def vitkit_candidates(name: str, build: Callable[[], nn.Module], mode: str, batch: int, shape: tuple[int, ...],
                      classes: int) -> list:
    """vitkit's candidate with its heap (``VITKIT_HEAP``) and, for "vitkit", the same with glibc's defaults."""
    tuned = dataclasses.replace(vitkit_candidate(name, build, mode, batch, shape, classes), heap=VITKIT_HEAP)
    if name != "vitkit":
        return [tuned]
    return [tuned, vitkit_candidate(DEFAULT_HEAP_ROW, build, mode, batch, shape, classes)]


def candidates(size: Size, mode: str, names: list[str], merge: int = 0) -> list:
    """vitkit with and without its heap (plus, in fp32 inference, its int8 path and token merging of ``merge``
    pairs per block) and the named peers, for one size and mode."""
    shape = (3, size.image, size.image)
    found = vitkit_candidates("vitkit", vitkit_model(size), mode, size.batch, shape, size.classes)
    if mode == "infer-fp32":
        found += vitkit_candidates("vitkit int8", vitkit_model(size), "infer-int8", size.batch, shape, size.classes)
    if mode == "infer-fp32" and merge:
        merged = lambda: use_token_merging(vitkit_model(size)(), merge)  # noqa: E731
        found += vitkit_candidates(f"vitkit merge r={merge}", merged, mode, size.batch, shape, size.classes)
    builders = peer_builders(size)
    for name in [n for n in names if n in builders]:  # the video peers have their own groups
        build, forward = builders[name]
        found.append(peer_candidate(name, build, mode, size.batch, shape, size.classes, forward=forward))
    return found


def video_candidates(key: str, mode: str) -> list:
    """vitkit's ViViT (model 1 or 2, with and without its heap) and its peer, at the VIDEO setting."""
    from vitkit.models.vivit import VideoVisionTransformer
    from vitkit.models.vivit_config import ViViTConfig

    _, variant, peer = VIDEO_SIZES[key]
    config = ViViTConfig(variant=variant, temporal_depth=4, **VIDEO)
    shape = (3, VIDEO["num_frames"], VIDEO["image_size"], VIDEO["image_size"])

    def hf_vivit() -> nn.Module:
        import transformers

        from vitkit.interop.transformers_vivit import transformers_vivit_kwargs

        return transformers.VivitForVideoClassification(transformers.VivitConfig(**transformers_vivit_kwargs(config)))

    def lucidrains_vivit() -> nn.Module:
        from vit_pytorch.vivit import ViViT

        return ViViT(image_size=VIDEO["image_size"], image_patch_size=16, frames=VIDEO["num_frames"],
                     frame_patch_size=2, num_classes=VIDEO["num_classes"], dim=VIDEO["dim"],
                     spatial_depth=VIDEO["depth"], temporal_depth=4, heads=VIDEO["heads"], mlp_dim=4 * VIDEO["dim"],
                     dim_head=64, variant="factorized_encoder")

    hf_logits = lambda model: (lambda x: model(pixel_values=x.transpose(1, 2)).logits)  # noqa: E731  [B,T,C,H,W]
    build, forward = (hf_vivit, hf_logits) if peer == "hf-vivit" else (lucidrains_vivit, None)
    return [*vitkit_candidates("vitkit", lambda: VideoVisionTransformer(config), mode, VIDEO_BATCH, shape, 400),
            peer_candidate(peer, build, mode, VIDEO_BATCH, shape, 400, forward=forward)]


def memory_candidate(size: Size, name: str):
    """The candidate a memory child measures: fp32 training of ``name`` ("vitkit+ckpt": with checkpointing)."""
    shape = (3, size.image, size.image)
    if name.startswith("vitkit"):
        build = vitkit_model(size)
        if name == "vitkit+ckpt":
            build = lambda: checkpoint_blocks(vitkit_model(size)())  # noqa: E731
        return vitkit_candidate(name, build, "train-fp32", size.batch, shape, size.classes)
    build, forward = peer_builders(size)[name]
    return peer_candidate(name, build, "train-fp32", size.batch, shape, size.classes, forward=forward)


def measure_memory(size_key: str, size: Size, names: list[str], tiny: bool) -> list[dict]:
    """Peak fp32 training memory of vitkit, vitkit with checkpointing and each peer, one subprocess each."""
    rows = []
    for name in ["vitkit", "vitkit+ckpt", *[n for n in names if n in peer_builders(size)]]:
        argv = [str(Path(__file__).resolve()), "--memory-child", size_key, name] + (["--tiny"] if tiny else [])
        peak = memory.measure_in_subprocess(argv)
        print(f"  memory {size.label} {name}: {peak and peak / 2**20:.0f} MiB", flush=True)
        rows.append({"model": size.label, "batch": size.batch, "name": name,
                     "peak_mib": peak / 2**20 if peak is not None else None})
    peers = [r["peak_mib"] for r in rows if r["name"] in PEERS and r["peak_mib"]]
    for row in rows:
        if peers and row["peak_mib"]:
            row["vs_best_peer"] = row["peak_mib"] / min(peers)
    return rows


def metadata(args: argparse.Namespace) -> dict:
    """Where and how the numbers were measured."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for lib in ("timm", "transformers", "vit-pytorch"):  # vit_pytorch has no __version__: ask the installer
        try:
            versions[lib.replace("-", "_")] = version(lib)
        except PackageNotFoundError:
            versions[lib.replace("-", "_")] = "absent"
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"), "device": _device_name(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, **versions,
            "rounds": args.rounds, "min_seconds_per_sample": args.min_seconds, "python": platform.python_version()}


def _device_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({torch.get_num_threads()} threads)"
    except OSError:
        pass
    return platform.processor() or "cpu"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="ti,s,b,v1,v2", help="comma-separated: ti, s, b, v1, v2 (ViViT)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated: " + ", ".join(MODES))
    parser.add_argument("--peers", default=",".join(PEERS + ["blog"]), help="comma-separated peers to include")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--min-seconds", type=float, default=1.0, help="minimum time of one sample")
    parser.add_argument("--memory-sizes", default="ti,s,b", help="sizes whose training memory is measured")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--tiny", action="store_true", help="tiny models and batches: a quick smoke run")
    parser.add_argument("--merge", type=int, default=0, metavar="R",
                        help="also time vitkit with token merging of R pairs per block (fp32 inference)")
    parser.add_argument("--force-bf16", action="store_true", help="run bf16 modes even without native bf16")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--update", action="store_true",
                        help="merge into the results already in --out (groups measured now replace their namesakes)")
    parser.add_argument("--memory-child", nargs=2, metavar=("SIZE", "NAME"), help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=3, metavar=("SIZE", "MODE", "NAME"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build_group(size_key: str, mode: str, args: argparse.Namespace) -> suite.Group:
    """The candidates of one (size, mode) group, with the peers and targets its ratios use."""
    dtype = torch.bfloat16 if mode.endswith("bf16") else torch.float32
    if size_key in VIDEO_SIZES:
        label, _, peer = VIDEO_SIZES[size_key]
        return suite.Group(label, mode, VIDEO_BATCH, video_candidates(size_key, mode), peers=[peer],
                           targets={"vitkit": VIDEO_TARGETS[size_key]}, peak_dtype=dtype)
    names = [n for n in args.peers.split(",") if n]
    size = TINY if args.tiny else SIZES[size_key]
    return suite.Group(size.label, mode, size.batch, candidates(size, mode, names, args.merge),
                       peers=[n for n in names if n in PEERS], targets=TARGETS[mode][size_key], peak_dtype=dtype)


def worker_argv(args: argparse.Namespace, size_key: str, mode: str, name: str) -> list[str]:
    """This script's command line for the worker process of candidate ``name`` of a group."""
    argv = [str(Path(__file__).resolve()), "--worker", size_key, mode, name, "--peers", args.peers, "--merge",
            str(args.merge)]
    return argv + (["--tiny"] if args.tiny else [])


def plan(args: argparse.Namespace, skip: set[str]) -> list[tuple[str, str]]:
    """The (size, mode) groups to measure, in order."""
    groups = []
    for size_key in args.sizes.split(","):
        modes = VIDEO_MODES if size_key in VIDEO_SIZES else args.modes.split(",")
        groups += [(size_key, mode) for mode in modes if mode not in skip]
    return groups


def merged(old: dict, new: dict) -> dict:
    """``--update``: ``old`` results with the groups and memory rows of ``new`` replacing their namesakes."""
    groups = {(g["model"], g["mode"]): g for g in old.get("groups", [])}
    groups.update({(g["model"], g["mode"]): g for g in new["groups"]})
    rows = {(r["model"], r["name"]): r for r in old.get("memory", [])}
    rows.update({(r["model"], r["name"]): r for r in new["memory"]})
    return {"meta": new["meta"], "groups": list(groups.values()), "memory": list(rows.values())}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_child:
        size_key, name = args.memory_child
        memory.report_here(memory_candidate(TINY if args.tiny else SIZES[size_key], name))
        return 0
    if args.worker:
        size_key, mode, name = args.worker
        worker.serve(suite.find(build_group(size_key, mode, args), name))
        return 0
    names = [n for n in args.peers.split(",") if n]
    results = {"meta": metadata(args), "groups": [], "memory": []}
    skip = set() if bf16_is_native("cpu") or args.force_bf16 else {m for m in MODES if m.endswith("bf16")}
    if skip:
        results["meta"]["skipped"] = ("bf16 modes: this CPU has no native bf16 (AVX-512-BF16 / AMX), so every "
                                      "library's bf16 is emulated; --force-bf16 runs them anyway")
        print("skipping " + results["meta"]["skipped"], flush=True)
    previous = report.load(Path(args.out) / "results.json") if args.update else {}
    done_memory: set[str] = set()
    for size_key, mode in plan(args, skip):
        workers = worker.starter(lambda name: worker_argv(args, size_key, mode, name))  # noqa: B023 (used now)
        results["groups"].append(suite.run_group(build_group(size_key, mode, args), args.rounds, args.min_seconds,
                                                 log=lambda line: print(line, flush=True), start=workers))
        report.write_all(merged(previous, results), args.out)  # keep partial results if a later group fails
        wants_memory = not args.no_memory and size_key in args.memory_sizes.split(",") and size_key in SIZES
        if wants_memory and size_key not in done_memory:
            done_memory.add(size_key)
            size = TINY if args.tiny else SIZES[size_key]
            results["memory"] += measure_memory(size_key, size, [n for n in names if n in PEERS], args.tiny)
    results = merged(previous, results)
    paths = report.write_all(results, args.out)
    print(report.markdown(results))
    print("wrote " + ", ".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
