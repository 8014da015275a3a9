"""Is one checkout of vitkit as fast as another? The same workloads, interleaved, in a process per checkout.

    python benchmarks/ab_checkouts.py OLD_CHECKOUT NEW_CHECKOUT [--rounds 7] [--workloads vit_s-infer,...]

For a refactor that must not change speed: each checkout's vitkit is imported in a worker process of its own
(``--child``), the parent asks the two workers in turn for a timed sample, swapping which goes first each
round, so a machine that slows down mid-run slows both alike. Prints per workload the median images (clips)/s
of each checkout and new/old. Uses only ``vitkit.create_model`` and plain PyTorch, which both sides have.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

# name -> (registry name, config overrides, batch, input shape without batch)
VIDEO = dict(image_size=112, num_frames=16, tubelet_size=(2, 16, 16), dim=384, heads=6, depth=12, num_classes=400)
WORKLOADS = {
    "vit_s-infer": ("vit_s16", {"num_classes": 1000}, 32, (3, 224, 224)),
    "vit_s-train": ("vit_s16", {"num_classes": 1000}, 32, (3, 224, 224)),
    "vivit_m2-infer": ("vivit_m2_s", VIDEO, 4, (3, 16, 112, 112)),
    "vivit_m2-train": ("vivit_m2_s", VIDEO, 4, (3, 16, 112, 112)),
}


def child(checkout: str, workload: str) -> None:
    """Build the workload with ``checkout``'s vitkit, then answer each ``run SECONDS`` line with 'steps seconds'."""
    sys.path.insert(0, checkout)
    import torch
    import vitkit

    name, overrides, batch, shape = WORKLOADS[workload]
    model = vitkit.create_model(name, **overrides)
    inputs = torch.randn(batch, *shape)
    labels = torch.randint(0, overrides["num_classes"], (batch,))
    if workload.endswith("train"):
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

        def step() -> None:
            loss = torch.nn.functional.cross_entropy(model(inputs), labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    else:
        model.eval()

        def step() -> None:
            with torch.inference_mode():
                model(inputs)

    step()
    print("ready", flush=True)
    for line in sys.stdin:
        budget = float(line.split()[1])
        steps, start = 0, time.perf_counter()
        while steps == 0 or time.perf_counter() - start < budget:
            step()
            steps += 1
        print(steps * batch, time.perf_counter() - start, flush=True)


def compare(old: str, new: str, workload: str, rounds: int, seconds: float) -> tuple[float, float]:
    workers = {side: subprocess.Popen([sys.executable, __file__, "--child", path, workload], text=True,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
               for side, path in (("old", old), ("new", new))}
    try:
        for worker in workers.values():
            assert worker.stdout.readline().strip() == "ready", "a worker failed to build its model"
        rates: dict[str, list[float]] = {"old": [], "new": []}
        for index in range(rounds):
            order = ("old", "new") if index % 2 == 0 else ("new", "old")
            for side in order:
                workers[side].stdin.write(f"run {seconds}\n")
                workers[side].stdin.flush()
                items, elapsed = map(float, workers[side].stdout.readline().split())
                rates[side].append(items / elapsed)
        return statistics.median(rates["old"]), statistics.median(rates["new"])
    finally:
        for worker in workers.values():
            worker.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", nargs="?")
    parser.add_argument("new", nargs="?")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum time of one sample")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--child", nargs=2, metavar=("CHECKOUT", "WORKLOAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    old, new = (str(Path(p).resolve()) for p in (args.old, args.new))
    print("| workload | old /s | new /s | new / old |\n|---|---:|---:|---:|")
    for workload in args.workloads.split(","):
        old_rate, new_rate = compare(old, new, workload, args.rounds, args.seconds)
        print(f"| {workload} | {old_rate:.2f} | {new_rate:.2f} | {new_rate / old_rate:.3f} |", flush=True)


if __name__ == "__main__":
    main()
