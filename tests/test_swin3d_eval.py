"""``vitkit eval`` of a segmentation3d run: its mIoU equals one recomputed from the coloured PLY predictions it
writes (labels and predictions read back with plyfile, IoU by numpy), and a run folder is required to be one."""

from __future__ import annotations

import json

import numpy as np
import torch
from plyfile import PlyData

import vitkit
from vitkit.cli import main
from vitkit.data.points.cloud import S3DIS_CLASSES
from vitkit.store import save_model


def _s3dis_room(root, seed: int) -> None:
    """A tiny S3DIS-layout room: a floor, a wall and a table top as annotation files."""
    rng = np.random.default_rng(seed)
    folder = root / "Area_1" / f"room_{seed}" / "Annotations"
    folder.mkdir(parents=True)
    planes = {"floor_1": lambda a, b: (a * 3, b * 3, 0 * a), "wall_1": lambda a, b: (a * 3, 0 * a, b * 2.5),
              "table_1": lambda a, b: (1 + a, 1 + b * 0.8, 0 * a + 0.75)}
    for name, plane in planes.items():
        a, b = rng.random(400), rng.random(400)
        xyz = np.stack(plane(a, b), axis=1)
        rgb = rng.integers(0, 256, (400, 3))
        np.savetxt(folder / f"{name}.txt", np.concatenate([xyz, rgb], axis=1), fmt="%.3f %.3f %.3f %d %d %d")


def test_eval_of_a_segmentation3d_run_matches_its_ply_predictions(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    model = vitkit.create_model("swin3d_tiny", num_classes=13).eval()
    run = save_model(tmp_path / "run", model, class_names=list(S3DIS_CLASSES), voxel_size=0.1,
                     train={"task": "segmentation3d"})
    for seed in (1, 2):
        _s3dis_room(tmp_path / "data", seed)
    assert main(["eval", str(run), "--data", str(tmp_path / "data")]) == 0
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    plys = sorted((run / "eval" / "ply").glob("*.ply"))
    assert len(plys) == 2 and (run / "eval" / "confusion_matrix.png").is_file()
    label = np.concatenate([PlyData.read(str(p))["vertex"]["label"] for p in plys])
    pred = np.concatenate([PlyData.read(str(p))["vertex"]["pred"] for p in plys])
    ious = []
    for c in range(13):
        union = np.sum((label == c) | (pred == c))
        if union:
            ious.append(np.sum((label == c) & (pred == c)) / union)
    assert abs(metrics["miou"] - float(np.mean(ious))) < 1e-9
    assert metrics["points"] == 2 * 3 * 400
    assert "mIoU" in capsys.readouterr().out
