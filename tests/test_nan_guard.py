"""The NaN / inf guard: non-finite steps are skipped and counted; too many stop the run with the last good
checkpoint and a message naming the cause."""

from __future__ import annotations

import pytest
import torch

from test_training import make_folder, tiny_config
from vitkit.errors import VitkitError
from vitkit.train import checkpoint as ckpt
from vitkit.train.loop import Trainer


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
