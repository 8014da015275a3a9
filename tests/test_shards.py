"""WebDataset shards (vitkit/data/shards.py, shard_writer.py, ``vitkit shard``): what is written is the folder's
files with their classes; an epoch reads every sample once across processes; a resumed epoch continues at the
first sample not yet trained on, in the same order, bit for bit; unreadable samples are skipped and listed."""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import run_cli
from test_training import make_folder
from vitkit.data.pipeline import Augment, Preprocess
from vitkit.data.shard_writer import parse_size, write_shards
from vitkit.data.shards import ShardBatches, ShardPlan, open_shards
from vitkit.data.stream import StepLoader
from vitkit.errors import VitkitError

PREP = Preprocess(24, 28, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
AUG = Augment(policy="randaugment", mixup=0.4)


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("shards")
    folder = make_folder(root / "shapes", per_class=20)  # 40 train, 20 val images
    result = run_cli("shard", str(folder), str(root / "out"), "--shard-size", "24KB")
    assert result.returncode == 0, result.stderr
    assert "wrote 60 samples" in result.stdout
    return folder, root / "out"


def _members(shard: Path) -> dict[str, bytes]:
    with tarfile.open(shard) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def test_the_shards_hold_every_file_once_with_its_class_and_the_index_counts_them(written) -> None:
    folder, out = written
    index = json.loads((out / "index.json").read_text())
    assert index["classes"] == ["circle", "square"] == (out / "classes.txt").read_text().split()
    originals = Counter((p.read_bytes(), p.parent.name) for p in folder.glob("train/*/*"))
    found: Counter = Counter()
    for entry in index["splits"]["train"]:
        members = _members(out / entry["name"])
        keys = {name.split(".", 1)[0] for name in members}
        assert len(keys) == entry["count"]
        assert (out / entry["name"]).stat().st_size <= 24_000
        for key in keys:
            data = next(v for k, v in members.items() if k.startswith(key + ".") and not k.endswith(".cls"))
            found[(data, index["classes"][int(members[key + ".cls"])])] += 1
    assert len(index["splits"]["train"]) > 2
    assert found == originals


def test_short_side_re_encodes_larger_images_and_keeps_smaller_files(tmp_path) -> None:
    for name, size in (("a", (300, 200)), ("b", (30, 20))):
        for label in ("x", "y"):
            (tmp_path / "in" / label).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", size, (200, 10, 10)).save(tmp_path / "in" / label / f"{name}.png")
    report = write_shards(tmp_path / "in", tmp_path / "out", short_side=50, val_fraction=0.5)
    members = {}
    for shard in sorted((tmp_path / "out").glob("*.tar")):
        members.update(_members(shard))
    sizes = sorted(Image.open(io.BytesIO(v)).size for k, v in members.items() if not k.endswith(".cls"))
    assert sizes == [(30, 20), (30, 20), (75, 50), (75, 50)]
    assert sum(report.samples.values()) == 4


def _plan(out: Path, world: int, lanes: int, batch: int = 8) -> ShardPlan:
    return ShardPlan(open_shards(str(out)), seed=5, batch_size=batch, world=world, lanes=lanes)


def _epoch(plan: ShardPlan, rank: int, epoch: int, first: int, workers: int) -> list:
    loader = StepLoader(ShardBatches(plan, rank, PREP, AUG), workers)
    try:
        return list(loader.batches(epoch, range(first, plan.steps_per_epoch)))
    finally:
        loader.close()


def test_every_sample_is_read_once_per_epoch_across_processes(written) -> None:
    _, out = written
    for epoch in (0, 1):
        plans = [_plan(out, world=2, lanes=2)] * 2
        keys = [k for rank in (0, 1) for batch in _epoch(plans[rank], rank, epoch, 0, 0) for k in batch.keys]
        assert len(keys) == len(set(keys)) == plans[0].steps_per_epoch * 8 == 40


def test_a_resumed_epoch_continues_at_the_first_sample_not_trained_on_in_the_same_order(written) -> None:
    _, out = written
    plan = _plan(out, world=1, lanes=2, batch=6)
    whole = _epoch(plan, 0, 1, 0, workers=2)
    assert len(whole) == plan.steps_per_epoch == 6
    for first in (1, 4):
        resumed = _epoch(plan, 0, 1, first, workers=2)
        assert [b.keys for b in resumed] == [b.keys for b in whole[first:]]
        for a, b in zip(resumed, whole[first:]):
            assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    in_process = _epoch(plan, 0, 1, 3, workers=0)
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(in_process, whole[3:]))
    other_epoch = _epoch(plan, 0, 2, 0, workers=2)
    assert [b.keys for b in other_epoch] != [b.keys for b in whole]


def test_an_unreadable_sample_inside_a_shard_is_replaced_and_listed(tmp_path) -> None:
    folder = make_folder(tmp_path / "shapes", per_class=4, modes=False)
    victim = sorted(folder.glob("train/circle/*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:60])  # truncated
    write_shards(folder, tmp_path / "out")
    plan = _plan(tmp_path / "out", world=1, lanes=1, batch=8)
    (batch,) = _epoch(plan, 0, 0, 0, workers=1)
    assert len(batch.skipped) == 1 and "train-000000.tar" in batch.skipped[0][0]
    assert "truncated" in batch.skipped[0][1]
    assert torch.isfinite(batch.inputs).all() and batch.inputs.shape == (8, 3, 24, 24)


def test_sizes_parse_and_bad_sizes_are_one_clear_error() -> None:
    assert parse_size("1GB") == 10**9 and parse_size("64KiB") == 65536 and parse_size("2000") == 2000
    for bad in ("big", "0MB", "-1GB"):
        with pytest.raises(VitkitError, match="--shard-size"):
            parse_size(bad)
