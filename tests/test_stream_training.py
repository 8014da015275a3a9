"""Training from disk (``--cache none``) and from shards, end to end through ``vitkit train``: the same weights
as the in-memory cache, SIGKILL mid-epoch then ``--resume`` gives the uninterrupted weights with worker
processes, N processes train like one, and a dying loader worker stops the run with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from test_training import TINY, make_folder
from vitkit.store import read_weights

pytestmark = pytest.mark.slow
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
MODEL = ["--model", "vit_ti16", *[x for k, v in TINY.items() for x in ("--model-arg", f"{k}={v}")]]
COMMON = [*MODEL, "--epochs", "2", "--batch-size", "4", "--precision", "fp32", "--mixup", "0.2", "--cutmix", "1.0",
          "--ema", "0.9", "--lr", "3e-3", "--save-every", "2",
          "--drop-path", "0"]  # stochastic depth draws per process: N processes equal one only without it


def _drive(event: str, count: int, args: list[str], processes: int = 1) -> subprocess.CompletedProcess:
    """``vitkit ARGS`` hit by ``event`` (see crash_driver.py), on ``processes`` processes."""
    driver = [str(REPO / "tests" / "crash_driver.py"), event, str(count), "--", *args]
    command = [sys.executable, *driver] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}", *driver]
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(REPO)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)


def _same(a: Path, b: Path) -> list[str]:
    left, right = read_weights(a), read_weights(b)
    return [k for k in left if not (left[k] == right[k]).all()]


def killed_and_resumed_equals_straight(args: list[str], root: Path, step: int) -> subprocess.CompletedProcess:
    """``vitkit ARGS`` run straight into ``root/straight``, and into ``root/killed`` hit by SIGKILL at its
    ``step``-th step then ``--resume``d: asserts the two end with the same weights; returns the straight run."""
    straight = _drive("none", 0, [*args, "--out", str(root / "straight")])
    assert straight.returncode == 0, straight.stderr
    killed = _drive("step", step, [*args, "--out", str(root / "killed")])
    assert killed.returncode == -9, killed.stderr
    resumed = _drive("none", 0, ["train", "--resume", str(root / "killed")])
    assert resumed.returncode == 0, resumed.stderr
    assert _same(root / "killed" / "last.safetensors", root / "straight" / "last.safetensors") == []
    return straight


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_folder(tmp_path_factory.mktemp("streamrun") / "shapes", per_class=8)  # 16 train: 4 steps of 4


@pytest.fixture(scope="module")
def streamed_run(data) -> Path:
    """Random-resized crops cut from the files by two workers (what a folder too large for memory trains with)."""
    out = data.parent / "streamed"
    result = _drive("none", 0, ["train", "--data", str(data), *COMMON, "--cache", "none", "--workers", "2",
                                "--out", str(out)])
    assert result.returncode == 0, result.stderr
    assert "loader: folder, 2 worker process(es), prefetch 2, cache none (--cache none" in result.stderr
    assert "16 train / 8 val samples" in result.stderr
    return out


def test_a_folder_read_from_disk_by_workers_trains_exactly_like_the_memory_cache(data) -> None:
    """With crops cut from the fitted size (shift) the streamed and cached batches are the same bits, so are the
    runs (random-resized crops are resampled from the file instead: see test_stream.py)."""
    runs = {}
    for cache, workers in (("ram", "0"), ("none", "2")):
        runs[cache] = data.parent / f"shift-{cache}"
        result = _drive("none", 0, ["train", "--data", str(data), *COMMON, "--crop", "shift", "--cache", cache,
                                    "--workers", workers, "--out", str(runs[cache])])
        assert result.returncode == 0, result.stderr
    assert _same(runs["none"] / "last.safetensors", runs["ram"] / "last.safetensors") == []
    assert json.loads((runs["none"] / "eval.json").read_text())["accuracy"] == json.loads(
        (runs["ram"] / "eval.json").read_text())["accuracy"]


def test_sigkill_mid_epoch_then_resume_with_workers_gives_the_uninterrupted_weights(data, streamed_run) -> None:
    out = data.parent / "killed"
    args = ["train", "--data", str(data), *COMMON, "--cache", "none", "--workers", "2", "--out", str(out)]
    killed = _drive("step", 6, args)  # the 6th step: epoch 2, after the step-4 checkpoint
    assert killed.returncode == -9, killed.stderr
    resumed = _drive("none", 0, ["train", "--resume", str(out)])
    assert resumed.returncode == 0, resumed.stderr
    assert "epoch 2, step 0 of 4" in resumed.stderr or "epoch 2, step" in resumed.stderr
    assert _same(out / "last.safetensors", streamed_run / "last.safetensors") == []


def test_two_processes_reading_from_disk_equal_one_process(data, streamed_run) -> None:
    out = data.parent / "ddp"
    result = _drive("none", 0, ["train", "--data", str(data), *COMMON, "--cache", "none", "--workers", "1",
                                "--out", str(out)], processes=2)
    assert result.returncode == 0, result.stderr
    left, right = read_weights(out / "last.safetensors"), read_weights(streamed_run / "last.safetensors")
    worst = max(float((left[k].double() - right[k].double()).abs().max()) for k in left
                if not k.endswith("attn.qkv.bias"))  # see test_distributed._max_difference
    assert worst <= 1e-6


def test_shards_train_and_resume_after_sigkill_bit_for_bit(data, tmp_path) -> None:
    shards = tmp_path / "shards"
    written = subprocess.run([sys.executable, "-m", "vitkit", "shard", str(data), str(shards), "--shard-size", "8KB"],
                             capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert written.returncode == 0, written.stderr
    straight = killed_and_resumed_equals_straight(["train", "--data", str(shards), *COMMON, "--workers", "2"],
                                                  tmp_path, step=7)
    assert "loader: shards, 2 worker process(es)" in straight.stderr and "16 train / 8 val samples" in straight.stderr
    summary = json.loads((tmp_path / "straight" / "summary.json").read_text())
    assert summary["val_samples"] == 8


POISON = """
import os, signal, sys
from pathlib import Path
import vitkit.data.images as images
original = images.load_rgb_array
def load(path, *args, **kwargs):
    if Path(str(path)).name == sys.argv[1]:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(path, *args, **kwargs)
images.load_rgb_array = load
from vitkit.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def test_a_worker_killed_by_its_decoder_stops_the_run_with_one_line_naming_the_file(data, tmp_path) -> None:
    victim = sorted(data.glob("train/square/*"))[3]
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", POISON, victim.name, "train", "--data", str(data), *COMMON,
                             "--cache", "none", "--workers", "2", "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("vitkit: error: a data loader worker died (killed by SIGKILL) while reading"), last
    assert str(victim) in last
    assert "Traceback" not in result.stderr
