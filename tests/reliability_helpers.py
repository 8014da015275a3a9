"""Helpers shared by the reliability tests (test_checkpoint_durability, test_nan_guard, test_cli_errors,
test_loader_fuzz): a finished tiny run, the inputs a user might point vitkit at, and the property-test settings."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

from test_training import TINY, make_folder, tiny_config
from vitkit.store import read_weights, save_model
from vitkit.train.loop import train


# Subprocesses use one thread each: results then do not depend on the thread count, and the machine is shared.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def weights_equal(a: Path, b: Path) -> list[str]:
    """Names of the tensors that differ between two safetensors files (empty: bit-identical)."""
    left, right = read_weights(a), read_weights(b)
    assert left.keys() == right.keys()
    return [k for k in left if not torch.equal(left[k], right[k])]




@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """A 2-epoch tiny run (3 steps per epoch, a checkpoint every 2 steps) and its data folder."""
    root = tmp_path_factory.mktemp("finished")
    data = make_folder(root / "shapes")
    train(tiny_config(data, root / "run", epochs=2, save_every=2, augment="none"))
    return root / "run", data


CASES: dict[str, int] = {}
"""How many generated cases each property test ran (see :func:`report_cases`)."""
EXAMPLES = int(os.environ.get("VITKIT_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])


def count(name: str) -> None:
    CASES[name] = CASES.get(name, 0) + 1


def call_cli(argv: list[str]) -> tuple[int, str]:
    """``vitkit ARGV`` in this process: (exit status, stderr). An exception escaping ``main`` fails the test,
    as it would show the user a traceback."""
    from vitkit.cli import main

    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            status = main(argv)
        except SystemExit as exit_:  # argparse: usage line + one error line, status 2
            status = exit_.code
    return status, err.getvalue()



def assert_clear(status: int, stderr: str, allowed: tuple[int, ...] = (0, 2)) -> None:
    assert status in allowed, (status, stderr)
    assert "Traceback" not in stderr, stderr
    if status == 2:
        errors = [line for line in stderr.splitlines() if "error:" in line]
        assert len(errors) == 1, stderr


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """Small things a user might point vitkit at: a tiny image folder, a model folder, a finished run, junk."""
    root = tmp_path_factory.mktemp("inputs")
    data = make_folder(root / "shapes", per_class=4)
    from vitkit.models import create_model

    model = create_model("vit_ti16", **(TINY | {"num_classes": 2}))
    save_model(root / "model", model, class_names=["circle", "square"],
               preprocess={"image_size": 32, "short_side": 32, "mean": [0.5] * 3, "std": [0.5] * 3})
    other = create_model("vit_ti16", **(TINY | {"num_classes": 3, "dim": 48, "heads": 3}))
    save_model(root / "other_model", other)
    (root / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}junk")
    (root / "empty").mkdir()
    (root / "a_file.txt").write_text("not a folder")
    return {"root": root, "data": data, "model": root / "model", "other_model": root / "other_model"}


@pytest.fixture(scope="module")
def report_cases():
    """Print how many generated cases each property test of the module ran, after its last test (whatever the
    order tests run in; shown with ``pytest -s``)."""
    yield CASES
    if CASES:
        print("\nproperty-test cases: " + ", ".join(f"{k}: {v}" for k, v in sorted(CASES.items())))
