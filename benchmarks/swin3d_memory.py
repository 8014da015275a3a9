"""Swin3D memory grows linearly with the scan; dense attention grows quadratically.

    PYTHONPATH=. python benchmarks/swin3d_memory.py                     # CPU: peak RSS of fresh processes
    PYTHONPATH=. python benchmarks/swin3d_memory.py --device cuda --model swin3d_s   # torch.cuda.max_memory_allocated

Part 1: a forward pass (no gradients) of a Swin3D model on synthetic rooms of 50k, 100k and 200k points; each
size runs in a fresh process and reports its peak memory above the process's memory before the forward pass
(CPU: VmHWM - VmRSS from /proc; CUDA: max_memory_allocated - memory_allocated). A least-squares line over voxels
gives the slope (bytes per voxel) and a log-log fit the growth exponent (1 = linear).

Part 2: one attention layer over the same kind of voxels, windowed (vitkit) against the dense baseline: full
attention over all voxels with a mask that keeps same-window pairs (the reference of the unit tests). Dense
attention stores voxels**2 scores per head, so it is measured at a few thousand voxels and its exponent is ~2.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
    return 0


def _peak_of(fn, device: str) -> tuple[int, float]:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before, time.perf_counter() - start
    before = _rss("VmRSS")
    start = time.perf_counter()
    fn()
    return _rss("VmHWM") - before, time.perf_counter() - start


def child_model(model_name: str, points: int, voxel_size: float | None, device: str) -> dict:
    import torch

    import vitkit
    from vitkit.analysis.pointcloud import synthetic_scan
    from vitkit.models.swin3d import voxelize

    overrides = {"voxel_size": voxel_size} if voxel_size else {}
    model = vitkit.create_model(model_name, num_classes=13, **overrides).eval().to(device)
    xyz, rgb, normal = synthetic_scan(points)
    inputs = voxelize(xyz, rgb, normal, voxel_size=model.config.voxel_size).to(device)
    with torch.no_grad():
        peak, seconds = _peak_of(lambda: model(inputs), device)
    return {"points": int(xyz.shape[0]), "voxels": len(inputs.voxels), "peak_bytes": peak, "seconds": seconds}


def child_attention(kind: str, voxels: int, device: str) -> dict:
    import torch

    from vitkit.analysis.pointcloud import synthetic_scan
    from vitkit.models.swin3d.attention import windowed_attention
    from vitkit.models.swin3d.voxels import voxelize
    from vitkit.models.swin3d.windows import plan_windows

    # The first voxels in (x, y, z) order: a slab of a dense room, so windows stay as full as in a real scan.
    xyz, rgb, normal = synthetic_scan(200_000)
    vox = voxelize(xyz, rgb, normal, voxel_size=0.02).voxels
    keep = torch.arange(min(voxels, len(vox)))
    vox.batch, vox.coords = vox.batch[keep], vox.coords[keep]
    q, k, v = torch.randn(3, len(keep), 6, 8, device=device).unbind(0)
    plan = plan_windows(vox, 5)
    if device != "cpu":
        plan.buckets = [type(b)(b.index.to(device), b.mask.to(device)) for b in plan.buckets]
    coords, batch = vox.coords.to(device), vox.batch.to(device)

    def dense():
        window = torch.div(coords, 5, rounding_mode="floor")
        allowed = (batch[:, None] == batch[None]) & (window[:, None] == window[None]).all(-1)
        logits = torch.einsum("ihd,jhd->hij", q, k).masked_fill(~allowed, float("-inf"))
        return torch.einsum("hij,jhd->ihd", torch.softmax(logits, dim=-1), v)

    def windowed():
        return windowed_attention(q, k, v, plan, None, None)

    with torch.no_grad():
        peak, seconds = _peak_of(dense if kind == "dense" else windowed, device)
    return {"voxels": len(keep), "peak_bytes": peak, "seconds": seconds}


def _run_child(args: list[str]) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares slope of y on x, and the exponent of a log-log fit."""
    n, mx, my = len(xs), sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / max(1e-12, sum((x - mx) ** 2 for x in xs))
    lx, ly = [math.log(x) for x in xs], [math.log(max(1, y)) for y in ys]
    mlx, mly = sum(lx) / n, sum(ly) / n
    exponent = sum((a - mlx) * (b - mly) for a, b in zip(lx, ly)) / max(1e-12, sum((a - mlx) ** 2 for a in lx))
    return slope, exponent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="swin3d_tiny")
    parser.add_argument("--voxel-size", type=float, default=0.02, help="stem voxel edge in metres (0: the model's)")
    parser.add_argument("--points", type=int, nargs="+", default=[50_000, 100_000, 200_000])
    parser.add_argument("--attention-voxels", type=int, nargs="+", default=[1000, 2000, 4000, 8000])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind = args.child[0]
        result = (child_model(args.model, int(args.child[1]), args.voxel_size or None, args.device)
                  if kind == "model" else child_attention(kind, int(args.child[1]), args.device))
        print(json.dumps(result))
        return
    common = ["--model", args.model, "--voxel-size", str(args.voxel_size), "--device", args.device]
    print(f"# Part 1: {args.model} forward pass, voxels of {args.voxel_size or 'the model'} m, {args.device}")
    print(f"{'points':>8} {'voxels':>8} {'peak MiB':>9} {'seconds':>8}")
    rows = []
    for points in args.points:
        row = _run_child(["model", str(points), *common])
        if "error" in row:
            print(f"{points:>8} failed: {row['error']}")
            continue
        rows.append(row)
        print(f"{row['points']:>8} {row['voxels']:>8} {row['peak_bytes'] / 2**20:>9.1f} {row['seconds']:>8.1f}",
              flush=True)
    if len(rows) >= 2:
        slope, exponent = _fit([r["voxels"] for r in rows], [r["peak_bytes"] for r in rows])
        print(f"slope {slope / 1024:.1f} KiB per voxel; log-log exponent {exponent:.2f} (1 = linear)")
    print(f"\n# Part 2: one attention layer (6 heads x 8), windows of 5 voxels, {args.device}")
    print(f"{'voxels':>8} {'windowed MiB':>13} {'dense MiB':>10} {'dense/windowed':>15}")
    fits: dict[str, list[tuple[int, int]]] = {"windowed": [], "dense": []}
    for voxels in args.attention_voxels:
        got = {kind: _run_child([kind, str(voxels), *common]) for kind in ("windowed", "dense")}
        if any("error" in g for g in got.values()):
            print(f"{voxels:>8} failed: {[g.get('error') for g in got.values()]}")
            continue
        for kind, g in got.items():
            fits[kind].append((g["voxels"], g["peak_bytes"]))
        w, d = got["windowed"]["peak_bytes"], got["dense"]["peak_bytes"]
        print(f"{got['dense']['voxels']:>8} {w / 2**20:>13.1f} {d / 2**20:>10.1f} {d / max(1, w):>15.1f}", flush=True)
    for kind, pairs in fits.items():
        if len(pairs) >= 2:
            _, exponent = _fit([p[0] for p in pairs], [p[1] for p in pairs])
            print(f"{kind}: log-log exponent {exponent:.2f}")


if __name__ == "__main__":
    main()
