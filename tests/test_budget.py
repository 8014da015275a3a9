"""``--time-limit`` plans the run: the planner's arithmetic, the re-targeted schedule, and whole runs on a fake
clock (no test here depends on real time)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import run_cli
from test_training import TINY, make_folder, tiny_config
from vitkit.models import create_model
from vitkit.store import read_weights
from vitkit.train import budget
from vitkit.train.budget import Budget, Pace, epochs_in_budget, planned_warmup
from vitkit.train.loop import Trainer, train
from vitkit.train.optim import WarmupCosine, warmup_cosine
from vitkit.train.run_folder import resume_config
from vitkit.train.tasks import ImageTask


def old_factor(total: int, warmup: int, floor: float):
    """The schedule before planning existed (vitkit 2026-12-05), the reference for runs without a time limit."""
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    return factor


@pytest.mark.parametrize("total,warmup", [(1200, 78), (7, 1), (93, 18), (30 * 39, 2 * 39)])
def test_without_a_plan_the_schedule_is_bit_for_bit_the_old_one(total: int, warmup: int) -> None:
    new, old = WarmupCosine(total, warmup, 1e-5 / 2e-3), old_factor(total, warmup, 1e-5 / 2e-3)
    assert all(new(step) == old(step) for step in range(total + 3))


def test_the_planner_fits_whole_epochs_with_margin_and_a_final_evaluation() -> None:
    pace = Pace(step_s=0.05, epoch_extra_s=10.0)  # 100 steps: 5 s of steps + 10 s of evaluation per epoch
    epochs = epochs_in_budget(600.0, 0.0, 0, 100, pace, cap=1000)
    assert epochs == 38  # (600 * 0.97 - 10) // 15
    assert epochs * 15 + 10 <= 600 * 0.97 < (epochs + 1) * 15 + 10
    assert epochs_in_budget(600.0, 0.0, 0, 100, pace, cap=20) == 20  # --epochs is the most
    assert epochs_in_budget(600.0, 590.0, 7, 100, pace, cap=1000) == 8  # out of time: the next epoch ends it
    assert epochs_in_budget(600.0, 300.0, 10, 100, pace, cap=1000, earliest=12) == 28  # 10 + (272 // 15)
    assert planned_warmup(2.0, 100, 38 * 100) == 200 and planned_warmup(2.0, 100, 500) == 100  # <= a fifth


def test_the_lr_reaches_min_lr_at_the_last_planned_step_and_a_replan_keeps_it_continuous() -> None:
    lr, min_lr = 2e-3, 1e-5
    for new_total in (60, 150):  # shortened and lengthened at step 40
        weight = torch.nn.Parameter(torch.zeros(1))
        scheduler = warmup_cosine(torch.optim.SGD([weight], lr=lr), 100, 10, lr, min_lr)
        schedule = scheduler.lr_lambdas[0]
        rates = []
        for step in range(new_total):
            if step == 40:
                before = schedule(40)
                schedule.retarget(40, new_total)
                assert schedule(40) == before  # no jump
            rates.append(scheduler.get_last_lr()[0])
            scheduler.optimizer.step()
            scheduler.step()
        assert scheduler.get_last_lr()[0] == pytest.approx(min_lr, rel=1e-12)  # after the last planned step
        assert all(b <= a for a, b in zip(rates[10:], rates[11:])), "after the warmup the rate only falls"
        steepest = lr * math.pi / 2 / min(90, new_total - 40)  # the largest fall per step of either cosine
        assert max(a - b for a, b in zip(rates[10:], rates[11:])) <= steepest, "no jump anywhere"
        naive = old_factor(new_total, 10, min_lr / lr)  # moving the end without the anchor would jump at step 40
        assert abs(naive(40) * lr - rates[40]) > 3 * steepest


def test_a_replan_follows_the_measured_pace(monkeypatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(budget, "now", lambda: clock[0])
    plan = Budget(300.0, 10, cap=1000)
    schedule = plan.first_plan(Pace(1.0, 5.0), warmup_epochs=1.0, floor=0.01)
    assert (schedule.total, schedule.warmup) == (190, 10)  # (300 * 0.97 - 5) // (10 * 1 + 5) = 19 epochs
    clock[0] = 30.0
    assert plan.replan(schedule, 1, Pace(3.0, 0.0)) is None  # a process's first epoch (start-up) re-plans nothing
    clock[0] = 45.0
    # Back on the probe's pace, but the start-up's extra 15 s are spent: 2 + (291 - 45 - 5) // 15
    assert "18 epochs instead of 19" in plan.replan(schedule, 2, Pace(1.0, 5.0))
    clock[0] = 45.0 + 25.0
    # The mean of the later epochs: 1.5 s/step, 20 s/epoch: 3 + (291 - 70 - 5) // 20
    assert "13 epochs instead of 18" in plan.replan(schedule, 3, Pace(2.0, 5.0))
    assert schedule.total == 130 and schedule(130) == pytest.approx(0.01, rel=1e-12)


STEP_S, EVAL_S = 1.0, 2.0


@pytest.fixture
def fake_clock(monkeypatch):
    """Time passes only in optimiser steps (1 s, 2 s from step 6 on: the machine slows down) and evaluations
    (2 s); the probe reports the first pace."""
    clock = [0.0]
    step, evaluate = Trainer._optimizer_step, ImageTask.evaluate

    def timed_step(self, images, targets):
        clock[0] += STEP_S if self.global_step < 6 else 2 * STEP_S
        return step(self, images, targets)

    def timed_evaluate(self, model, precision):
        clock[0] += EVAL_S
        return evaluate(self, model, precision)

    monkeypatch.setattr(budget, "now", lambda: clock[0])
    monkeypatch.setattr(budget, "probe_pace", lambda *args, **kwargs: Pace(STEP_S, EVAL_S))
    monkeypatch.setattr(Trainer, "_optimizer_step", timed_step)
    monkeypatch.setattr(ImageTask, "evaluate", timed_evaluate)
    return clock


def test_a_planned_run_ends_within_its_budget_with_the_lr_at_its_floor(tmp_path, fake_clock) -> None:
    data = make_folder(tmp_path / "shapes")  # 24 train images, batch 8: 3 steps per epoch
    config = tiny_config(data, tmp_path / "run", epochs=1000, time_limit=0.5)  # 30 s
    trainer = Trainer(config)
    assert trainer.planned_epochs == 5  # (30 * 0.97 - 2) // (3 * 1 + 2)
    trainer.fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    # From step 6 a step takes 2 s: after epoch 3 (18 s used) only one more 8 s epoch fits.
    assert len(rows) == 4 and trainer.schedule.total == 12
    assert fake_clock[0] <= 30.0  # the final evaluation of the best model included
    assert rows[-1]["lr"] == pytest.approx(config.min_lr, rel=1e-9)
    assert all(b["lr"] < a["lr"] for a, b in zip(rows[1:], rows[2:]))


def test_a_planned_run_resumes_bit_exactly(tmp_path, fake_clock) -> None:
    data = make_folder(tmp_path / "shapes")
    train(tiny_config(data, tmp_path / "straight", epochs=1000, time_limit=0.5))
    fake_clock[0] = 0.0
    first = Trainer(tiny_config(data, tmp_path / "stopped", epochs=1000, time_limit=0.5))
    assert first.fit(stop_after_steps=10)["interrupted"]  # inside epoch 4, after the re-plan to 4 epochs
    resumed = Trainer(resume_config(tmp_path / "stopped"), resume=True)
    assert resumed.schedule.total == 12 and resumed.budget.used_before == 20.0  # 3 epochs of 5, 5, 8 s + a step
    resumed.fit()
    straight, stopped = (read_weights(tmp_path / name / "last.safetensors") for name in ("straight", "stopped"))
    for key in straight:
        assert torch.equal(straight[key], stopped[key]), key
    assert len((tmp_path / "stopped" / "metrics.jsonl").read_text().splitlines()) == 4


def test_the_probe_leaves_the_model_and_the_random_state_alone() -> None:
    model = create_model("vit_ti16", **TINY, drop_path=0.1, num_classes=2)  # drop path draws random numbers
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    images, targets = torch.randn(4, 3, 32, 32), torch.eye(2)[[0, 1, 0, 1]]
    rng = torch.get_rng_state()
    pace = budget.probe_pace(model, images, targets, "fp32", val_size=100, steps=1)
    assert pace.step_s > 0 and pace.epoch_extra_s > 0
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())


def test_plan_only_prints_the_plan_and_trains_nothing(tmp_path) -> None:
    data = make_folder(tmp_path / "shapes")
    out = tmp_path / "run"
    args = ["--model-arg", "image_size=32", "--model-arg", "patch_size=8", "--model-arg", "dim=32",
            "--model-arg", "depth=2", "--model-arg", "heads=2", "--batch-size", "8", "--precision", "fp32"]
    result = run_cli("train", "--data", str(data), *args, "--time-limit", "2", "--plan-only", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "epochs x 3 steps" in result.stdout and "ms/step (fp32, measured)" in result.stdout
    assert "of 2 min" in result.stdout and not out.exists()
