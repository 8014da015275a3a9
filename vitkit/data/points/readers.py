"""Reading scans: PLY files, the S3DIS layout and the ScanNet layout. Malformed input is a one-line error.

- PLY (``plyfile``): a ``vertex`` element with ``x y z`` and ``red green blue``; ``nx ny nz`` and ``label`` when
  present.
- S3DIS (``Area_N/<room>/Annotations/<class>_<i>.txt``): one object per file, ``x y z r g b`` per line; the
  class is the file name before the last ``_``.
- ScanNet (``<scene>/<scene>_vh_clean_2.ply`` with ``<scene>_vh_clean_2.labels.ply``): the NYU40 ids of the
  labels file mapped to the 20 benchmark classes (other ids are -1, ignored).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import VitkitError
from .cloud import S3DIS_CLASSES, PointCloud

SCANNET_CLASSES = ("wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf",
                   "picture", "counter", "desk", "curtain", "refrigerator", "shower curtain", "toilet", "sink",
                   "bathtub", "otherfurniture")
SCANNET_NYU40_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)
S3DIS_ALIASES = {"stairs": "clutter"}  # a few rooms use a 14th folder name; S3DIS benchmarks count it as clutter


def read_ply(path: str | Path, class_names: tuple[str, ...] = S3DIS_CLASSES) -> PointCloud:
    """A scan from a PLY file (binary or ASCII)."""
    from plyfile import PlyData

    path = Path(path)
    try:
        data = PlyData.read(str(path))
    except FileNotFoundError:
        raise VitkitError(f"{path}: no such file") from None
    except Exception as error:  # plyfile raises several types for damaged files
        raise VitkitError(f"{path}: not a readable PLY file ({error}); re-export it as PLY") from None
    if "vertex" not in data:
        raise VitkitError(f"{path}: the PLY file has no 'vertex' element; a point cloud needs one")
    vertex = data["vertex"].data
    names = set(vertex.dtype.names or ())
    missing = {"x", "y", "z", "red", "green", "blue"} - names
    if missing:
        raise VitkitError(f"{path}: the vertices lack {', '.join(sorted(missing))}; a scan needs x y z and "
                          "red green blue")
    xyz = np.stack([vertex[c] for c in "xyz"], axis=1).astype(np.float32)
    rgb = np.stack([vertex[c] for c in ("red", "green", "blue")], axis=1).astype(np.uint8)
    normal = (np.stack([vertex[c] for c in ("nx", "ny", "nz")], axis=1).astype(np.float32)
              if {"nx", "ny", "nz"} <= names else None)
    labels = vertex["label"].astype(np.int64) if "label" in names else None
    if labels is not None and (labels >= len(class_names)).any():
        raise VitkitError(f"{path}: labels go up to {labels.max()} but there are {len(class_names)} classes")
    return PointCloud(xyz, rgb, normal, labels, class_names, path.stem)


def _read_s3dis_object(path: Path) -> np.ndarray:
    try:
        values = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except ValueError as error:
        raise VitkitError(f"{path}: not 'x y z r g b' numbers on every line ({error})") from None
    if values.shape[1] != 6:
        raise VitkitError(f"{path}: lines have {values.shape[1]} numbers, S3DIS annotations have 6 (x y z r g b)")
    return values


def read_s3dis_room(room: str | Path) -> PointCloud:
    """A room of the S3DIS layout: every ``Annotations/<class>_<i>.txt`` of ``room``, labelled by class."""
    room = Path(room)
    files = sorted((room / "Annotations").glob("*.txt"))
    if not files:
        raise VitkitError(f"{room}: no Annotations/<class>_<i>.txt files; point --data at an S3DIS folder")
    parts, labels = [], []
    for file in files:
        name = S3DIS_ALIASES.get(file.stem.rpartition("_")[0], file.stem.rpartition("_")[0])
        if name not in S3DIS_CLASSES:
            raise VitkitError(f"{file}: unknown S3DIS class {name!r}; expected one of {', '.join(S3DIS_CLASSES)}")
        values = _read_s3dis_object(file)
        parts.append(values)
        labels.append(np.full(len(values), S3DIS_CLASSES.index(name), dtype=np.int64))
    values = np.concatenate(parts)
    rgb = values[:, 3:]
    if rgb.min() < 0 or rgb.max() > 255:
        raise VitkitError(f"{room}: colours outside 0..255; S3DIS colours are integers 0..255")
    return PointCloud(values[:, :3].copy(), rgb.astype(np.uint8), None, np.concatenate(labels), S3DIS_CLASSES,
                      f"{room.parent.name}/{room.name}")


def read_scannet_scene(mesh: str | Path) -> PointCloud:
    """A ScanNet scene: the vertices of ``*_vh_clean_2.ply``, labels from ``*_vh_clean_2.labels.ply`` beside it."""
    mesh = Path(mesh)
    cloud = read_ply(mesh, SCANNET_CLASSES)
    label_file = mesh.with_name(mesh.name.replace(".ply", ".labels.ply"))
    if label_file.exists():
        from plyfile import PlyData

        vertex = PlyData.read(str(label_file))["vertex"].data
        if "label" not in (vertex.dtype.names or ()) or len(vertex) != len(cloud):
            raise VitkitError(f"{label_file}: needs a 'label' per vertex of {mesh.name} ({len(cloud)} vertices)")
        lookup = np.full(256, -1, dtype=np.int64)
        lookup[list(SCANNET_NYU40_IDS)] = np.arange(len(SCANNET_NYU40_IDS))
        cloud.labels = lookup[np.clip(vertex["label"].astype(np.int64), 0, 255)]
    cloud.name = mesh.parent.name
    return cloud




def find_scans(root: str | Path) -> list[Path]:
    """The scans under ``root``: S3DIS room folders, ScanNet ``*_vh_clean_2.ply`` files, or other ``.ply`` files."""
    root = Path(root)
    if not root.exists():
        raise VitkitError(f"{root}: no such folder")
    if root.is_file():
        return [root]
    rooms = sorted({p.parent.parent for p in root.rglob("Annotations/*.txt")})
    if rooms:
        return rooms
    scannet = sorted(root.rglob("*_vh_clean_2.ply"))
    if scannet:
        return scannet
    plys = sorted(p for p in root.rglob("*.ply") if not p.name.endswith(".labels.ply"))
    if plys:
        return plys
    raise VitkitError(f"{root}: no scans found; expected Area_N/<room>/Annotations/*.txt (S3DIS), "
                      "<scene>/<scene>_vh_clean_2.ply (ScanNet) or .ply files")


def read_scan(path: str | Path) -> PointCloud:
    """One scan of any supported layout (a path from :func:`find_scans`)."""
    path = Path(path)
    if path.is_dir():
        return read_s3dis_room(path)
    if path.name.endswith("_vh_clean_2.ply"):
        return read_scannet_scene(path)
    return read_ply(path)
