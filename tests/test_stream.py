"""The streaming loader (vitkit/data/stream.py): batches built in worker processes from files on disk equal
the batches of the in-memory cache (random-resized crops: cut from the same part of each picture, resampled once
from the file), unreadable files are replaced and listed, and a worker that dies or fails names its file in one
line instead of hanging."""

from __future__ import annotations

import dataclasses
import os
import signal
import shutil
import time
from pathlib import Path

import pytest
import torch

from test_decode import _jpeg, _photo
from test_training import make_folder
from vitkit.data import images as images_module
from vitkit.data import files, stream
from vitkit.data.cache import plan_cache
from vitkit.data.decode import BadImage
from vitkit.data.folders import find_dataset
from vitkit.data.images import decode_files
from vitkit.data.pipeline import Augment, Preprocess, sample_generator, train_batch
from vitkit.errors import VitkitError

PREP = Preprocess(24, 28, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
MIXED = Augment(policy="randaugment", mixup=0.4, cutmix=1.0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("stream") / "shapes", per_class=8)


def _sets(root: Path):
    found = find_dataset(root)
    cached = decode_files(found.train.paths, found.train.labels, found.class_names, PREP.short_side, workers=1)
    streamed = files.StreamedImageSet(files.FileImages(found.train.paths, PREP.short_side), found.train.labels,
                                       found.class_names)
    return cached, streamed


def _build(streamed, order: list[int], batch: int, aug: Augment = MIXED, positions: range | None = None):
    def build(epoch: int, step: int) -> stream.StepBatch:
        indices = order[step * batch : (step + 1) * batch]
        images, targets = files.train_batch_from_files(streamed, indices, PREP, aug, 2, (3, epoch, step), positions)
        return stream.StepBatch(images, targets, files.take_skipped())
    return build


def _built_by(streamed, order: list[int], aug: Augment, workers: int, steps: int = 2) -> list[stream.StepBatch]:
    loader = stream.StepLoader(_build(streamed, order, 6, aug), workers=workers)
    try:
        return list(loader.batches(0, range(steps)))
    finally:
        loader.close()


def test_streamed_batches_equal_the_in_memory_cache_bit_for_bit(folder) -> None:
    """Crops cut from the fitted size (shift, center) come out of the workers exactly as from the cache."""
    cached, streamed = _sets(folder)
    order = torch.randperm(len(cached), generator=torch.Generator().manual_seed(1)).tolist()
    shifted = dataclasses.replace(MIXED, crop="shift")
    got = _built_by(streamed, order, shifted, workers=2)
    assert len(got) == 2
    for step, batch in enumerate(got):
        images, targets = train_batch(cached, order[step * 6 : (step + 1) * 6], PREP, shifted, 2, (3, 0, step))
        assert torch.equal(batch.inputs, images), f"step {step}: worker-built images differ from the cached path"
        assert torch.equal(batch.targets, targets)


def test_random_resized_crops_from_files_are_the_same_in_workers_and_in_process(folder) -> None:
    _, streamed = _sets(folder)
    order = torch.randperm(len(streamed), generator=torch.Generator().manual_seed(2)).tolist()
    in_process, in_workers = (_built_by(streamed, order, MIXED, workers) for workers in (0, 2))
    for ours, theirs in zip(in_process, in_workers):
        assert torch.equal(ours.inputs, theirs.inputs) and torch.equal(ours.targets, theirs.targets)


def test_a_crop_from_the_file_cuts_the_part_of_the_picture_its_cached_twin_cuts(tmp_path) -> None:
    """Streamed random-resized crops are resampled once from the file, cached ones from the fitted copy: the
    same draws must cut the same part of each picture (landscape, portrait, EXIF-turned, a large JPEG)."""
    sizes = [(300, 200, 1), (180, 320, 1), (640, 480, 6), (1600, 1200, 1), (90, 60, 1), (500, 375, 3)]
    paths = []
    for i, (width, height, orientation) in enumerate(sizes):
        paths.append(tmp_path / f"p{i}.jpg")
        paths[-1].write_bytes(_jpeg(_photo(width, height, seed=i), orientation))
    prep = Preprocess(64, 73, (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))  # inputs stay in 0..255
    aug = Augment(crop_scale=(0.08, 1.0), policy="none")
    labels = [0] * len(paths)
    cached = decode_files(paths, labels, ["x"], prep.short_side, workers=1)
    streamed = files.StreamedImageSet(files.FileImages(paths, prep.short_side), labels, ["x"])
    same, other = [], []
    for step in range(3):
        where = (5, 0, step)
        ours, _ = files.train_batch_from_files(streamed, list(range(len(paths))), prep, aug, 1, where)
        twins, _ = train_batch(cached, list(range(len(paths))), prep, aug, 1, where)
        others, _ = train_batch(cached, list(range(len(paths))), prep, aug, 1, (5, 0, step + 10))
        same += (ours - twins).abs().mean(dim=(1, 2, 3)).tolist()
        other += (ours - others).abs().mean(dim=(1, 2, 3)).tolist()
    # Resampled once or twice, the 8 px detail of these pictures differs by a few levels (0..255); crops of other
    # parts of the pictures differ by ~35 on average.
    assert max(same) < 10, f"mean |streamed - cached| per image: {same}"
    assert sum(same) * 4 < sum(other), (same, other)


def test_a_process_building_some_rows_gets_exactly_those_rows_of_the_whole_batch(folder) -> None:
    _, streamed = _sets(folder)
    order = list(range(len(streamed)))
    whole = _build(streamed, order, 6)(0, 1)
    rows = _build(streamed, order, 6, positions=range(3, 6))(0, 1)
    assert torch.equal(rows.inputs, whole.inputs[3:6]) and torch.equal(rows.targets, whole.targets[3:6])


def _with_a_broken_file(folder: Path, root: Path):
    shutil.copytree(folder, root)
    found = find_dataset(root)
    bad = found.train.paths[1]
    bad.write_bytes(b"<html>not an image</html>")
    streamed = files.StreamedImageSet(files.FileImages(found.train.paths, PREP.short_side), found.train.labels,
                                      found.class_names)
    return streamed, bad


def test_an_unreadable_file_is_replaced_by_the_next_readable_one_of_the_batch_and_listed(folder, tmp_path) -> None:
    streamed, bad = _with_a_broken_file(folder, tmp_path / "shapes")
    plain = Augment(crop="center", flip=False, policy="none")
    batch = _build(streamed, list(range(len(streamed))), 4, plain)(0, 0)
    assert [p for p, _ in batch.skipped] == [str(bad)]
    assert "not an image" in batch.skipped[0][1]
    assert torch.equal(batch.inputs[1], batch.inputs[2]), "position 1 should hold position 2's image"
    assert torch.equal(batch.targets[1], batch.targets[2])


def test_a_random_resized_crop_of_an_unreadable_file_is_cut_from_the_next_readable_one(folder, tmp_path) -> None:
    streamed, bad = _with_a_broken_file(folder, tmp_path / "shapes")
    plain = Augment(flip=False, policy="none")
    batch = _build(streamed, list(range(len(streamed))), 4, plain)(0, 0)
    assert [p for p, _ in batch.skipped] == [str(bad)]
    # Position 1 takes position 2's file, with its own draws (a crop of its own), and position 2's label.
    own = streamed.images.augmented(2, PREP, plain, sample_generator(3, 0, 0, 1))
    mean = torch.tensor(PREP.mean).view(3, 1, 1) * 255
    assert torch.allclose(batch.inputs[1] * torch.tensor(PREP.std).view(3, 1, 1) * 255 + mean, own, atol=1e-3)
    assert not torch.equal(batch.inputs[1], batch.inputs[2])
    assert torch.equal(batch.targets[1], batch.targets[2])


def test_a_sample_is_built_from_the_next_usable_item_and_a_failed_item_is_not_tried_again() -> None:
    tried: list[int] = []

    def build(index: int) -> str:
        tried.append(index)
        if index in (5, 6):
            raise BadImage("broken")
        return f"sample of {index}"

    unusable: set[int] = set()
    paths = [f"f{i}.jpg" for i in range(10)]
    assert files.build_or_replace([5, 6, 7], 0, build, unusable, BadImage, (0, 0, 0), paths) == ("sample of 7", 7)
    assert files.build_or_replace([5, 6, 7], 1, build, unusable, BadImage, (0, 0, 0), paths) == ("sample of 7", 7)
    assert tried == [5, 6, 7, 7] and unusable == {5, 6}
    with pytest.raises(VitkitError, match="no file of training batch 4 \\(epoch 3\\) is readable, e.g. f6.jpg"):
        files.build_or_replace([6, 5], 0, build, unusable, BadImage, (0, 2, 3), paths)


def _poisoned(original, poison: str, action: str):
    def load(path, *args, **kwargs):
        if Path(path).name == poison:
            if action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise ZeroDivisionError("decoder bug")
        return original(path, *args, **kwargs)
    return load


@pytest.mark.parametrize("action, expected", [("kill", "died (killed by SIGKILL)"), ("raise", "ZeroDivisionError")])
def test_a_worker_that_dies_or_fails_names_its_file_in_one_line(folder, monkeypatch, action, expected) -> None:
    _, streamed = _sets(folder)
    poison = Path(streamed.paths[9]).name
    monkeypatch.setattr(images_module, "load_rgb_array", _poisoned(images_module.load_rgb_array, poison, action))
    loader = stream.StepLoader(_build(streamed, list(range(len(streamed))), 4), workers=2)
    with pytest.raises(VitkitError) as caught:
        list(loader.batches(0, range(4)))
    loader.close()
    message = str(caught.value)
    assert "\n" not in message
    assert expected in message and poison in message, message


def test_cache_auto_caches_only_what_fits_the_budget() -> None:
    assert plan_cache("auto", 1000, 146, budget=10 << 30).in_memory
    assert not plan_cache("auto", 1_281_167, 256, budget=10 << 30).in_memory  # ImageNet at 256 px: ~300 GiB
    assert plan_cache("ram", 1_281_167, 256, budget=1).in_memory
    assert not plan_cache("none", 10, 32, budget=10 << 30).in_memory
    assert "exceeds the budget of 10.00 GiB" in plan_cache("auto", 1_281_167, 256, budget=10 << 30).describe()


def test_default_workers_leave_a_core_to_each_training_process() -> None:
    cores = len(os.sched_getaffinity(0))
    assert stream.default_workers() == max(1, min(16, cores - 1))
    assert stream.default_workers(processes_per_machine=cores) == 1


def _own_niceness(epoch: int, step: int) -> int:
    return os.nice(0)  # os.nice(0) reads the process's niceness without changing it


@pytest.mark.parametrize("niceness", [0, 7])
def test_workers_run_at_the_niceness_they_are_given(niceness: int) -> None:
    loader = stream.StepLoader(_own_niceness, 2, niceness=niceness)
    try:
        assert set(loader.batches(0, range(4))) == {os.nice(0) + niceness}
    finally:
        loader.close()


class _LoggedKeys:
    """A build function that returns its (epoch, step) and notes it in a file (workers are other processes)."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def __call__(self, epoch: int, step: int) -> tuple[int, int]:
        with self.log.open("a") as out:
            out.write(f"{epoch},{step}\n")
        return epoch, step


def test_workers_go_on_into_the_next_epoch_and_the_next_call_takes_those_batches(tmp_path) -> None:
    log = tmp_path / "built.txt"
    loader = stream.StepLoader(_LoggedKeys(log), 2)
    try:
        assert list(loader.batches(0, range(1, 3), per_epoch=3)) == [(0, 1), (0, 2)]
        deadline = time.monotonic() + 30
        while "1,0" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "1,0" in log.read_text().split(), "the workers idled at the end of the epoch"
        assert list(loader.batches(1, range(3), per_epoch=3)) == [(1, 0), (1, 1), (1, 2)]
        assert list(loader.batches(3, range(2, 3), per_epoch=3)) == [(3, 2)]  # not what follows: starts afresh
        assert list(loader.batches(5, range(2))) == [(5, 0), (5, 1)]  # without per_epoch: just these steps
    finally:
        loader.close()
    built = log.read_text().split()
    assert built.count("1,1") == 1, "a batch the workers built ahead was built again"


def test_workers_beside_a_cpu_model_yield_to_it_and_beside_an_accelerator_do_not() -> None:
    assert stream.worker_niceness("cpu") == stream.WORKER_NICENESS == 19
    assert stream.worker_niceness(torch.device("cuda", 0)) == 0


def test_without_workers_a_decoder_bug_is_raised_as_itself_with_its_traceback(folder, monkeypatch) -> None:
    _, streamed = _sets(folder)
    poison = Path(streamed.paths[2]).name
    monkeypatch.setattr(images_module, "load_rgb_array", _poisoned(images_module.load_rgb_array, poison, "raise"))
    with pytest.raises(ZeroDivisionError, match="decoder bug"):
        list(stream.StepLoader(_build(streamed, list(range(len(streamed))), 4), workers=0).batches(0, range(2)))


def _hanging(original, stuck: str):
    def load(path, *args, **kwargs):
        if Path(path).name == stuck:
            time.sleep(60)  # a hung mount: the worker never returns in time
        return original(path, *args, **kwargs)
    return load


def test_a_stuck_worker_stops_the_run_in_one_line_instead_of_hanging(folder, monkeypatch) -> None:
    _, streamed = _sets(folder)
    stuck = Path(streamed.paths[5]).name
    monkeypatch.setattr(images_module, "load_rgb_array", _hanging(images_module.load_rgb_array, stuck))
    loader = stream.StepLoader(_build(streamed, list(range(len(streamed))), 4), workers=2, stall_seconds=3)
    started = time.monotonic()
    with pytest.raises(VitkitError) as caught:
        list(loader.batches(0, range(4)))
    loader.close()
    message = str(caught.value)
    assert time.monotonic() - started < 50, "the loader waited for the stuck worker instead of giving up"
    assert "\n" not in message and "delivered nothing for 3 s" in message and stuck in message, message


def test_a_loader_never_closed_does_not_block_the_interpreters_exit(folder) -> None:
    """Workers ignore SIGTERM (Ctrl-C is the training process's), so multiprocessing's exit hook, which terminates
    and then joins them, waited for ever on a Trainer built but never run (it started the workers for its
    --time-limit probe). The loader's own exit hook stops them first."""
    import subprocess
    import sys

    script = ("import sys\nfrom vitkit.cli import build_parser\nfrom vitkit.commands.train import build_train_config\n"
              "from vitkit.train.loop import Trainer\n"
              "args = build_parser().parse_args(['train', '--data', sys.argv[1], '--model', 'vit_ti16', '--model-arg',"
              " 'depth=1', '--img-size', '32', '--workers', '1', '--time-limit', '1', '--out', sys.argv[2]])\n"
              "Trainer(build_train_config(args))\nprint('built')\n")
    began = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script, str(folder), str(folder.parent / "never-run")],
                            capture_output=True, text=True, timeout=180, cwd=Path(__file__).parents[1])
    assert result.returncode == 0 and "built" in result.stdout, result.stderr
    assert time.monotonic() - began < 120


def test_workers_outliving_their_loader_do_not_block_the_exit_either() -> None:
    """The StepLoader collected while its DataLoader (and persistent workers) lives on: the exit hook kills the
    workers it recorded, quietly (no 'worker killed' report from torch's SIGCHLD handler)."""
    import subprocess
    import sys

    script = ("import gc\nfrom vitkit.data.stream import StepLoader\n"
              "def build(epoch, step):\n    return step\n"
              "loader = StepLoader(build, 1)\nbatches = loader.batches(0, range(2))\nnext(batches)\n"
              "keep = loader.loader\ndel loader, batches\ngc.collect()\nprint('dropped')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).parents[1])
    assert result.returncode == 0 and result.stdout.strip() == "dropped", result.stderr
    assert "Traceback" not in result.stderr, result.stderr
