"""Never lose a run: checkpoints with a manifest that survive corruption, a full disk and SIGKILL at any
point (resuming gives the uninterrupted weights bit for bit)."""

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

import pytest

from conftest import REPO
from reliability_helpers import ONE_THREAD, finished_run, weights_equal  # noqa: F401 (fixture)
from test_training import TINY, make_folder, tiny_config
from vitkit.errors import VitkitError
from vitkit.train import checkpoint as ckpt
from vitkit.train.loop import Trainer, train
from vitkit.train.run_folder import resume_config


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
    import vitkit.train.run_folder as run_folder

    monkeypatch.setattr(run_folder.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096))
    with pytest.raises(VitkitError, match="not enough free space .* 0 MiB free"):
        Trainer(tiny_config(data, tmp_path / "run"))



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

    def start_or_resume() -> list[str]:  # killed before its first checkpoint, a run starts again (over its files)
        if ckpt.has_checkpoint(run):
            return ["train", "--resume", str(run)]
        return ["train", *common, "--out", str(run), "--overwrite"]

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
    drop = ("elapsed_s", "images_per_s", "data_wait_s_per_step")  # wall-clock measurements, not results
    assert [{k: v for k, v in r.items() if k not in drop} for r in history] == \
        [{k: v for k, v in r.items() if k not in drop} for r in reference]
