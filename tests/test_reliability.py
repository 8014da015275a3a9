"""Never lose a run, never crash on bad input: checkpoints that survive SIGKILL and corruption, the NaN guard,
full disks, and property-based tests over CLI arguments and generated files (no traceback ever)."""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import REPO
from test_training import TINY, make_folder, tiny_config
from vitkit.errors import VitkitError
from vitkit.store import read_weights
from vitkit.train import checkpoint as ckpt
from vitkit.train.loop import Trainer, resume_config, train

# Subprocesses use one thread each: results then do not depend on the thread count, and the machine is shared.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def weights_equal(a: Path, b: Path) -> list[str]:
    """Names of the tensors that differ between two safetensors files (empty: bit-identical)."""
    left, right = read_weights(a), read_weights(b)
    assert left.keys() == right.keys()
    return [k for k in left if not torch.equal(left[k], right[k])]


# --- checkpoints: manifest, fallback, torn writes --------------------------------------------------------

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    """A 2-epoch tiny run (3 steps per epoch, a checkpoint every 2 steps) and its data folder."""
    root = tmp_path_factory.mktemp("finished")
    data = make_folder(root / "shapes")
    train(tiny_config(data, root / "run", epochs=2, save_every=2, augment="none"))
    return root / "run", data


def test_checkpoints_have_a_manifest_and_only_the_last_two_are_kept(finished_run) -> None:
    run, _ = finished_run
    folders = ckpt.checkpoints(run)
    assert [f.name for f in folders] == ["step-000000006", "step-000000004"]
    assert (run / "checkpoints" / "latest").read_text().strip() == "step-000000006"
    import hashlib

    manifest = json.loads((folders[0] / "manifest.json").read_text())
    assert manifest["step"] == 6
    assert manifest["files"]["trainer_state.pt"] == hashlib.sha256((folders[0] / "trainer_state.pt").read_bytes()).hexdigest()
    assert not list((run / "checkpoints").glob(".*tmp*")), "no temporary folders are left behind"


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "no_manifest", "empty_state", "garbage_manifest"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(finished_run, tmp_path, damage: str) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run[0], run)
    newest = run / "checkpoints" / "step-000000006"
    state = newest / "trainer_state.pt"
    if damage == "truncate":
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    elif damage == "flip_byte":
        data = bytearray(state.read_bytes())
        data[len(data) // 3] ^= 0x40
        state.write_bytes(bytes(data))
    elif damage == "no_manifest":
        (newest / "manifest.json").unlink()
    elif damage == "empty_state":
        state.write_bytes(b"")
    else:
        (newest / "manifest.json").write_text("{not json")
    messages: list[str] = []
    loaded, folder = ckpt.load_checkpoint(run, messages.append)
    assert folder.name == "step-000000004" and loaded["epoch"] == 1 and loaded["step"] == 1
    assert len(messages) == 1 and "step-000000006" in messages[0] and "previous good one" in messages[0]
    assert (run / "checkpoints" / "step-000000006.damaged").is_dir(), "the damaged one is kept for inspection"


def test_resuming_past_a_corrupt_checkpoint_ends_with_the_uninterrupted_weights(finished_run, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run[0], run)
    state = run / "checkpoints" / "step-000000006" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    (run / "summary.json").unlink()
    train(resume_config(run), resume=True)  # falls back to step-4 and redoes steps 5 and 6
    assert weights_equal(run / "last.safetensors", finished_run[0] / "last.safetensors") == []


def test_no_usable_checkpoint_is_one_clear_error(finished_run, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run[0], run)
    for folder in ckpt.checkpoints(run):
        (folder / "trainer_state.pt").write_bytes(b"\0" * 10)
    with pytest.raises(VitkitError, match="no usable checkpoint .*start again without --resume"):
        ckpt.load_checkpoint(run, lambda m: None)


def test_a_checkpoint_of_another_model_is_refused_in_one_line(finished_run, tmp_path) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run[0], run)
    config = json.loads((run / "config.json").read_text())
    config["train"]["model_args"]["dim"] = 48
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(VitkitError, match="does not fit the model"):
        Trainer(resume_config(run), resume=True)


def test_a_full_disk_at_save_time_keeps_the_last_good_checkpoint(tmp_path, monkeypatch) -> None:
    data = make_folder(tmp_path / "shapes")
    trainer = Trainer(tiny_config(data, tmp_path / "run", epochs=2, save_every=2, augment="none"))
    real, calls = ckpt._write_synced, []

    def fill_up(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) > 2:  # the first checkpoint (state + manifest) fits, the second does not
            path.write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(ckpt, "_write_synced", fill_up)
    with pytest.raises(VitkitError, match="disk full.*step-000000002, is intact"):
        trainer.fit()
    state, folder = ckpt.load_checkpoint(tmp_path / "run", lambda m: pytest.fail(m))
    assert folder.name == "step-000000002" and state["step"] == 2
    assert not list((tmp_path / "run" / "checkpoints").glob(".*")), "the torn temporary folder is removed"


def test_no_space_or_an_unwritable_out_fails_before_training(tmp_path, monkeypatch) -> None:
    data = make_folder(tmp_path / "shapes")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(VitkitError, match="cannot write to --out"):
        Trainer(tiny_config(data, tmp_path / "a_file" / "run"))
    import vitkit.train.loop as loop

    monkeypatch.setattr(loop.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096))
    with pytest.raises(VitkitError, match="not enough free space .* 0 MiB free"):
        Trainer(tiny_config(data, tmp_path / "run"))


# --- the NaN / inf guard ----------------------------------------------------------------------------------

def _poison(trainer: Trainer, bad_calls: set[int], kind: str = "loss") -> list[dict[str, torch.Tensor]]:
    """Make the forward passes numbered ``bad_calls`` produce a NaN loss (or inf gradients); returns the
    weights seen at each forward pass so a test can check what a skipped step changed."""
    seen: list[dict[str, torch.Tensor]] = []
    forward = trainer.forward

    def poisoned(x: torch.Tensor) -> torch.Tensor:
        seen.append({k: v.detach().clone() for k, v in trainer.model.state_dict().items()})
        logits = forward(x)
        if len(seen) not in bad_calls:
            return logits
        return logits * float("nan") if kind == "loss" else _InfGrad.apply(logits)

    trainer.forward = poisoned
    return seen


class _InfGrad(torch.autograd.Function):
    """Identity forward, infinite gradient backward: a finite loss with overflowing gradients."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad * float("inf")


def test_non_finite_steps_are_skipped_and_counted(tmp_path, capsys) -> None:
    data = make_folder(tmp_path / "shapes")
    trainer = Trainer(tiny_config(data, tmp_path / "run", epochs=2, augment="none"))
    seen = _poison(trainer, {2, 4})
    summary = trainer.fit()
    assert summary["epochs_done"] == 2
    # A skipped step leaves every weight as it was: the forward after it sees the same weights.
    for bad in (2, 4):
        assert all(torch.equal(seen[bad - 1][k], seen[bad][k]) for k in seen[bad]), bad
    # ...while a good step changes them.
    assert not all(torch.equal(seen[0][k], seen[1][k]) for k in seen[0])
    state, _ = ckpt.load_checkpoint(tmp_path / "run")
    assert [s.split(":")[0] for s in state["bad_steps"]] == ["step 2 (epoch 1, step 2 of 3)",
                                                            "step 4 (epoch 2, step 1 of 3)"]
    adam_steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert adam_steps == {4.0}, "AdamW took 6 - 2 steps"
    assert "warning: skipped step 2" in capsys.readouterr().err


@pytest.mark.parametrize("kind, cause", [("loss", "the loss diverged: lower --lr"),
                                         ("grad", "the gradients overflowed")])
def test_too_many_non_finite_steps_stop_with_the_last_good_checkpoint(tmp_path, kind: str, cause: str) -> None:
    data = make_folder(tmp_path / "shapes")
    trainer = Trainer(tiny_config(data, tmp_path / "run", epochs=3, save_every=2, max_bad_steps=1, augment="none"))
    _poison(trainer, {3, 5}, kind)
    with pytest.raises(VitkitError) as error:
        trainer.fit()
    message = str(error.value)
    assert "training stopped at step 5 (epoch 2, step 2 of 3)" in message and cause in message, message
    assert "step-000000004, is kept" in message and "\n" not in message
    state, folder = ckpt.load_checkpoint(tmp_path / "run", lambda m: pytest.fail(m))
    assert folder.name == "step-000000004" and len(state["bad_steps"]) == 1


# --- SIGKILL anywhere, then --resume: bit-identical weights -------------------------------------------------

def _drive(event: str, count: int, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, **ONE_THREAD, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, str(REPO / "tests" / "crash_driver.py"), event, str(count), "--", *args],
                          capture_output=True, text=True, env=env, timeout=1800)


@pytest.mark.slow
def test_sigkill_at_ten_random_points_then_resume_gives_the_uninterrupted_weights(tmp_path) -> None:
    data = make_folder(tmp_path / "shapes", per_class=8)  # 16 train images: 4 steps of 4 per epoch
    model_args = [x for k, v in TINY.items() for x in ("--model-arg", f"{k}={v}")]
    common = ["--data", str(data), "--model", "vit_ti16", *model_args, "--epochs", "3", "--batch-size", "4",
              "--save-every", "3", "--precision", "fp32", "--mixup", "0.2", "--cutmix", "1.0", "--ema", "0.9",
              "--workers", "1"]
    straight = _drive("none", 0, ["train", *common, "--out", str(tmp_path / "straight")])
    assert straight.returncode == 0, straight.stderr

    run, rng = tmp_path / "killed", random.Random(9)
    # (event, how many of them a process gets through before the hit): small counts keep each life short.
    menu = {"step": 4, "save": 5, "sync": 6, "eval": 1}
    log, kills, finished = [], 0, 0

    def start_or_resume() -> list[str]:  # killed before its first checkpoint, a run starts again
        return ["train", "--resume", str(run)] if ckpt.has_checkpoint(run) else ["train", *common, "--out", str(run)]

    def finish_and_compare() -> None:
        nonlocal finished
        result = _drive("none", 0, start_or_resume())
        assert result.returncode == 0, (log, result.stderr)
        assert weights_equal(run / "last.safetensors", tmp_path / "straight" / "last.safetensors") == [], log
        assert weights_equal(run / "model.safetensors", tmp_path / "straight" / "model.safetensors") == [], log
        finished += 1

    plan = [(e, rng.randint(1, menu[e])) for e in rng.choices(list(menu), k=30)]
    plan[3:3], plan[8:8] = [("term", 2)], [("int", 3)]  # and two clean stops along the way
    for event, count in plan:
        if kills == 10:
            break
        if (run / "summary.json").is_file():  # a life ran to the end: check it, then start a new run
            finish_and_compare()
            shutil.rmtree(run)
        result = _drive(event, count, start_or_resume())
        log.append((event, count, result.returncode, [f.name for f in ckpt.checkpoints(run)]))
        if event in ("term", "int"):  # 130: saved at a step boundary (or interrupted after training)
            assert result.returncode in (0, 130), (log, result.stderr)
        else:
            assert result.returncode in (-signal.SIGKILL, 0), (log, result.stderr)
            kills += result.returncode == -signal.SIGKILL
        assert "Traceback" not in result.stderr, result.stderr
    finish_and_compare()
    print(f"\n{kills} SIGKILLs, {finished} runs finished and compared: "
          + ", ".join(f"{e}#{c}->rc {rc} {names}" for e, c, rc, names in log))
    assert kills == 10, log
    history = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    drop = ("elapsed_s",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in history] == \
        [{k: v for k, v in r.items() if k not in drop} for r in reference]


# --- property-based: every input ends in a result or one clear line, never a traceback ----------------------

import contextlib  # noqa: E402
import io  # noqa: E402

from vitkit.data.decode import BadImage  # noqa: E402
from vitkit.data.images import load_for_model  # noqa: E402
from vitkit.store import load_model, save_model  # noqa: E402

CASES: dict[str, int] = {}
"""How many generated cases each property test ran (printed at the end of the module, for the report)."""
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


def test_a_bug_is_one_line_with_status_1_and_vitkit_debug_shows_the_traceback(monkeypatch) -> None:
    import vitkit.analysis.summary
    import vitkit.cli as cli

    def broken_summary(*args, **kwargs):
        return {}["missing key"]  # a bug: KeyError, not a VitkitError

    monkeypatch.setattr(vitkit.analysis.summary, "summarize_model", broken_summary)
    monkeypatch.delenv("VITKIT_DEBUG", raising=False)
    status, stderr = call_cli(["summary", "vit_ti16"])
    assert status == 1 and "Traceback" not in stderr
    assert stderr.strip().splitlines() == [stderr.strip()] and "internal error: KeyError" in stderr
    assert "VITKIT_DEBUG=1" in stderr
    monkeypatch.setenv("VITKIT_DEBUG", "1")
    with pytest.raises(KeyError):
        cli.main(["summary", "vit_ti16"])


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


def _path_choices(p: dict[str, Path]) -> list[str]:
    return [str(p["data"]), str(p["data"] / "train"), str(p["root"] / "missing"), str(p["root"] / "empty"),
            str(p["root"] / "a_file.txt"), str(p["model"]), str(p["other_model"]), str(p["root"] / "junk.safetensors"),
            str(p["data"] / "val" / "circle" / "circle_0.png"), "", "-", "mnist-6k"]


TOKENS = ["0", "1", "2", "3", "-1", "0.5", "1e-3", "nan", "inf", "-inf", "1e9", "abc", "", "3x3", "vit_ti16",
          "bf16", "fp32", "fp16", "rrc", "shift", "center", "trivial", "randaugment", "none", "ï", "--"]
TRAIN_OPTIONS = ["--epochs", "--batch-size", "--accum-steps", "--lr", "--min-lr", "--weight-decay", "--warmup-epochs",
                 "--clip-grad", "--label-smoothing", "--precision", "--img-size", "--crop", "--augment", "--mixup",
                 "--cutmix", "--ema", "--seed", "--workers", "--val-fraction", "--time-limit", "--save-every",
                 "--max-bad-steps", "--drop-path", "--model", "--crop-scale"]
MODEL_ARGS = ["depth=0", "depth=1", "depth=-1", "depth=x", "dim=30", "dim=0", "heads=3", "heads=0", "patch_size=7",
              "patch_size=0", "patch_size=64", "image_size=30", "image_size=0", "num_classes=5", "foo=1", "nonsense",
              "pool=avg", "pool=weird", "=", "dim=[1,2]", "norm=post", "class_token=false"]


@given(data=st.data())
@FUZZ
def test_any_train_command_line_ends_in_a_run_or_one_clear_error(inputs, monkeypatch, data) -> None:
    from vitkit.train.loop import Trainer as RealTrainer

    monkeypatch.setattr(RealTrainer, "fit", lambda self, **k: {"interrupted": True})  # everything up to the loop
    argv = ["train", "--out", str(inputs["root"] / "runs" / "r"), "--workers", "1"]
    argv += ["--data", data.draw(st.sampled_from(_path_choices(inputs)))]
    argv += [x for kv in TINY.items() for x in ("--model-arg", f"{kv[0]}={kv[1]}")]
    for _ in range(data.draw(st.integers(0, 4))):
        kind = data.draw(st.sampled_from(["option", "model-arg", "flag", "resume", "init", "stray"]))
        if kind == "option":
            option = data.draw(st.sampled_from(TRAIN_OPTIONS))
            argv += [option] + [data.draw(st.sampled_from(TOKENS)) for _ in range(2 if option == "--crop-scale" else 1)]
        elif kind == "model-arg":
            argv += ["--model-arg", data.draw(st.sampled_from(MODEL_ARGS))]
        elif kind == "flag":
            argv.append(data.draw(st.sampled_from(["--no-flip", "--grad-checkpointing", "--fsdp", "--compile"])))
        elif kind in ("resume", "init"):
            argv += [f"--{kind}", data.draw(st.sampled_from(_path_choices(inputs)))]
        else:
            argv.append(data.draw(st.sampled_from(TOKENS)))
    if "--compile" in argv:  # compiling is minutes on this machine; it is not an input check
        argv.remove("--compile")
    status, stderr = call_cli(argv)
    count("train command lines")
    assert_clear(status, stderr, allowed=(0, 2, 130))


@given(data=st.data())
@FUZZ
def test_any_eval_predict_or_summary_command_line_ends_in_a_result_or_one_clear_error(inputs, data) -> None:
    paths = _path_choices(inputs)
    command = data.draw(st.sampled_from(["eval", "predict", "summary"]))
    if command == "eval":
        argv = ["eval", data.draw(st.sampled_from(paths)), "--data", data.draw(st.sampled_from(paths)),
                "--out", str(inputs["root"] / "eval_out")]
        if data.draw(st.booleans()):
            argv += ["--batch-size", data.draw(st.sampled_from(TOKENS))]
    elif command == "predict":
        argv = ["predict", data.draw(st.sampled_from(paths))]
        argv += data.draw(st.lists(st.sampled_from(paths), min_size=0, max_size=3))
        if data.draw(st.booleans()):
            argv += ["--top-k", data.draw(st.sampled_from(TOKENS))]
        if data.draw(st.booleans()):
            argv += ["--format", data.draw(st.sampled_from(["table", "json", "csv", "xml"]))]
    else:
        argv = ["summary", data.draw(st.sampled_from(["vit_ti16", "vit_b16", "vit_mnist", "vivit_b16x2", "nope", ""]))]
        if data.draw(st.booleans()):
            argv += ["--input-size", data.draw(st.sampled_from(["3x224x224", "3x1x1", "1x32x32", "3x16x224x224",
                                                                  "0x0x0", "3x100000x100000", "3x", "abc", "3x225x224"]))]
        if data.draw(st.booleans()):
            argv += ["--batch", data.draw(st.sampled_from(TOKENS))]
    status, stderr = call_cli(argv)
    count(f"{command} command lines")
    assert_clear(status, stderr, allowed=(0, 1, 2) if command == "predict" else (0, 2))
    if command == "predict" and status == 1:  # every file was unusable: each one is named with its reason
        assert "warning: skipped" in stderr


# Image files a user may have: every Pillow mode a format can hold, odd sizes, animation, damage.
FORMAT_MODES = [("PNG", m) for m in ("1", "L", "P", "RGB", "RGBA", "LA", "I;16")] + \
    [("JPEG", m) for m in ("L", "RGB", "CMYK")] + [("GIF", "P"), ("GIF", "L"), ("BMP", "1"), ("BMP", "RGB")] + \
    [("TIFF", m) for m in ("1", "L", "RGB", "RGBA", "CMYK", "I;16", "I", "F")] + [("WEBP", "RGB"), ("WEBP", "RGBA"),
                                                                             ("PPM", "RGB"), ("PPM", "L")]
SIZES = st.one_of(st.tuples(st.integers(1, 48), st.integers(1, 48)),
                  st.sampled_from([(1, 1), (10000, 50), (50, 10000), (1, 3000), (4000, 3)]))


def _mutate(blob: bytes, how: str, position: float, byte: int) -> bytes:
    at = int(position * len(blob))
    if how == "truncate":
        return blob[:at]
    if how == "flip" and blob:
        at = min(at, len(blob) - 1)
        return blob[:at] + bytes([blob[at] ^ (byte or 1)]) + blob[at + 1:]
    if how == "insert":
        return blob[:at] + bytes([byte]) * 17 + blob[at:]
    if how == "garbage":
        return bytes((byte * 31 + i * 7) % 256 for i in range(64))
    return blob


MUTATIONS = st.tuples(st.sampled_from(["none", "none", "truncate", "flip", "insert", "garbage"]),
                      st.floats(0, 1), st.integers(0, 255))


@st.composite
def image_bytes(draw) -> tuple[bytes, str, str]:
    fmt, mode = draw(st.sampled_from(FORMAT_MODES))
    w, h = draw(SIZES)
    frames = draw(st.integers(1, 3)) if fmt in ("GIF", "PNG", "WEBP", "TIFF") else 1
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode) for _ in range(frames)]
    buffer = io.BytesIO()
    try:
        images[0].save(buffer, format=fmt, save_all=frames > 1, append_images=images[1:])
    except (OSError, ValueError):  # a combination this Pillow build cannot write: not an input a user can have
        assume(False)
    how, position, byte = draw(MUTATIONS)
    return _mutate(buffer.getvalue(), how, position, byte), f"{fmt}/{mode}/{w}x{h}x{frames}/{how}", fmt.lower()


def check_image_loader(blob: bytes, suffix: str, folder: Path, short_side: int = 24) -> None:
    """The image loader's contract: uint8 [3, h, w] with shorter side ``short_side``, or BadImage."""
    path = folder / f"fuzz.{suffix}"
    path.write_bytes(blob)
    try:
        image = load_for_model(path, short_side)
    except BadImage:
        return
    assert image.dtype == torch.uint8 and image.shape[0] == 3 and min(image.shape[1:]) == short_side, image.shape


@pytest.mark.parametrize("tag_type", [5, 10, 11, 12])  # RATIONAL, SRATIONAL, FLOAT, DOUBLE
def test_a_tiff_whose_strip_offsets_are_not_integers_is_skipped_with_a_reason(tmp_path, tag_type: int) -> None:
    """Regression (found by the 10-minute fuzz run): Pillow raised TypeError for such a file."""
    import struct

    from vitkit.data.decode import BadImage, load_rgb

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="TIFF")
    data = bytearray(buffer.getvalue())
    directory = struct.unpack_from("<I", data, 4)[0]
    entries = [directory + 2 + 12 * i for i in range(struct.unpack_from("<H", data, directory)[0])]
    strip_offsets = next(e for e in entries if struct.unpack_from("<H", data, e)[0] == 273)
    struct.pack_into("<H", data, strip_offsets + 2, tag_type)
    path = tmp_path / "odd.tif"
    path.write_bytes(bytes(data))
    with pytest.raises(BadImage, match="truncated or corrupt"):
        load_rgb(path)


@given(case=image_bytes())
@FUZZ
def test_any_image_file_decodes_or_is_skipped_with_a_reason(inputs, tmp_path, case) -> None:
    blob, label, suffix = case
    check_image_loader(blob, suffix, tmp_path)
    status, stderr = call_cli(["predict", str(inputs["model"]), str(tmp_path / f"fuzz.{suffix}"), "--format", "json"])
    count("image files")
    assert_clear(status, stderr, allowed=(0, 1))
    assert status == 0 or "warning: skipped 1 unreadable file(s)" in stderr, (label, stderr)


@st.composite
def video_bytes(draw) -> tuple[bytes, str, str]:
    av = pytest.importorskip("av")
    container_format, codec = draw(st.sampled_from([("avi", "mjpeg"), ("mp4", "mpeg4"), ("avi", "mpeg4"),
                                                    ("mkv", "mjpeg")]))
    frames = draw(st.integers(0, 3))
    w, h = draw(st.sampled_from([(16, 16), (32, 18), (2, 2), (64, 8)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="matroska" if container_format == "mkv" else container_format) as out:
        stream = out.add_stream(codec, rate=8)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    how, position, byte = draw(MUTATIONS)
    return _mutate(buffer.getvalue(), how, position, byte), f"{container_format}/{codec}/{frames}f/{how}", container_format


def check_video_loader(blob: bytes, suffix: str, folder: Path) -> None:
    """The video loader's contract: uint8 [T >= 1, 3, h, w], or BadVideo."""
    from vitkit.data.video import BadVideo, decode_video

    path = folder / f"fuzz.{suffix}"
    path.write_bytes(blob)
    try:
        video = decode_video(path, short_side=8, max_frames=4)
    except BadVideo:
        return
    assert video.dtype == torch.uint8 and video.ndim == 4 and video.shape[1] == 3 and video.shape[0] >= 1


def test_every_truncation_of_an_mp4_decodes_or_is_refused(tmp_path) -> None:
    """Regression (found by the fuzz run): cutting an mp4 inside its header left a stream without a codec
    context, and the loader raised AttributeError instead of BadVideo. Try every cut of a small file."""
    av = pytest.importorskip("av")
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for shade in range(0, 160, 20):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), shade, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = buffer.getvalue()
    for cut in range(1, len(data), 3):
        check_video_loader(data[:cut], "mp4", tmp_path)


@given(case=video_bytes())
@FUZZ
def test_any_video_file_decodes_or_is_refused_with_a_reason(tmp_path, case) -> None:
    blob, _, suffix = case
    check_video_loader(blob, suffix, tmp_path)
    count("video files")


def check_weights_loader(blob: bytes, folder: Path) -> None:
    """Model folders and safetensors files: a model, or VitkitError."""
    (folder / "model.safetensors").write_bytes(blob)
    try:
        load_model(folder)
    except VitkitError:
        return


def check_config_loader(config: dict, folder: Path) -> None:
    (folder / "config.json").write_text(json.dumps(config))
    try:
        load_model(folder)
    except VitkitError:
        return


JSON_VALUES = st.sampled_from([None, 0, -1, 3, 1.5, "x", "", [], {}, [1, 2], True, 10**12])


@given(how=MUTATIONS, key=st.integers(0, 50), value=JSON_VALUES, drop=st.booleans())
@FUZZ
def test_any_damaged_model_folder_loads_or_gives_one_clear_error(inputs, tmp_path, how, key, value, drop) -> None:
    folder = tmp_path / "m"
    shutil.copytree(inputs["model"], folder, dirs_exist_ok=True)
    check_weights_loader(_mutate((inputs["model"] / "model.safetensors").read_bytes(), *how), folder)
    shutil.copy(inputs["model"] / "model.safetensors", folder / "model.safetensors")
    config = json.loads((inputs["model"] / "config.json").read_text())
    fields = [(config, k) for k in config] + [(config["model"], k) for k in config["model"]]
    target, name = fields[key % len(fields)]
    if drop:
        del target[name]
    else:
        target[name] = value
    check_config_loader(config, folder)
    count("model folders")


def check_checkpoint_loader(run: Path, blob: bytes, manifest: bytes | None) -> None:
    """A run's checkpoints: the newest good state, or VitkitError."""
    newest = ckpt.checkpoints(run)[0]
    (newest / "trainer_state.pt").write_bytes(blob)
    if manifest is not None:
        (newest / "manifest.json").write_bytes(manifest)
    try:
        ckpt.load_checkpoint(run, lambda m: None)
    except VitkitError:
        return


@given(how=MUTATIONS, manifest=st.one_of(st.none(), st.binary(max_size=64),
                                         st.sampled_from([b"{}", b'{"files": []}', b'{"files": {"x": 1}}',
                                                          b'{"files": {"trainer_state.pt": null}}', b"[]"])))
@FUZZ
def test_any_damaged_checkpoint_resumes_from_a_good_one_or_gives_one_clear_error(finished_run, tmp_path, how,
                                                                                  manifest) -> None:
    run = tmp_path / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(finished_run[0] / "checkpoints", run / "checkpoints")
    blob = (ckpt.checkpoints(run)[0] / "trainer_state.pt").read_bytes()
    check_checkpoint_loader(run, _mutate(blob, *how), manifest)
    count("checkpoints")


@pytest.mark.skipif("VITKIT_FUZZ_SECONDS" not in os.environ, reason="the long fuzz run; set VITKIT_FUZZ_SECONDS")
def test_fuzz_the_loaders_for_a_while(inputs, finished_run, tmp_path) -> None:
    """``VITKIT_FUZZ_SECONDS=600``: image, video, model-folder and checkpoint loaders on generated and damaged
    files until the time is up; any exception other than the documented ones fails."""
    import time

    deadline = time.monotonic() + float(os.environ["VITKIT_FUZZ_SECONDS"])
    folder = tmp_path / "m"
    shutil.copytree(inputs["model"], folder)
    state = (ckpt.checkpoints(finished_run[0])[0] / "trainer_state.pt").read_bytes()

    findings: dict[str, int] = {}  # undocumented exceptions, by type and the line that raised them

    @given(kind=st.sampled_from(["image", "video", "weights", "checkpoint"]), data=st.data())
    @settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def one(kind: str, data: st.DataObject) -> None:
        try:
            check(kind, data)
        except Exception as error:  # keep fuzzing: one run should find every distinct bug, not the first
            import traceback

            frame = traceback.extract_tb(error.__traceback__)[-1]
            key = f"{kind}: {type(error).__name__}: {str(error)[:80]} at {Path(frame.filename).name}:{frame.lineno}"
            findings[key] = findings.get(key, 0) + 1
        count(f"fuzz {kind}")

    def check(kind: str, data: st.DataObject) -> None:
        if kind == "image":
            blob, _, suffix = data.draw(image_bytes())
            check_image_loader(blob, suffix, tmp_path)
        elif kind == "video":
            blob, _, suffix = data.draw(video_bytes())
            check_video_loader(blob, suffix, tmp_path)
        elif kind == "weights":
            blob = (inputs["model"] / "model.safetensors").read_bytes()
            check_weights_loader(_mutate(blob, *data.draw(MUTATIONS)), folder)
        else:
            run = tmp_path / "run"
            shutil.rmtree(run, ignore_errors=True)
            shutil.copytree(finished_run[0] / "checkpoints", run / "checkpoints")
            check_checkpoint_loader(run, _mutate(state, *data.draw(MUTATIONS)), None)

    while time.monotonic() < deadline:
        one()
    print(f"\nfuzzed for {os.environ['VITKIT_FUZZ_SECONDS']} s: "
          + ", ".join(f"{k}: {v}" for k, v in sorted(CASES.items()) if k.startswith("fuzz"))
          + "".join(f"\n  FOUND ({n}x) {k}" for k, n in findings.items()))
    assert not findings, findings


def test_zz_report_how_many_cases_ran() -> None:
    print("\nproperty-test cases: " + ", ".join(f"{k}: {v}" for k, v in sorted(CASES.items())))
