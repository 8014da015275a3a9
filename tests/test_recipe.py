"""The recipe planner (train/recipe.py): which row of the rules a data set gets, which candidate model a budget
buys (with a fake, recorded step time), and that every flag the user gives wins over the plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vitkit.cli import build_parser
from vitkit.commands.train import build_train_config
from vitkit.data.profile import DataProfile, guess_task, profile_data
from vitkit.train import recipe
from vitkit.train.recipe import RULES, candidates_for, choose, plan_recipe, rule_for


def profile(items: int = 2000, side: int | None = 300, task: str = "image", classes: int = 2) -> DataProfile:
    return DataProfile(task, items, classes, side)


class FakeClock:
    """Seconds per epoch of each candidate, by label, recording which were measured."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.seconds, self.measured = seconds, []

    def __call__(self, candidate: recipe.Candidate) -> float:
        self.measured.append(candidate.label)
        return self.seconds[candidate.label]


def test_rows_follow_task_and_size() -> None:
    assert rule_for(profile(2_000)).name == "small image set"
    assert rule_for(profile(50_000)).name == "medium image set"
    assert rule_for(profile(1_281_167)).name == "large image set"
    assert rule_for(profile(108, task="video")).name == "small video set"
    assert rule_for(profile(300_000, task="video")).name == "large video set"
    for task in ("image", "video"):  # every size has a row, and rows grow
        rows = [r for r in RULES if r.task == task]
        assert rows[-1].max_items == float("inf")
        assert [r.max_items for r in rows] == sorted(r.max_items for r in rows)


def test_the_largest_candidate_that_fits_the_wanted_epochs_wins_and_probing_stops_there() -> None:
    rule = rule_for(profile())
    labels = [c.label for c in rule.candidates]
    clock = FakeClock(dict(zip(labels, [10.0, 20.0, 40.0, 80.0])))
    budget_s = rule.epochs * 30.0 / (1 - recipe.FIT_MARGIN)  # the wanted epochs of 30 s fit, of 40 s do not
    chosen, why = choose(rule, budget_s, clock, list(rule.candidates))
    assert chosen.label == labels[1]
    assert clock.measured == labels[:3]  # the fourth, slower still, was never built
    assert f"the largest that trains {rule.epochs} epochs" in why
    assert f"20.0 s/epoch, {round(rule.epochs * 1.5)} epochs" in why  # 30 / 20 times the wanted epochs


def test_when_nothing_fits_the_cheapest_is_chosen_and_the_line_says_so() -> None:
    rule = rule_for(profile())
    clock = FakeClock({c.label: 100.0 for c in rule.candidates})
    chosen, why = choose(rule, 60 * 60, clock, list(rule.candidates))
    assert chosen == rule.candidates[0]
    assert clock.measured == [rule.candidates[0].label]  # the cheapest does not fit: larger ones cannot
    assert f"fits only ~32 of the {rule.epochs} epochs" in why and "--time-limit" in why  # 3600 * 0.9 // 100 = 32


def test_candidates_never_upscale_much_and_small_images_get_small_patches() -> None:
    rule = rule_for(profile())
    assert [c.img_size for c in candidates_for(rule, profile(side=120))] == [96, 128]  # 160 > 120 * 1.15
    assert [c.img_size for c in candidates_for(rule, profile(side=80))] == [96]  # the cheapest stays
    assert candidates_for(rule, profile(side=None)) == list(rule.candidates)
    tiny = candidates_for(rule, profile(side=28))
    assert {c.img_size for c in tiny} == {28} and {c.model_args["patch_size"] for c in tiny} == {4}


def test_plan_fills_the_row_and_keeps_what_the_user_gave() -> None:
    rule = rule_for(profile())
    clock = FakeClock({c.label: 1.0 for c in rule.candidates})
    plan = plan_recipe(profile(), {"lr": 0.01, "model_args": {}}, None, clock)
    assert plan.values["time_limit"] == rule.default_minutes and plan.values["epochs"] == 2 * rule.epochs
    assert plan.values["augment"] == rule.settings["augment"]
    assert plan.values["model"] == rule.candidates[-1].model  # 1 s/epoch: everything fits
    assert plan.values["model_args"]["drop_path"] == rule.settings["drop_path"]
    assert "lr" not in plan.reasons[-1]  # the user's --lr is not reported as the plan's


def test_fsdp_runs_get_no_ema() -> None:
    plan = plan_recipe(profile(), {"fsdp": True, "model": "vit_s16", "model_args": {}}, 5, None)
    assert plan.values["ema"] == 0.0 and any("--fsdp" in r for r in plan.reasons)
    assert plan_recipe(profile(), {"model": "vit_s16", "model_args": {}}, 5, None).values["ema"] > 0


def test_a_given_model_or_epoch_count_is_not_planned_over() -> None:
    def never(candidate):
        raise AssertionError("no probe when the model is given")

    plan = plan_recipe(profile(), {"model": "vit_s16", "epochs": 5, "model_args": {}}, None, never)
    assert "model" not in plan.values and "time_limit" not in plan.values
    assert any("as given on the command line" in r for r in plan.reasons)
    assert plan.values["batch_size"] == 32
    assert plan_recipe(profile(items=100), {"model_args": {"depth": 3}}, 5, never).values["batch_size"] == 12


def image_folder(root: Path, sides: list[int]) -> Path:
    for index, side in enumerate(sides):
        folder = root / ("cat" if index % 2 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(index).integers(0, 255, (side, side + 10, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


def test_profile_reads_counts_and_the_median_short_side(tmp_path) -> None:
    root = image_folder(tmp_path / "data", [40, 50, 60, 70, 80, 90, 100, 110, 120, 130])
    (root / "dog" / "broken.jpg").write_bytes(b"<html>not an image</html>")
    found = profile_data(str(root), "image", val_fraction=0.2)
    assert (found.task, found.classes) == ("image", 2)
    assert found.items == 9  # 11 files, 2 to val: the broken one counts as a file (the loader skips it later)
    assert 40 <= found.short_side <= 130


def test_the_cli_layers_defaults_plan_and_flags(tmp_path, monkeypatch) -> None:
    root = image_folder(tmp_path / "data", [48] * 16)
    seconds = {f"vit_ti16 (4 px patches, {d} blocks) at 48 px": d / 10 for d in (6, 9, 12)}
    monkeypatch.setattr(recipe, "measure_epoch", lambda *a, **k: FakeClock(seconds))
    args = build_parser().parse_args(["train", "--data", str(root), "--lr", "0.01", "--drop-path", "0.2",
                                      "--time-limit", "2"])
    config = build_train_config(args)
    assert config.lr == 0.01 and config.model_args["drop_path"] == 0.2  # flags win
    assert config.augment == "randaugment" and config.ema == 0.999  # the row fills the rest
    assert config.model_args["patch_size"] == 4 and config.img_size == 48  # 48 px photos: small patches
    assert config.time_limit == 2 and config.epochs > 100  # the budget plans the epochs
    assert any(line.startswith("model vit_ti16 (4 px patches") for line in config.plan)
    embedded = build_train_config(build_parser().parse_args(["train"]))
    assert embedded.plan == [] and embedded.model == "vit_mnist"  # embedded sets keep their own recipes


@pytest.mark.parametrize("given", [["--model", "vit_s16"], ["--init", "x"]])
def test_no_probe_when_the_model_is_fixed(tmp_path, monkeypatch, given) -> None:
    root = image_folder(tmp_path / "data", [48] * 16)
    monkeypatch.setattr(recipe, "measure_epoch", lambda *a, **k: pytest.fail("probed"))
    monkeypatch.setattr(recipe, "in_distributed_run", lambda: False)
    config = build_train_config(build_parser().parse_args(["train", "--data", str(root), *given]))
    assert config.model == "vit_s16" or config.init == "x"


def test_the_probe_builds_the_candidate_with_its_own_options() -> None:
    """A 4-pixel-patch candidate at 40 px must be probed as such (the default 16-pixel patch does not fit 40 px)."""
    import torch

    tiny = recipe.Candidate("tiny", "vit_ti16", {"patch_size": 4, "depth": 1, "dim": 32, "heads": 2}, 40)
    seconds = recipe.measure_epoch(profile(items=16, side=40), 8, "fp32", torch.device("cpu"), steps=1)(tiny)
    assert 0 < seconds < 60


def test_a_folder_of_videos_plans_a_video_run_without_task(tmp_path, monkeypatch) -> None:
    videos, images = tmp_path / "clips", image_folder(tmp_path / "photos", [48] * 4)
    for split in ("train", "val"):
        for label in ("jump", "run"):
            (videos / split / label).mkdir(parents=True)
            for index in range(3):  # headers are never decoded by the guess: the suffix decides
                (videos / split / label / f"{index}.avi").write_bytes(b"")
    (videos / "train" / "notes.txt").write_text("a stray file the guess must pass over")
    assert (guess_task(str(videos)), guess_task(str(images)), guess_task("mnist-5k")) == ("video", "image", "image")
    monkeypatch.setattr(recipe, "measure_epoch", lambda *a, **k: lambda candidate: 0.01)
    config = build_train_config(build_parser().parse_args(["train", "--data", str(videos), "--time-limit", "2"]))
    assert config.task == "video" and config.model.startswith("vivit") and config.frames
    assert config.plan[0].startswith("data: 6 training videos in 2 classes")
    given = build_train_config(build_parser().parse_args(["train", "--data", str(images), "--task", "image",
                                                          "--time-limit", "2"]))
    assert given.task == "image"
