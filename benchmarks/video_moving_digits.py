"""Moving-digits demo without the training CLI: a tiny ViViT learns the direction of motion of MNIST-5k digits.

    PYTHONPATH=. python benchmarks/video_moving_digits.py --variant spatiotemporal --minutes 10

A plain AdamW + cosine loop (the `vitkit train --task video` integration is not written yet); prints the
validation accuracy after each epoch with the elapsed time. The target of issue 6: >= 90% within 10 minutes
on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F

from vitkit.data.moving_digits import MovingDigits
from vitkit.models import ViViTConfig, VideoVisionTransformer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="spatiotemporal")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=40)
    parser.add_argument("--train-clips", type=int, default=4000)
    args = parser.parse_args()
    torch.manual_seed(0)
    train, val = MovingDigits("train", args.frames, args.size), MovingDigits("val", args.frames, args.size)
    pool = "cls" if args.variant in ("spatiotemporal", "factorised_encoder") else "mean"
    config = ViViTConfig(variant=args.variant, image_size=args.size, num_frames=args.frames, tubelet_size=(2, 8, 8),
                         dim=64, depth=4, temporal_depth=2, heads=4, num_classes=4, pool=pool)
    model = VideoVisionTransformer(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    batch, n = 64, min(args.train_clips, len(train))
    total = args.epochs * (n // batch)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (
        1 + math.cos(math.pi * min(s, total) / total)))
    start = time.monotonic()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(n)
        for step in range(n // batch):
            idx = order[step * batch : (step + 1) * batch].tolist()
            clips = torch.stack([train[i][0] for i in idx])
            labels = torch.tensor([train[i][1] for i in idx])
            loss = F.cross_entropy(model(clips), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            if time.monotonic() - start > args.minutes * 60:
                break
        accuracy = evaluate(model, val)
        print(f"epoch {epoch + 1}: loss {loss.item():.3f}  val accuracy {accuracy:.2%}  "
              f"[{(time.monotonic() - start) / 60:.1f} min]", flush=True)
        if time.monotonic() - start > args.minutes * 60:
            break


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: MovingDigits) -> float:
    model.eval()
    hits = 0
    for i in range(0, len(data), 200):
        clips = torch.stack([data[j][0] for j in range(i, min(i + 200, len(data)))])
        hits += int((model(clips).argmax(1) == data.labels[i : i + 200]).sum())
    return hits / len(data)


if __name__ == "__main__":
    main()
