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


def _ply(path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    """A bare scan: x y z and colours only (no normals, no labels), as most exported scans are."""
    vertex = np.empty(len(xyz), dtype=[("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"),
                                       ("blue", "u1")])
    for i, axis in enumerate("xyz"):
        vertex[axis] = xyz[:, i]
    for i, channel in enumerate(("red", "green", "blue")):
        vertex[channel] = rgb[:, i]
    from plyfile import PlyElement

    PlyData([PlyElement.describe(vertex, "vertex")]).write(str(path))


def test_predict_segments_bare_plys_and_s3dis_rooms(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    model = vitkit.create_model("swin3d_tiny", num_classes=13).eval()
    run = save_model(tmp_path / "run", model, class_names=list(S3DIS_CLASSES), voxel_size=0.1,
                     train={"task": "segmentation3d"})
    rng = np.random.default_rng(0)
    xyz = (rng.random((3000, 3)) * [4, 3, 2.5]).astype(np.float32)
    rgb = rng.integers(0, 256, (3000, 3)).astype(np.uint8)
    order = rng.permutation(3000)
    _ply(tmp_path / "scan.ply", xyz, rgb)
    (tmp_path / "shuffled").mkdir()
    _ply(tmp_path / "shuffled" / "scan_shuffled.ply", xyz[order], rgb[order])
    _s3dis_room(tmp_path / "rooms", 1)
    assert main(["predict", str(run), str(tmp_path / "scan.ply"), str(tmp_path / "shuffled"),
                 str(tmp_path / "rooms")]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and "3,000 points" in printed[0] and "1,200 points" in printed[2]
    read = {p.stem: PlyData.read(str(p))["vertex"] for p in (run / "predict").glob("*.ply")}
    assert set(read) == {"scan", "scan_shuffled", "Area_1_room_1"}
    plain, shuffled = read["scan"], read["scan_shuffled"]
    assert np.allclose(np.stack([plain[a] for a in "xyz"], 1), xyz)  # every point written back, in order
    assert np.array_equal(shuffled["pred"], plain["pred"][order])  # permuting points permutes the predictions
    assert len(np.unique(plain["pred"])) > 1 and (plain["label"] == -1).all()
    colours = np.stack([plain[c] for c in ("red", "green", "blue")], 1)
    from matplotlib import colormaps

    tab20 = (np.array([colormaps["tab20"](i)[:3] for i in range(13)]) * 255).astype(np.uint8)
    assert np.array_equal(colours, tab20[plain["pred"]])  # coloured by predicted class
    model.classifier[-1].bias.data[S3DIS_CLASSES.index("chair")] = 1e4  # a head that always says chair
    save_model(run, model, class_names=list(S3DIS_CLASSES), voxel_size=0.1, train={"task": "segmentation3d"})
    assert main(["predict", str(run), str(tmp_path / "scan.ply")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'scan.ply'}: 3,000 points -> chair 100%;")


def test_explain_draws_one_points_window_attention(tmp_path, capsys) -> None:
    from vitkit.data.points.pipeline import make_batch
    from vitkit.explain.points import window_attention
    from vitkit.train.seg3d_eval import scan_for_prediction

    torch.manual_seed(0)
    model = vitkit.create_model("swin3d_tiny", num_classes=13, depths=(2, 1, 2, 1, 1)).eval()  # + shifted
    run = save_model(tmp_path / "run", model, class_names=list(S3DIS_CLASSES), voxel_size=0.1,
                     train={"task": "segmentation3d"})
    rng = np.random.default_rng(1)
    _ply(tmp_path / "scan.ply", (rng.random((2000, 3)) * [3, 3, 2]).astype(np.float32),
         rng.integers(0, 256, (2000, 3)).astype(np.uint8))
    scan = scan_for_prediction(tmp_path / "scan.ply")
    stage = model.stages[0]
    for layer in range(len(stage.blocks)):  # regular and shifted windows
        found = window_attention(model, scan, 0.1, 7, layer)
        voxels = make_batch([scan], 0.1).inputs
        plan = stage.plans(voxels.voxels)[layer % 2][0]
        window_of_point = plan.window_of[voxels.point_to_voxel].numpy()
        in_window = window_of_point == window_of_point[7]  # the window plan_windows puts point 7's voxel in
        assert np.array_equal(~np.isnan(found.weights), in_window)
        per_voxel = {int(v): w for v, w in zip(voxels.point_to_voxel[in_window], found.weights[in_window])}
        assert len(per_voxel) == found.window_voxels and abs(sum(per_voxel.values()) - 1) < 1e-5  # a softmax row
    heads = [window_attention(model, scan, 0.1, 7, 0, head) for head in range(stage.blocks[0].attn.heads)]
    mean = np.mean([h.weights for h in heads], axis=0)
    assert np.allclose(mean, window_attention(model, scan, 0.1, 7, 0).weights, atol=1e-6, equal_nan=True)
    out = tmp_path / "figures"
    assert main(["explain", str(run), str(tmp_path / "scan.ply"), "--point", "7", "--out", str(out)]) == 0
    png = out / f"scan.point7.block{len(stage.blocks) - 1}.png"
    from PIL import Image

    assert Image.open(png).size == (1500, 540) and "point 7 (" in capsys.readouterr().out
    assert main(["explain", str(run), str(tmp_path / "scan.ply"), "--point", "5000", "--out", str(out)]) == 2
