"""Does a trained model's relevance sit on the object or on the border? Measured on a folder of val images.

For each image: the rollout (and grad-rollout) map of the model, and ``center_mass``: the share of the map's mass
inside the centred box covering 50% of the image area. A uniform map scores 0.5; "more mass on the animal than on
the border" is a score above 0.5. Two readings: ``raw`` (the relevance as computed; rollout keeps a large uniform
floor from the residual path, which pulls every score towards 0.5) and ``drawn`` (the map minus its minimum, what
the overlay shows). The same architecture with random weights is the control: a near-flat map can sit a hair
above 0.5 on most images, so compare the margins (``mean``, ``share_above_0.55``), not only the share above 0.5.

    PYTHONPATH=. python benchmarks/explain_center_mass.py runs/cats_vs_dogs ../shared/data/cats_vs_dogs/val
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from vitkit.data.decode import is_image_file
from vitkit.explain import center_mass, explain, load_crop, to_input
from vitkit.inference import default_preprocess
from vitkit.models import build_model
from vitkit.store import load_model


def heat_maps(model: torch.nn.Module, files: list[Path], prep, method: str, batch: int) -> torch.Tensor:
    """``method``'s map for each file, [files, grid_h, grid_w]."""
    maps = []
    for start in range(0, len(files), batch):
        images = torch.cat([to_input(load_crop(f, prep), prep) for f in files[start : start + batch]])
        maps.append(explain(model, images, method).heat[:, 0])
    return torch.cat(maps)


def summary(heat: torch.Tensor) -> dict:
    """center_mass statistics of raw and min-subtracted (drawn) maps."""
    result = {"images": len(heat)}
    drawn = heat - heat.amin(dim=(-2, -1), keepdim=True)
    for name, maps in (("raw", heat), ("drawn", drawn)):
        values = center_mass(maps.double())
        result[name] = {"share_above_0.5": (values > 0.5).double().mean().item(),
                        "share_above_0.55": (values > 0.55).double().mean().item(),
                        "mean": values.mean().item(), "median": values.median().item()}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a trained vitkit model folder")
    parser.add_argument("images", help="a folder of images (searched recursively), e.g. the val split")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N files per class folder (0: all)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model, meta = load_model(args.run)
    prep = default_preprocess(model.config, meta)
    files = _files(Path(args.images), args.limit)
    torch.manual_seed(0)
    control = build_model(model.config).eval()
    report = {"run": args.run, "images": args.images, "area": 0.5}
    for name, net in [("trained", model), ("random_init", control)]:
        for method in ("rollout", "grad-rollout"):
            report[f"{name}/{method}"] = summary(heat_maps(net, files, prep, method, args.batch))
            print(name, method, json.dumps(report[f"{name}/{method}"]), file=sys.stderr, flush=True)
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _files(folder: Path, limit: int) -> list[Path]:
    groups = sorted({p.parent for p in folder.rglob("*") if p.is_file() and is_image_file(p)})
    files = []
    for group in groups:
        found = sorted(p for p in group.iterdir() if p.is_file() and is_image_file(p))
        files += found[:limit] if limit else found
    return files


if __name__ == "__main__":
    raise SystemExit(main())
