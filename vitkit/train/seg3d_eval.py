"""``vitkit eval`` of a segmentation3d run on labelled scans (mIoU, per-class IoU, the confusion matrix) and
``vitkit predict`` on any scans; both write each scan back as a PLY coloured by predicted class.

    vitkit eval runs/indoor-rooms-swin3d_tiny --data ../shared/data/s3dis_samples
    vitkit predict runs/indoor-rooms-swin3d_tiny scan.ply more_scans/
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.points import indoor_rooms
from ..data.points.cloud import PointCloud, estimate_normals
from ..data.points.pipeline import load_scans, make_batch
from ..data.points.readers import find_scans, read_scan
from ..errors import VitkitError
from ..store import load_model
from . import report
from .segmentation3d import evaluate_scans, logits_of


def eval_scans(data: str, val_count: int = 6) -> list[PointCloud]:
    """The scans ``vitkit eval`` scores: the held-out rooms of ``indoor-rooms``, or every scan of a folder."""
    if data == indoor_rooms.NAME:
        return load_scans(data, 0, val_count)[1]
    scans = [_with_normals(read_scan(p)) for p in find_scans(Path(data))]
    for scan in scans:
        if scan.labels is None:
            raise VitkitError(f"{scan.name}: the scan has no labels; `vitkit eval` needs labelled scans")
    return scans


def scan_for_prediction(path: Path) -> PointCloud:
    """A scan of any layout (a PLY file, an S3DIS room, a ScanNet scene), with normals, labels optional."""
    return _with_normals(read_scan(path))


def _with_normals(scan: PointCloud) -> PointCloud:
    if scan.normal is None:  # the model's input has normals; PLYs without them get estimated ones
        scan.normal = estimate_normals(scan.xyz)
    return scan


def class_colours(count: int) -> np.ndarray:
    """uint8 [count, 3]: one distinct colour per class (matplotlib's tab20)."""
    from matplotlib import colormaps

    return (np.array([colormaps["tab20"](i % 20)[:3] for i in range(count)]) * 255).astype(np.uint8)


def write_prediction_ply(path: Path, scan: PointCloud, predicted: np.ndarray, class_names: tuple[str, ...]) -> None:
    """A PLY of ``scan`` coloured by predicted class, with ``label`` (truth, -1 unknown) and ``pred`` columns."""
    from plyfile import PlyData, PlyElement

    colours = class_colours(len(class_names))[predicted]
    labels = scan.labels if scan.labels is not None else np.full(len(scan), -1)
    vertex = np.empty(len(scan), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                                        ("blue", "u1"), ("label", "i4"), ("pred", "i4")])
    for i, axis in enumerate("xyz"):
        vertex[axis] = scan.xyz[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertex[channel] = colours[:, i]
    vertex["label"], vertex["pred"] = labels, predicted
    path.parent.mkdir(parents=True, exist_ok=True)
    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))


def evaluate_run(run_dir: str | Path, data: str, out: str | Path | None = None,
                 weights_file: str = "model.safetensors") -> dict[str, Any]:
    """Score the run's model on ``data``; writes ``metrics.json``, ``confusion_matrix.png`` and ``ply/`` to ``out``."""
    model, meta = load_model(run_dir, weights_file=weights_file)
    class_names, voxel_size = tuple(meta["class_names"]), float(meta["voxel_size"])
    scans = eval_scans(data)
    if tuple(scans[0].class_names) != class_names:
        raise VitkitError(f"{data} has classes {scans[0].class_names} but the run was trained on {class_names}")
    out = Path(out or Path(run_dir) / "eval")
    metrics = {**evaluate_scans(model, scans, voxel_size, class_names), "data": data, "scans": len(scans)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    report.plot_confusion(out / "confusion_matrix.png", metrics["confusion_matrix"], list(class_names))
    for i, scan in enumerate(scans):
        name = (scan.name or f"scan{i}").replace("/", "_")
        write_prediction_ply(out / "ply" / f"{i:03d}-{name}.ply", scan, predict_scan(model, scan, voxel_size),
                             class_names)
    return metrics


@torch.no_grad()
def predict_scan(model: torch.nn.Module, scan: PointCloud, voxel_size: float) -> np.ndarray:
    """The predicted class of every point of ``scan``."""
    return logits_of(model, make_batch([scan], voxel_size)).argmax(1).numpy()


def print_metrics(metrics: dict[str, Any], out: Path) -> None:
    """The eval result as `vitkit eval` prints it: mIoU, accuracy, then one line per class."""
    print(f"mIoU {metrics['miou']:.2%}, accuracy {metrics['accuracy']:.2%} on {metrics['points']} points of "
          f"{metrics['scans']} scans")
    for name, iou in metrics["per_class_iou"].items():
        print(f"  {name:<10} {'absent' if iou is None else f'{iou:.2%}'}")
    print(f"metrics, confusion matrix and coloured PLY predictions in {out}")


def run_from_args(args: Any) -> int:
    """``vitkit eval RUN --data DATA`` for a segmentation3d run."""
    from ..outputs import refuse_existing

    out = Path(args.out or Path(args.run) / "eval")
    refuse_existing([out / "metrics.json", out / "confusion_matrix.png"], overwrite=args.overwrite)
    print_metrics(evaluate_run(args.run, args.data, out), out)
    return 0


def predict_from_args(args: Any) -> int:
    """``vitkit predict RUN SCAN...`` for a segmentation3d run: every scan (a PLY file, an S3DIS room, a ScanNet
    scene, or a folder of them) written to ``RUN/predict/`` coloured by predicted class, its class shares printed."""
    model, meta = load_model(args.run)
    class_names, voxel_size = tuple(meta["class_names"]), float(meta["voxel_size"])
    out = Path(args.run) / "predict"  # derived files: a new prediction of the same scan replaces the old one
    for path in (p for item in args.inputs for p in find_scans(Path(item))):
        scan = scan_for_prediction(path)
        predicted = predict_scan(model, scan, voxel_size)
        target = out / f"{(scan.name or path.stem).replace('/', '_')}.ply"
        write_prediction_ply(target, scan, predicted, class_names)
        shares = np.bincount(predicted, minlength=len(class_names)) / len(predicted)
        top = ", ".join(f"{class_names[c]} {shares[c]:.0%}" for c in np.argsort(-shares)[:3] if shares[c] > 0)
        print(f"{path}: {len(scan):,} points -> {top}; {target}")
    return 0
