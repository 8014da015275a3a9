"""Point-cloud data: PLY / S3DIS / ScanNet readers, their one-line errors, and the generated indoor rooms."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_data
from plyfile import PlyData, PlyElement

from vitkit.data.points.cloud import S3DIS_CLASSES
from vitkit.data.points.indoor_rooms import generate_room, rooms
from vitkit.data.points.readers import find_scans, read_ply, read_s3dis_room, read_scan
from vitkit.errors import VitkitError

# Point counts per file, from s3dis_samples/SOURCE.md.
CONFERENCE_ROOM_5 = {"board": 47806, "chair": 4818, "clutter": 2415, "door": 25597, "sofa": 8668, "table": 7113,
                     "wall": 58513}


def test_s3dis_reader_opens_the_real_samples():
    root = shared_data("s3dis_samples")
    assert [p.relative_to(root).as_posix() for p in find_scans(root)] == [
        "Area_1/conferenceRoom_1", "Area_1/hallway_1", "Area_5/conferenceRoom_1", "Area_5/copyRoom_1"]
    room = read_s3dis_room(root / "Area_5" / "conferenceRoom_1")
    counts = {S3DIS_CLASSES[i]: int(n) for i, n in zip(*np.unique(room.labels, return_counts=True))}
    assert counts == CONFERENCE_ROOM_5
    assert room.xyz.dtype == np.float32 and room.rgb.dtype == np.uint8 and room.normal is None
    first = np.loadtxt(root / "Area_5/conferenceRoom_1/Annotations/board_1.txt", max_rows=1)
    np.testing.assert_allclose(room.xyz[0], first[:3], atol=1e-4)
    np.testing.assert_array_equal(room.rgb[0], first[3:])


def _write_ply(path, fields, rows, text=False):
    vertex = np.array([tuple(r) for r in rows], dtype=fields)
    PlyData([PlyElement.describe(vertex, "vertex")], text=text).write(str(path))


def test_ply_round_trip_with_normals_and_labels(tmp_path):
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
              ("nx", "f4"), ("ny", "f4"), ("nz", "f4"), ("label", "i4")]
    rows = [(0.5, 1.0, 2.0, 10, 20, 30, 0, 0, 1, 2), (1.5, -1.0, 0.25, 255, 0, 7, 1, 0, 0, 12)]
    _write_ply(tmp_path / "a.ply", fields, rows)
    cloud = read_ply(tmp_path / "a.ply")
    np.testing.assert_array_equal(cloud.xyz, [[0.5, 1.0, 2.0], [1.5, -1.0, 0.25]])
    np.testing.assert_array_equal(cloud.rgb, [[10, 20, 30], [255, 0, 7]])
    np.testing.assert_array_equal(cloud.normal, [[0, 0, 1], [1, 0, 0]])
    np.testing.assert_array_equal(cloud.labels, [2, 12])


def test_scannet_layout_maps_nyu40_ids_to_the_20_classes(tmp_path):
    scene = tmp_path / "scene0000_00"
    scene.mkdir()
    xyzrgb = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    _write_ply(scene / "scene0000_00_vh_clean_2.ply", xyzrgb, [(0, 0, 0, 1, 2, 3), (1, 0, 0, 4, 5, 6), (2, 0, 0, 7, 8, 9)])
    _write_ply(scene / "scene0000_00_vh_clean_2.labels.ply", xyzrgb + [("label", "u2")],
               [(0, 0, 0, 0, 0, 0, 5), (1, 0, 0, 0, 0, 0, 13), (2, 0, 0, 0, 0, 0, 39)])
    (path,) = find_scans(tmp_path)
    cloud = read_scan(path)
    assert [cloud.class_names[i] if i >= 0 else None for i in cloud.labels] == ["chair", None, "otherfurniture"]


@pytest.mark.parametrize("content, message", [
    ("1 2 3 4 5\n", "lines have 5 numbers"),
    ("1 2 3 a b c\n", "x y z r g b"),
])
def test_malformed_s3dis_files_are_one_line_errors(tmp_path, content, message):
    annotations = tmp_path / "Area_1" / "office_1" / "Annotations"
    annotations.mkdir(parents=True)
    (annotations / "chair_1.txt").write_text(content)
    with pytest.raises(VitkitError, match=message) as error:
        read_scan(find_scans(tmp_path)[0])
    assert "chair_1.txt" in str(error.value) and "\n" not in str(error.value)


def test_malformed_ply_files_are_one_line_errors(tmp_path):
    (tmp_path / "junk.ply").write_bytes(b"not a ply at all")
    with pytest.raises(VitkitError, match="junk.ply: not a readable PLY"):
        read_ply(tmp_path / "junk.ply")
    _write_ply(tmp_path / "grey.ply", [("x", "f4"), ("y", "f4"), ("z", "f4")], [(0, 0, 0)])
    with pytest.raises(VitkitError, match="lack blue, green, red"):
        read_ply(tmp_path / "grey.ply")
    with pytest.raises(VitkitError, match="no such folder"):
        find_scans(tmp_path / "missing")


def test_generated_rooms_are_seeded_labelled_and_varied():
    a, b = generate_room(3), generate_room(3)
    np.testing.assert_array_equal(a.xyz, b.xyz)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(generate_room(4).xyz[:100], a.xyz[:100])
    train, val = rooms("train", 12), rooms("val", 2)
    seen = set(np.concatenate([r.labels for r in train]).tolist())
    assert seen == set(range(len(S3DIS_CLASSES))), f"missing classes: {set(range(13)) - seen}"
    assert all(r.class_names == S3DIS_CLASSES for r in train)
    assert {r.name for r in val}.isdisjoint(r.name for r in train)
    heights = a.xyz[:, 2]
    assert 2.5 < heights.max() < 3.3 and -0.05 < heights.min() < 0.05, "rooms are 2.6-3.2 m high"
