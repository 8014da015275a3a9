"""Swin3D: sparse window attention against dense references, cRSE against the paper's per-pair formula,
invariances of the whole model, and the official parameter counts."""

from __future__ import annotations

import math

import pytest
import torch

import vitkit
from vitkit.models.swin3d.attention import windowed_attention
from vitkit.models.swin3d.crse import ContextualRSE, voxel_signals
from vitkit.models.swin3d.voxels import Voxels, voxelize
from vitkit.models.swin3d.windows import plan_windows


def random_voxels(n: int = 300, grid: int = 14, scans: int = 2, seed: int = 0) -> Voxels:
    """Distinct random voxels in ``scans`` scans, with a point inside each voxel, colours and normals."""
    g = torch.Generator().manual_seed(seed)
    flat = torch.randperm(scans * grid**3, generator=g)[:n].sort().values
    batch, rest = flat // grid**3, flat % grid**3
    coords = torch.stack([rest // grid**2, rest // grid % grid, rest % grid], dim=1)
    xyz = coords + torch.rand(n, 3, generator=g)
    rgb = torch.rand(n, 3, generator=g) * 2 - 1
    normal = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=1)
    return Voxels(batch, coords, 1, xyz.float(), rgb, normal)


def dense_attention(q, k, v, allowed):
    """Full attention over all voxels, with pairs outside ``allowed`` masked out: the reference."""
    logits = torch.einsum("ihd,jhd->hij", q, k).masked_fill(~allowed, float("-inf"))
    return torch.einsum("hij,jhd->ihd", torch.softmax(logits, dim=-1), v)


def same_window(voxels: Voxels, size: int, shift: int) -> torch.Tensor:
    window = torch.div(voxels.coords + shift, size, rounding_mode="floor")
    return (voxels.batch[:, None] == voxels.batch[None]) & (window[:, None] == window[None]).all(-1)


@pytest.mark.parametrize("shift", [0, 2])
def test_window_attention_equals_masked_dense_attention(shift):
    voxels = random_voxels()
    q, k, v = torch.randn(3, len(voxels), 2, 8, dtype=torch.float64).unbind(0)
    plan = plan_windows(voxels, size=5, shift=shift)
    got = windowed_attention(q, k, v, plan, signals=None, crse=None)
    want = dense_attention(q, k, v, same_window(voxels, 5, shift))
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert plan.num_windows > 10 and len(plan.buckets) > 1, "the test must cover several windows and size classes"


def test_shifted_windows_are_windows_of_shifted_coordinates():
    voxels = random_voxels(seed=1)
    q, k, v = torch.randn(3, len(voxels), 2, 4).unbind(0)
    moved = Voxels(voxels.batch, voxels.coords + 3, 1, voxels.xyz + 3, voxels.rgb, voxels.normal)
    shifted = windowed_attention(q, k, v, plan_windows(voxels, size=6, shift=3), None, None)
    on_moved = windowed_attention(q, k, v, plan_windows(moved, size=6, shift=0), None, None)
    torch.testing.assert_close(shifted, on_moved, atol=1e-6, rtol=0)
    unshifted = windowed_attention(q, k, v, plan_windows(voxels, size=6, shift=0), None, None)
    assert not torch.allclose(shifted, unshifted, atol=1e-3), "shifting must change the windows"


def crse_reference(voxels: Voxels, q, k, v, crse: ContextualRSE, size: int, shift: int, quant: int):
    """The paper's cRSE, one (query, key) pair at a time, with the tables read cell by cell."""
    n, heads, _ = q.shape
    signals = []  # per voxel: XYZ inside the window (+ the point inside the voxel), RGB, NORM; quantised
    for i in range(n):
        row = []
        for a in range(3):
            c = int(voxels.coords[i, a])
            local = (c + shift) % size + (float(voxels.xyz[i, a]) - c)
            row.append(local * quant)
        row += [float(x) * 2 * quant for x in voxels.rgb[i]] + [float(x) * 2 * quant for x in voxels.normal[i]]
        signals.append(row)
    tables = {kind: [getattr(crse, f"{kind}_{s}_table")[a] for s in ("xyz", "rgb", "norm") for a in range(3)]
              for kind in ("query", "key", "value")}
    lengths = [2 * size * quant] * 3 + [2 * 2 * 2 * quant] * 6
    window = [tuple(((voxels.coords[i] + shift) // size).tolist()) + (int(voxels.batch[i]),) for i in range(n)]
    out = torch.zeros_like(v)
    for i in range(n):
        keys = [j for j in range(n) if window[j] == window[i]]
        logits, values = [], []
        for j in keys:
            cells = [min(max(math.floor(signals[i][a] - signals[j][a] + lengths[a] // 2), 0), lengths[a] - 1)
                     for a in range(9)]
            r_q = sum(tables["query"][a][cells[a]] for a in range(9))  # [heads, head_dim]
            r_k = sum(tables["key"][a][cells[a]] for a in range(9))
            r_v = sum(tables["value"][a][cells[a]] for a in range(9))
            logits.append((q[i] * k[j]).sum(-1) + (q[i] * r_q).sum(-1) + (k[j] * r_k).sum(-1))
            values.append(v[j] + r_v)
        weights = torch.softmax(torch.stack(logits), dim=0)  # [keys, heads]
        out[i] = (weights[:, :, None] * torch.stack(values)).sum(0)
    return out


@pytest.mark.parametrize("shift", [0, 2])
def test_crse_equals_per_pair_formula(shift):
    torch.manual_seed(0)
    voxels = random_voxels(n=60, grid=8, scans=1, seed=2)
    size, quant, heads, head_dim = 4, 4, 2, 4
    crse = ContextualRSE(("xyz", "rgb", "norm"), size, quant, heads, head_dim).double()
    with torch.no_grad():  # larger tables than the init, so that the encoding dominates the test
        for p in crse.parameters():
            p.normal_()
    voxels.xyz, voxels.rgb, voxels.normal = voxels.xyz.double(), voxels.rgb.double(), voxels.normal.double()
    q, k, v = torch.randn(3, len(voxels), heads, head_dim, dtype=torch.float64).unbind(0)
    plan = plan_windows(voxels, size, shift)
    signals = voxel_signals(voxels, crse.signals, plan.local, quant)
    with torch.no_grad():
        got = windowed_attention(q, k, v, plan, signals, crse)
        want = crse_reference(voxels, q, k, v, crse, size, shift, quant)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def scan(points: int = 1500, seed: int = 0):
    """A small synthetic scan on a 1/1024 m lattice (exact in float32 under whole-voxel moves)."""
    g = torch.Generator().manual_seed(seed)
    xyz = torch.randint(0, 3 * 1024, (points, 3), generator=g).float() / 1024
    xyz[: points // 2, 2] = 0.25  # a floor-like plane, so windows hold many voxels
    rgb = torch.rand(points, 3, generator=g) * 2 - 1
    normal = torch.nn.functional.normalize(torch.randn(points, 3, generator=g), dim=1)
    return xyz, rgb, normal


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return vitkit.create_model("swin3d_tiny", num_classes=5, voxel_size=0.125).eval()


def test_translation_by_whole_voxels_changes_nothing(tiny):
    xyz, rgb, normal = scan()
    with torch.no_grad():
        before = tiny(voxelize(xyz, rgb, normal, voxel_size=0.125))
        after = tiny(voxelize(xyz + torch.tensor([7 * 0.125, -3 * 0.125, 40 * 0.125]), rgb, normal,
                              voxel_size=0.125))
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


def test_permuting_points_permutes_outputs(tiny):
    xyz, rgb, normal = scan(seed=1)
    batch = (torch.arange(xyz.shape[0]) >= 1000).long()  # two scans in one batch
    perm = torch.randperm(xyz.shape[0], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = tiny(voxelize(xyz, rgb, normal, batch, voxel_size=0.125))
        after = tiny(voxelize(xyz[perm], rgb[perm], normal[perm], batch[perm], voxel_size=0.125))
    torch.testing.assert_close(after, before[perm], atol=1e-5, rtol=0)


def test_scans_of_a_batch_do_not_see_each_other(tiny):
    xyz, rgb, normal = scan(seed=2)
    other = scan(seed=5)
    with torch.no_grad():
        alone = tiny(voxelize(xyz, rgb, normal, voxel_size=0.125))
        batch = torch.cat([torch.zeros(len(xyz)), torch.ones(len(other[0]))]).long()
        together = tiny(voxelize(torch.cat([xyz, other[0]]), torch.cat([rgb, other[1]]),
                                 torch.cat([normal, other[2]]), batch, voxel_size=0.125))
    torch.testing.assert_close(together[: len(xyz)], alone, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name, readme_millions", [("swin3d_s", 23.57), ("swin3d_l", 60.75)])
def test_parameter_counts_equal_the_official_readme(name, readme_millions):
    model = vitkit.create_model(name, num_classes=13, device="meta")
    count = sum(p.numel() for p in model.parameters())
    assert round(count / 1e6, 2) == readme_millions, f"{name}: {count:,} parameters"


def test_unknown_option_and_bad_points_are_one_line_errors():
    with pytest.raises(vitkit.VitkitError, match="in_channels"):
        vitkit.create_model("swin3d_tiny", in_channels=5)
    with pytest.raises(vitkit.VitkitError, match="NaN"):
        voxelize(torch.tensor([[0.0, float("nan"), 0.0]]), torch.zeros(1, 3), voxel_size=0.1)


def test_knn_on_dense_points_splits_its_queries_and_stays_exact(monkeypatch):
    """A dense cluster (thousands of candidates per cell) with a small budget: the grid search splits its queries
    (normals of the S3DIS fragments needed 19 GB before) and still equals brute force."""
    from vitkit.models.swin3d import sparse
    from vitkit.models.swin3d.sparse import knn

    calls, grid_knn = [], sparse._grid_knn
    monkeypatch.setattr(sparse, "_grid_knn", lambda query, *rest: calls.append(len(query)) or grid_knn(query, *rest))
    g = torch.Generator().manual_seed(0)
    points = torch.rand(3000, 3, generator=g) * 0.3  # ~3000 points in one 0.2-m neighbourhood
    batch = torch.zeros(3000, dtype=torch.long)
    index, dist = knn(points, batch, points, batch, 8, cell=0.2, budget=50_000)
    expected = torch.cdist(points.double(), points.double()).topk(8, largest=False).values
    torch.testing.assert_close(dist.double(), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close((points[index] - points[:, None]).norm(dim=-1).double(), expected, atol=1e-5, rtol=0)
    assert len(calls) > 2  # the 3000 queries were split (one call before)
