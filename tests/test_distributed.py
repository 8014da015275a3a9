"""Many processes, one run: ``torchrun --nproc-per-node 2 -m vitkit train`` (gloo, CPU) must end with the
weights of one process training on the same global batch, DDP and FSDP alike, and a run must resume on
another number of processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from test_training import TINY, make_folder
from vitkit.store import read_weights
from vitkit.train import checkpoint as ckpt

pytestmark = pytest.mark.slow
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TOLERANCE = 1e-6


def _launch(processes: int, event: str, count: int, args: list[str]) -> subprocess.CompletedProcess:
    """``vitkit ARGS`` on ``processes`` processes (torchrun when more than one), hit by ``event`` (crash_driver)."""
    driver = [str(REPO / "tests" / "crash_driver.py"), event, str(count), "--", *args]
    if processes > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
                   *driver]
    else:
        command = [sys.executable, *driver]
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(REPO)}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def _max_difference(a: Path, b: Path) -> float:
    """The largest weight difference, leaving out the attention key biases: softmax does not change when a
    constant is added to every key score, so their gradient is exactly zero and AdamW turns its rounding noise
    into full-size steps in any run (two runs that only sum in another order differ there by ~1e-5)."""
    left, right = read_weights(a), read_weights(b)
    assert left.keys() == right.keys()
    worst = 0.0
    for name in left:
        x, y = left[name].double(), right[name].double()
        if name.endswith("attn.qkv.bias"):
            dim = len(x) // 3
            x, y = torch.cat([x[:dim], x[2 * dim:]]), torch.cat([y[:dim], y[2 * dim:]])
        worst = max(worst, float((x - y).abs().max()))
    return worst


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("dist")
    data = make_folder(root / "shapes")  # 24 train images: 3 steps of 8 per epoch
    model_args = [x for k, v in TINY.items() for x in ("--model-arg", f"{k}={v}")]
    common = ["--data", str(data), "--model", "vit_ti16", *model_args, "--epochs", "2", "--batch-size", "8",
              "--accum-steps", "2", "--precision", "fp32", "--mixup", "0.2", "--cutmix", "1.0", "--lr", "3e-3",
              "--workers", "1", "--drop-path", "0", "--ema", "0"]  # not the planner's: stochastic depth draws per
    # process (not one-process exact) and --fsdp keeps no EMA
    single = _launch(1, "none", 0, ["train", *common, "--out", str(root / "single")])
    assert single.returncode == 0, single.stderr
    return {"root": root, "common": common, "reference": root / "single" / "last.safetensors"}


def test_two_ddp_processes_equal_one_process_with_the_same_global_batch(setup) -> None:
    out = setup["root"] / "ddp"
    result = _launch(2, "none", 0, ["train", *setup["common"], "--out", str(out)])
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("global batch 8 = 2 process(es) x 4 per process (2 micro-batch(es) of 2), DDP") == 1
    difference = _max_difference(out / "last.safetensors", setup["reference"])
    print(f"\nDDP 2 processes vs 1 process after 6 steps: max |difference| = {difference:.3g}")
    assert difference <= TOLERANCE


def test_two_fsdp_processes_equal_one_process_with_the_same_global_batch(setup) -> None:
    out = setup["root"] / "fsdp"
    result = _launch(2, "none", 0, ["train", *setup["common"], "--fsdp", "--out", str(out)])
    assert result.returncode == 0, result.stderr
    assert "FSDP" in result.stderr
    difference = _max_difference(out / "last.safetensors", setup["reference"])
    print(f"\nFSDP 2 processes vs 1 process after 6 steps: max |difference| = {difference:.3g}")
    assert difference <= TOLERANCE


@pytest.mark.parametrize("first, then", [(2, 1), (1, 2)])
def test_a_run_resumes_on_another_number_of_processes(setup, first: int, then: int) -> None:
    out = setup["root"] / f"resume-{first}-{then}"
    # SIGTERM in step 4 (2 micro-batches per step: the 8th loss): every process saves at step 4 of 6 and stops.
    stopped = _launch(first, "term", 8, ["train", *setup["common"], "--out", str(out)])
    assert [f.name for f in ckpt.checkpoints(out)][0] == "step-000000004", stopped.stderr
    resumed = _launch(then, "none", 0, ["train", "--resume", str(out)])
    assert resumed.returncode == 0, resumed.stderr
    difference = _max_difference(out / "last.safetensors", setup["reference"])
    print(f"\n{first} -> {then} processes vs 1 process: max |difference| = {difference:.3g}")
    assert difference <= TOLERANCE


def test_a_global_batch_that_does_not_split_is_one_clear_error(setup) -> None:
    args = [a if a != "8" else "7" for a in setup["common"]]  # 7 images on 2 processes
    result = _launch(2, "none", 0, ["train", *args, "--accum-steps", "1", "--out", str(setup["root"] / "odd")])
    assert result.returncode != 0
    assert "vitkit: error: --batch-size 7 (the global batch) is not divisible by the 2 processes" in result.stderr
