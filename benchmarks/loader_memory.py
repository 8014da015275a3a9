"""Memory of training from a folder does not grow with the folder: peak memory of ViT-Ti at 128 px with 2 loader
workers (``--cache none``) on a 5,000-image and a 50,000-image JPEG folder, each run in a fresh process.

    PYTHONPATH=. python benchmarks/loader_memory.py [--small /work/cache/h6/jpeg5k] [--large /work/cache/h6/jpeg50k]
        [--steps 100] [--batch-size 32]
    # the whole epoch (and its evaluation):  ... --steps 0 --batch-size 64

Make the folders with ``benchmarks/loader_data.py OUT --count 5000`` / ``--count 50000`` (real photos re-encoded,
300-1,600 px long side). Memory is sampled every 0.2 s over the training process and its workers: the sum of RSS
(counts pages the workers share with the parent once per process, so it over-states) and the sum of PSS (shared
pages split between the processes that map them: the memory the run really holds). ``--steps N`` stops after N
optimiser steps (a whole epoch of 40,000 images does not fit a shared 2-core CPU's time); the peak of a longer run
is the same unless memory grows with the steps, which the growth column shows. Target (issue 18): peak on 50,000
images <= 1.3x the peak on 5,000 and under 3 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            children = []
        found += [int(c) for c in children]
        frontier += [int(c) for c in children]
    return found


def _field(path: str, name: str) -> int:
    try:
        with open(path) as info:
            for line in info:
                if line.startswith(name):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def sample(pid: int) -> tuple[int, int]:
    """(sum of RSS, sum of PSS) of ``pid`` and its descendants, bytes."""
    pids = _tree(pid)
    return (sum(_field(f"/proc/{p}/status", "VmRSS:") for p in pids),
            sum(_field(f"/proc/{p}/smaps_rollup", "Pss:") for p in pids))


def child(folder: str, steps: int, batch: int) -> None:
    from vitkit.train.config import TrainConfig
    from vitkit.train.loop import Trainer

    peaks = {"rss": 0, "pss": 0}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            rss, pss = sample(os.getpid())
            peaks["rss"], peaks["pss"] = max(peaks["rss"], rss), max(peaks["pss"], pss)
            time.sleep(0.2)

    threading.Thread(target=watch, daemon=True).start()
    config = TrainConfig(data=folder, model="vit_ti16", img_size=128, batch_size=batch, epochs=1, workers=2,
                         cache="none", precision="fp32", out=tempfile.mkdtemp(prefix="vitkit-membench-"))
    run = Trainer(config)
    start_rss, start_pss = sample(os.getpid())
    began = time.perf_counter()
    run.fit(stop_after_steps=steps or None)
    elapsed = time.perf_counter() - began
    end_rss, end_pss = sample(os.getpid())
    stop.set()
    print(json.dumps({"train_images": run.task.sizes[0], "steps": steps or run.steps_per_epoch,
                      "peak_rss": peaks["rss"], "peak_pss": peaks["pss"], "start_pss": start_pss, "end_pss": end_pss,
                      "seconds": round(elapsed, 1)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", default="/work/cache/h6/jpeg5k")
    parser.add_argument("--large", default="/work/cache/h6/jpeg50k")
    parser.add_argument("--steps", type=int, default=100, help="optimiser steps per run (0: one whole epoch)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.steps, args.batch_size)
    results = {}
    for folder in (args.small, args.large):
        command = [sys.executable, __file__, "--child", folder, "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size)]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
        if done.returncode != 0:
            raise SystemExit(f"{folder}: {done.stderr.strip().splitlines()[-1] if done.stderr.strip() else done.returncode}")
        results[folder] = json.loads(done.stdout.strip().splitlines()[-1])
    gib = 2**30
    print(f"ViT-Ti 128 px, 2 workers, --cache none, batch {args.batch_size}, "
          f"{'one epoch' if not args.steps else f'{args.steps} steps'} per folder, fresh process each")
    print(f"{'folder':<28} {'train images':>12} {'peak RSS sum':>13} {'peak PSS sum':>13} {'PSS growth':>11} {'time':>7}")
    for folder, r in results.items():
        print(f"{Path(folder).name:<28} {r['train_images']:>12,} {r['peak_rss'] / gib:>10.2f} GiB "
              f"{r['peak_pss'] / gib:>10.2f} GiB {(r['end_pss'] - r['start_pss']) / 2**20:>7.0f} MiB {r['seconds']:>6.0f}s")
    small, large = results[args.small], results[args.large]
    ratio = large["peak_pss"] / small["peak_pss"]
    ok = ratio <= 1.3 and large["peak_pss"] < 3e9
    print(f"peak PSS 50k / 5k = {ratio:.3f}; 50k peak {large['peak_pss'] / 1e9:.2f} GB "
          f"({'meets' if ok else 'misses'} <= 1.3x and < 3 GB); RSS-sum ratio {large['peak_rss'] / small['peak_rss']:.3f}")


if __name__ == "__main__":
    main()
