"""Load test of ``vitkit serve`` on loopback: does dynamic batching bring the server's throughput to ``vitkit
predict``'s, while a lone request keeps its single-image latency?

    PYTHONPATH=. python benchmarks/serve_load.py [--model vit_s16] [--requests 96] [--seconds 60] [--device cpu]

A random-init ViT-S/16 (224 px) is served by ``vitkit serve`` in a subprocess; asyncio clients (httpx) post
224 px photos (../shared/data/imagenette_224, else synthetic JPEGs) as raw bodies. Measured on the same machine,
one after the other, each bounded by ``--requests`` and ``--seconds``:

- ``vitkit predict``'s images/s: its own steps (``decode_files`` then ``predict_logits``, batch 64) in a fresh
  process, model loaded beforehand on ``--device``;
- the server (``--max-batch 32``) at 1, 8 and 32 concurrent clients: throughput, p50 and p99 latency;
- the server with ``--max-batch 1`` (no batching) at 32 clients;
- a bare single-image forward of the model (median, fresh process), against the server's p50 at 1 client.

Targets (issue 20): server at 32 clients >= 0.8x predict and >= 3x the ``--max-batch 1`` server; lone request
p50 <= 1.2x the bare forward. The clients share the CPU with the server, as a co-located caller would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "imagenette_224"


def photos(count: int, folder: Path) -> list[Path]:
    """Up to ``count`` 224 px photos: real ones when there, else synthetic JPEGs (smooth noise) in ``folder``."""
    found = sorted(PHOTOS.glob("val/*/*.JPEG"))[:: 7][:count] if PHOTOS.is_dir() else []
    if found:
        return found
    rng = np.random.default_rng(0)
    made = []
    for i in range(count):
        small = rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)
        path = folder / f"synthetic_{i}.jpg"
        Image.fromarray(small).resize((224, 224), Image.BICUBIC).save(path, quality=90)
        made.append(path)
    return made


def predict_images_per_s(run: Path, files: list[Path], device: str) -> float:
    """What ``vitkit predict RUN FILES`` does after loading the model (decode every file, then batches of 64),
    in a fresh process as the command runs; the model on ``device``."""
    from vitkit.data.images import decode_files
    from vitkit.inference import open_model
    from vitkit.train.evaluate import predict_logits

    opened = open_model(run, device)
    model, prep, names = opened.model, opened.preprocess, opened.class_names
    predict_logits(model, decode_files(files[:8], [0] * 8, names, prep.short_side, desc=None), prep, desc=None)
    _sync(device)
    start = time.perf_counter()
    data = decode_files(files, [0] * len(files), names, prep.short_side, desc=None)
    predict_logits(model, data, prep, desc=None)
    _sync(device)
    return len(files) / (time.perf_counter() - start)


def bare_forward_ms(run: Path, device: str, repeats: int = 15) -> float:
    """Median time of the model alone on one pre-made 224 px input (a fresh process, like the server)."""
    from vitkit.store import load_model

    model, _ = load_model(run, device=device)
    x = torch.randn(1, 3, 224, 224, device=device)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 3):
            _sync(device)
            start = time.perf_counter()
            model(x)
            _sync(device)
            if i >= 3:
                times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def in_fresh_process(phase: str, run: Path, files: list[Path], device: str) -> float:
    """Run ``phase`` (predict or bare) of this script in a new Python process and return its number."""
    command = [sys.executable, __file__, "--phase", phase, "--run", str(run), "--device", device, *map(str, files)]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                            timeout=1800)
    if result.returncode:
        raise SystemExit(f"{phase} failed: {result.stderr[-2000:]}")
    return float(result.stdout.split()[-1])


@contextlib.contextmanager
def server(run: Path, *options: str) -> Iterator[str]:
    """``vitkit serve RUN OPTIONS`` on a free loopback port, until the block ends."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "vitkit", "serve", str(run), "--port", str(port), *options],
                               env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            if process.poll() is not None:
                raise SystemExit(f"vitkit serve exited with {process.returncode}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


async def load(url: str, bodies: list[bytes], clients: int, requests: int, seconds: float) -> dict[str, float]:
    """``clients`` concurrent clients posting photos until ``requests`` answers or ``seconds`` have passed."""
    import httpx

    latencies: list[float] = []
    budget = {"left": 0, "stop": 0.0}

    async def client(http: httpx.AsyncClient) -> None:
        while budget["left"] > 0 and time.perf_counter() < budget["stop"]:
            budget["left"] -= 1
            body = bodies[budget["left"] % len(bodies)]
            start = time.perf_counter()
            answer = await http.post(f"{url}/v1/predict", content=body, headers={"content-type": "image/jpeg"})
            answer.raise_for_status()
            latencies.append(time.perf_counter() - start)

    async def run(count: int, concurrency: int) -> float:
        budget.update(left=count, stop=time.perf_counter() + seconds)
        begin = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        return time.perf_counter() - begin

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=300) as http:
        await run(min(clients, 8), min(clients, 8))  # warm-up (connections, first batches), not counted
        latencies.clear()
        wall = await run(requests, clients)
    ms = np.array(latencies) * 1000
    return {"clients": clients, "answers": len(ms), "images_per_s": len(ms) / wall,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_s16")
    parser.add_argument("--requests", type=int, default=96, help="answers per measurement (at most)")
    parser.add_argument("--seconds", type=float, default=60, help="time per measurement (at most)")
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="where the model runs (the server's --device)")
    parser.add_argument("--phase", choices=["predict", "bare"], help=argparse.SUPPRESS)  # internal: one measurement
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        files = [Path(f) for f in args.files]
        fn = predict_images_per_s if args.phase == "predict" else bare_forward_ms
        print(fn(Path(args.run), files, args.device) if args.phase == "predict" else fn(Path(args.run), args.device))
        return

    from vitkit.models import create_model
    from vitkit.store import save_model

    work = Path(tempfile.mkdtemp(prefix="vitkit-serve-load-"))
    torch.manual_seed(0)
    run = save_model(work / "run", create_model(args.model, num_classes=10), class_names=[f"c{i}" for i in range(10)],
                     preprocess={"image_size": 224, "short_side": 256, "mean": [0.5] * 3, "std": [0.5] * 3})
    files = photos(args.photos, work)
    bodies = [f.read_bytes() for f in files]
    print(f"{args.model} on {args.device}, {len(files)} photos "
          f"({'imagenette_224' if 'imagenette' in str(files[0]) else 'synthetic'}), {os.cpu_count()} CPUs", flush=True)

    predict = in_fresh_process("predict", run, files, args.device)
    print(f"vitkit predict: {predict:.1f} images/s", flush=True)
    rows = []
    with server(run, "--max-batch", "32", "--device", args.device) as url:
        for clients in (1, 8, 32):
            rows.append({"server": "--max-batch 32", **asyncio.run(load(url, bodies, clients, args.requests,
                                                                        args.seconds))})
            print(rows[-1], flush=True)
    with server(run, "--max-batch", "1", "--device", args.device) as url:
        rows.append({"server": "--max-batch 1", **asyncio.run(load(url, bodies, 32, args.requests, args.seconds))})
        print(rows[-1], flush=True)
    bare = in_fresh_process("bare", run, files, args.device)

    print("\n| server | clients | answers | images/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r['server']}` | {r['clients']} | {r['answers']} | {r['images_per_s']:.1f} | {r['p50_ms']:.0f} "
              f"| {r['p99_ms']:.0f} |")
    batched, single, lone = rows[2], rows[3], rows[0]
    checks = [("32 clients vs vitkit predict", batched["images_per_s"] / predict, ">=", 0.8),
              ("32 clients vs --max-batch 1", batched["images_per_s"] / single["images_per_s"], ">=", 3.0),
              ("lone request p50 vs bare forward", lone["p50_ms"] / bare, "<=", 1.2)]
    print(f"\nvitkit predict {predict:.1f} images/s; bare single-image forward {bare:.1f} ms\n")
    print("| ratio | value | target | |\n|---|---|---|---|")
    for name, value, op, target in checks:
        ok = value >= target if op == ">=" else value <= target
        print(f"| {name} | {value:.2f} | {op} {target} | {'pass' if ok else 'FAIL'} |")


if __name__ == "__main__":
    main()
