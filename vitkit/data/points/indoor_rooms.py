"""``indoor-rooms``: procedurally generated indoor scans with S3DIS labels, seeded and offline.

Each room is a box (floor, ceiling, four walls) with doors, windows, a board, bookcases, columns, beams, a table
with chairs, a sofa and clutter, built from planar primitives of realistic sizes and colours. Points are sampled
on visible surfaces at a scanner-like density, then degraded as a real scan is: Gaussian position noise, colour
noise, surfaces hidden behind objects removed, random occlusion holes and uneven density. Colours alone do not
give the class (walls, ceiling, beams, columns and boards are all pale; doors and tables share wood tones), so a
model must use geometry. Room ``i`` of a split is the same on every machine: train rooms use seeds 0, 1, ...,
held-out rooms seeds 1_000_000 + i.
"""

from __future__ import annotations

import numpy as np

from .cloud import S3DIS_CLASSES, PointCloud

NAME = "indoor-rooms"
VAL_SEED = 1_000_000
C = {name: i for i, name in enumerate(S3DIS_CLASSES)}

PALETTES = {  # class -> base colours (RGB 0..255); one is drawn per object, then varied
    "ceiling": [(232, 232, 228), (220, 222, 225)],
    "floor": [(140, 138, 132), (150, 112, 74), (92, 100, 118), (175, 170, 160)],
    "wall": [(214, 208, 194), (225, 225, 220), (200, 205, 210), (220, 210, 180)],
    "beam": [(230, 230, 226), (214, 208, 194)],
    "column": [(214, 208, 194), (225, 225, 220)],
    "window": [(105, 130, 160), (150, 165, 175), (80, 95, 110)],
    "door": [(130, 90, 52), (205, 203, 198), (96, 70, 48), (160, 120, 80)],
    "table": [(165, 122, 80), (222, 222, 218), (120, 120, 124), (96, 70, 48)],
    "chair": [(40, 40, 44), (40, 60, 130), (150, 40, 40), (120, 120, 124), (165, 122, 80)],
    "sofa": [(90, 90, 96), (50, 70, 120), (120, 80, 60), (150, 50, 50)],
    "bookcase": [(165, 122, 80), (222, 222, 218), (96, 70, 48)],
    "board": [(238, 238, 236), (230, 232, 228)],
    "clutter": [(200, 60, 60), (60, 160, 60), (60, 60, 200), (220, 200, 60), (30, 30, 30), (240, 240, 240)],
}


class _Scene:
    """Collects labelled surface samples, then degrades them like a scan."""

    def __init__(self, rng: np.random.Generator, density: float) -> None:
        self.rng, self.density = rng, density
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def colour(self, name: str) -> np.ndarray:
        options = PALETTES[name]
        base = np.array(options[self.rng.integers(len(options))], dtype=np.float32)
        return base + self.rng.normal(0, 10, 3)

    def rect(self, origin, u, v, label: str, colour=None) -> None:
        """A parallelogram origin + a u + b v, a, b in [0, 1], sampled at the scene's density."""
        origin, u, v = (np.asarray(x, dtype=np.float32) for x in (origin, u, v))
        area = float(np.linalg.norm(np.cross(u, v)))
        n = self.rng.poisson(area * self.density)
        if n == 0:
            return
        ab = self.rng.random((n, 2)).astype(np.float32)
        points = origin + ab[:, :1] * u + ab[:, 1:] * v
        rgb = np.broadcast_to(self.colour(label) if colour is None else colour, (n, 3))
        self.parts.append((points, rgb + self.rng.normal(0, 8, (n, 3)), np.full(n, C[label])))

    def box(self, low, size, label: str, angle: float = 0.0, pivot=(0, 0), bottom: bool = False, colour=None):
        """An axis-aligned box (then turned by ``angle`` about z around ``pivot``): its faces as rectangles."""
        x, y, z = (np.asarray(low, dtype=np.float32))
        sx, sy, sz = size
        colour = self.colour(label) if colour is None else colour
        start = len(self.parts)
        faces = [((x, y, z + sz), (sx, 0, 0), (0, sy, 0)), ((x, y, z), (sx, 0, 0), (0, 0, sz)),
                 ((x, y + sy, z), (sx, 0, 0), (0, 0, sz)), ((x, y, z), (0, sy, 0), (0, 0, sz)),
                 ((x + sx, y, z), (0, sy, 0), (0, 0, sz))]
        if bottom:
            faces.append(((x, y, z), (sx, 0, 0), (0, sy, 0)))
        for origin, u, v in faces:
            self.rect(origin, u, v, label, colour)
        if angle:
            c, s = np.cos(angle), np.sin(angle)
            rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float32)
            p = np.array([pivot[0], pivot[1], 0], dtype=np.float32)
            for i in range(start, len(self.parts)):
                pts, rgb, lab = self.parts[i]
                self.parts[i] = ((pts - p) @ rot.T + p, rgb, lab)

    def finish(self, carve: list[tuple[np.ndarray, np.ndarray, int]], name: str) -> PointCloud:
        xyz = np.concatenate([p[0] for p in self.parts])
        rgb = np.concatenate([p[1] for p in self.parts])
        labels = np.concatenate([p[2] for p in self.parts]).astype(np.int64)
        keep = np.ones(len(xyz), dtype=bool)
        for low, high, label in carve:  # surfaces hidden behind mounted or standing objects
            inside = np.all((xyz >= low) & (xyz <= high), axis=1) & (labels == label)
            keep &= ~inside
        for _ in range(self.rng.integers(3, 9)):  # occlusion shadows
            centre = xyz[self.rng.integers(len(xyz))]
            keep &= np.linalg.norm(xyz - centre, axis=1) > self.rng.uniform(0.15, 0.5)
        density = 1.0 - 0.5 * self.rng.random() * (np.sin(xyz[:, 0] * self.rng.uniform(1, 3)) > 0)
        keep &= self.rng.random(len(xyz)) < density  # uneven coverage
        xyz = xyz[keep] + self.rng.normal(0, 0.005, (int(keep.sum()), 3)).astype(np.float32)
        rgb = np.clip(rgb[keep], 0, 255).astype(np.uint8)
        return PointCloud(xyz.astype(np.float32), rgb, None, labels[keep], S3DIS_CLASSES, name)


def generate_room(seed: int, density: float = 300.0) -> PointCloud:
    """One room; ``density`` is points per square metre of surface before degradation."""
    rng = np.random.default_rng(seed)
    s = _Scene(rng, density)
    w, d, h = rng.uniform(3.5, 7.0), rng.uniform(3.0, 6.0), rng.uniform(2.6, 3.2)
    carve: list = []
    s.rect((0, 0, 0), (w, 0, 0), (0, d, 0), "floor")
    s.rect((0, 0, h), (w, 0, 0), (0, d, 0), "ceiling")
    wall = s.colour("wall")
    for origin, u in [((0, 0, 0), (w, 0, 0)), ((0, d, 0), (w, 0, 0)), ((0, 0, 0), (0, d, 0)), ((w, 0, 0), (0, d, 0))]:
        s.rect(origin, u, (0, 0, h), "wall", wall)

    def on_wall(width: float, height: float, bottom: float, depth: float, label: str, rng=rng):
        """A flat object mounted on a random wall: its rectangle sits ``depth`` in front of the wall."""
        side = rng.integers(4)
        length = w if side < 2 else d
        if width > length - 0.4:
            return
        a = rng.uniform(0.2, length - width - 0.2)
        if side == 0:
            origin, u, normal = (a, depth, bottom), (width, 0, 0), (0, 1, 0)
        elif side == 1:
            origin, u, normal = (a, d - depth, bottom), (width, 0, 0), (0, -1, 0)
        elif side == 2:
            origin, u, normal = (depth, a, bottom), (0, width, 0), (1, 0, 0)
        else:
            origin, u, normal = (w - depth, a, bottom), (0, width, 0), (-1, 0, 0)
        s.rect(origin, u, (0, 0, height), label)
        o, uu = np.array(origin, dtype=np.float32), np.array(u, dtype=np.float32)
        corner = o + uu + np.array([0, 0, height], dtype=np.float32)
        low, high = np.minimum(o, corner) - 0.1, np.maximum(o, corner) + 0.1
        carve.append((low, high, C["wall"]))
        if label == "window":  # a frame around the glass
            frame = s.colour("wall") * 0.9
            for z0 in (bottom, bottom + height - 0.05):
                s.rect(np.array(origin) + np.array(normal) * 0.01 + np.array([0, 0, z0 - bottom]), u, (0, 0, 0.05),
                       "window", frame)

    for _ in range(rng.integers(1, 3)):
        on_wall(rng.uniform(0.85, 1.0), rng.uniform(2.0, 2.1), 0.0, 0.03, "door")
    for _ in range(rng.integers(0, 4)):
        on_wall(rng.uniform(0.8, 2.0), rng.uniform(1.0, 1.4), rng.uniform(0.8, 1.0), 0.05, "window")
    if rng.random() < 0.7:
        on_wall(rng.uniform(1.2, 2.4), rng.uniform(0.9, 1.2), rng.uniform(0.8, 1.0), 0.02, "board")
    if rng.random() < 0.5:  # a beam across the ceiling
        width, depth = rng.uniform(0.25, 0.45), rng.uniform(0.25, 0.5)
        y = rng.uniform(0.5, d - 0.5)
        s.box((0, y, h - depth), (w, width, depth), "beam", bottom=True)
    for _ in range(rng.integers(0, 3)):  # columns in the walls
        size = rng.uniform(0.3, 0.6)
        x = rng.choice([0.0, w - size])
        y = rng.uniform(0.3, d - size - 0.3)
        s.box((x, y, 0), (size, size, h), "column")
    for _ in range(rng.integers(0, 3)):  # bookcases against the walls
        width, depth, height = rng.uniform(0.8, 1.6), rng.uniform(0.3, 0.4), rng.uniform(1.6, 2.2)
        x = rng.uniform(0.1, max(0.2, w - width - 0.1))
        y = rng.choice([0.02, d - depth - 0.02])
        frame = s.colour("bookcase")
        s.box((x, y, 0), (width, depth, height), "bookcase", colour=frame)
        for z in np.arange(0.35, height - 0.1, 0.38):  # books on the shelves
            s.box((x + 0.03, y + 0.03, z - 0.3), (width - 0.06, depth - 0.06, 0.26), "bookcase",
                  colour=s.colour("clutter"))
        carve.append((np.array([x, y - 0.1, -0.1]), np.array([x + width, y + depth + 0.1, height]), C["wall"]))
        carve.append((np.array([x, y, -0.1]), np.array([x + width, y + depth, 0.1]), C["floor"]))
    # a table with chairs around it, turned as a group
    tw, td = rng.uniform(1.2, 2.2), rng.uniform(0.7, 1.1)
    tx, ty = rng.uniform(0.8, max(0.9, w - tw - 0.8)), rng.uniform(0.8, max(0.9, d - td - 0.8))
    angle, pivot = rng.uniform(0, np.pi), (tx + tw / 2, ty + td / 2)
    top = rng.uniform(0.72, 0.78)
    wood = s.colour("table")
    s.box((tx, ty, top - 0.04), (tw, td, 0.04), "table", angle, pivot, bottom=True, colour=wood)
    for lx, ly in [(tx + 0.05, ty + 0.05), (tx + tw - 0.1, ty + 0.05), (tx + 0.05, ty + td - 0.1), (tx + tw - 0.1, ty + td - 0.1)]:
        s.box((lx, ly, 0), (0.05, 0.05, top - 0.04), "table", angle, pivot, colour=wood)
    for _ in range(rng.integers(0, 4)):
        s.box((tx + rng.uniform(0.1, tw - 0.4), ty + rng.uniform(0.1, td - 0.3), top), rng.uniform(0.1, 0.3, 3),
              "clutter", angle, pivot)
    chair = s.colour("chair")
    for i in range(rng.integers(2, 7)):
        long_side = i % 2 == 0
        cx = tx + rng.uniform(0.0, tw - 0.45) if long_side else rng.choice([tx - 0.6, tx + tw + 0.15])
        cy = rng.choice([ty - 0.6, ty + td + 0.15]) if long_side else ty + rng.uniform(0.0, td - 0.45)
        seat = rng.uniform(0.42, 0.48)
        s.box((cx, cy, seat - 0.05), (0.45, 0.45, 0.05), "chair", angle, pivot, bottom=True, colour=chair)
        back_y = cy + 0.41 if cy > ty else cy
        s.box((cx, back_y, seat), (0.45, 0.04, rng.uniform(0.35, 0.45)), "chair", angle, pivot, colour=chair)
        for lx, ly in [(cx, cy), (cx + 0.41, cy), (cx, cy + 0.41), (cx + 0.41, cy + 0.41)]:
            s.box((lx, ly, 0), (0.04, 0.04, seat - 0.05), "chair", angle, pivot, colour=chair)
    if rng.random() < 0.7:  # a sofa along a wall
        sw, sd = rng.uniform(1.5, 2.3), rng.uniform(0.8, 0.95)
        sx, sy = rng.uniform(0.1, max(0.2, w - sw - 0.1)), rng.choice([0.05, d - sd - 0.05])
        fabric = s.colour("sofa")
        s.box((sx, sy, 0), (sw, sd, rng.uniform(0.4, 0.45)), "sofa", colour=fabric)
        back = sy if sy < d / 2 else sy + sd - 0.2
        s.box((sx, back, 0), (sw, 0.2, rng.uniform(0.75, 0.9)), "sofa", colour=fabric)
        for ax in (sx, sx + sw - 0.18):
            s.box((ax, sy, 0), (0.18, sd, 0.6), "sofa", colour=fabric)
        carve.append((np.array([sx, sy, -0.1]), np.array([sx + sw, sy + sd, 0.1]), C["floor"]))
    for _ in range(rng.integers(2, 7)):  # clutter on the floor
        size = rng.uniform(0.15, 0.5, 3)
        s.box((rng.uniform(0.1, w - 0.6), rng.uniform(0.1, d - 0.6), 0), size, "clutter")
    return s.finish(carve, f"{NAME}/{seed}")


def rooms(split: str, count: int, density: float = 300.0) -> list[PointCloud]:
    """``count`` rooms of ``split`` (``train`` or ``val``, disjoint seeds)."""
    base = 0 if split == "train" else VAL_SEED
    return [generate_room(base + i, density) for i in range(count)]
