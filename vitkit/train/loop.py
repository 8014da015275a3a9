"""The training loop: data, model, optimiser, schedule, evaluation each epoch, checkpoints, resume.

    run = train(TrainConfig(data="path/to/images", model="vit_ti16", epochs=30, out="runs/pets"))

A run folder holds config.json, model.safetensors (best val accuracy), last.safetensors, checkpoints/ (the
last two resumable states, see checkpoint.py), metrics.jsonl, tensorboard/, plots/ and summary.json.

Under torchrun the same loop runs in every process (see distributed.py): ``batch_size`` is the global batch,
each process builds its slice of it, and only rank 0 writes files or logs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from ..data.images import ImageSet
from ..errors import VitkitError
from ..fast.precision import resolve_precision
from ..outputs import claim_run_folder
from ..store import CONFIG_FILE, atomic_write_json, load_model, model_config_json, state_dict_bytes
from . import budget, distributed, report
from .bad_steps import BadStep
from .budget import Budget, Pace
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .ema import make_ema
from .epoch_stats import EpochStats
from .eta import RunClock
from .evaluate import autocast
from .feed import Feed, resolve_workers, resolved_cache
from .model_setup import build_model, probe_model
from .normalisation import resolve_normalisation
from .optim import WarmupCosine, make_optimizer
from .run_folder import check_run_folder, write_summary, write_weights
from .stop import StopRequest
from .tasks import make_task


def log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7_919 + epoch))


class Trainer:
    """One training run. Build it with a config (new run) or with ``resume=True`` (continue ``config.out``)."""

    def __init__(self, config: TrainConfig, *, resume: bool = False, device: str | torch.device | None = None,
                 overwrite: bool = False) -> None:
        self.run_dir = Path(config.out)
        self.group, self.device = distributed.start(device)
        config, self.normalisation = resolve_normalisation(config, resumed=resume)  # before the data is read
        # The run records the precision it chose, so a resumed run keeps it on any machine.
        self.config = config = dataclasses.replace(config, precision=resolve_precision(config.precision, self.device),
                                                   workers=resolve_workers(config.workers))  # shards: the lane count
        if not resume:  # a new run never writes over a folder's files unless asked (see outputs.py)
            claim_run_folder(self.run_dir, overwrite=overwrite, clear=self.group.main)
        self.local_batch = distributed.local_batch(config.batch_size, config.accum_steps, self.group.world)
        if config.fsdp and config.ema:
            raise VitkitError("--fsdp cannot keep an --ema copy of the sharded model yet; drop one of the two")
        torch.manual_seed(config.seed)  # the same on every process: FSDP shards (does not broadcast) the init
        self.model = self._build_model_for_data()
        config = self.config = resolved_cache(config, self.task)  # a resumed run keeps --cache auto's choice
        # Described before FSDP turns the class into FSDPVisionTransformer.
        self.model_json = model_config_json(self.model, class_names=self.class_names,
                                            preprocess=self.task.preprocess(), train=config.to_dict())
        if self.group.main:  # fail before training, not hours later
            weights = sum(t.numel() * t.element_size() for t in self.model.state_dict().values())
            check_run_folder(self.run_dir, weights, bool(config.ema), resume)
        self.ema = make_ema(self.model, config.ema)
        self.steps_per_epoch = self.task.sizes[0] // config.batch_size
        if self.steps_per_epoch == 0:
            raise VitkitError(f"only {self.task.sizes[0]} training {self.task.kind}s for --batch-size {config.batch_size}; "
                              "lower the batch size")
        self.feed = Feed(self.task, config, rank=self.group.rank, world=self.group.world, local_batch=self.local_batch,
                         device=self.device, order=epoch_order, cache=getattr(self.task, "cache", None), log=self._log)
        self.schedule = self._plan_schedule(resume)  # before FSDP: the probe times a copy of the whole model
        self.wrapped = distributed.wrap(self.model, self.group, self.device, config.fsdp)
        self.optimizer = make_optimizer(self.model, config.lr, config.weight_decay)  # after FSDP swaps parameters
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.schedule)
        self.forward = torch.compile(self.wrapped) if config.compile else self.wrapped
        self.epoch, self.step, self.best_accuracy = 0, 0, -1.0
        self.history: list[dict[str, Any]] = []
        self.partial = EpochStats()
        self.bad_steps: list[str] = []
        self.last_checkpoint: str | None = None
        self.save_s = 0.0  # how long the last checkpoint took: part of an epoch's cost for the plan
        if resume:
            self._restore()

    @property
    def global_step(self) -> int:
        return self.epoch * self.steps_per_epoch + self.step

    @property
    def planned_epochs(self) -> int:
        """``--epochs``, or the epochs the time limit's plan holds now (see budget.py)."""
        return self.schedule.total // self.steps_per_epoch

    def plan_text(self) -> str:
        """The plan's line (a run without ``--time-limit`` is probed first, for its expected minutes)."""
        c = self.config
        pace = self.budget.pace if self.budget else self._probe()
        return budget.describe(self.schedule, self.steps_per_epoch, pace, c.precision, c.lr, c.min_lr,
                               self.budget.budget_s if self.budget else None)

    # --- setup -------------------------------------------------------------------------------------------

    def _build_model_for_data(self) -> nn.Module:
        c = self.config
        self.task = make_task(c, probe_model(c).config)
        if self.task.skipped:
            self._log(report.skipped_warning(self.task.skipped))
        train_size, val_size = self.task.sizes
        if not train_size or not val_size:
            raise VitkitError(f"no readable {self.task.kind}s left in {'train' if not train_size else 'val'} of {c.data}")
        self.class_names = self.task.class_names
        overrides = {**c.model_args, "num_classes": len(self.class_names), **self.task.model_overrides()}
        return build_model(c, overrides, self.task.kind != "image", self.device, self._log)

    def _plan_schedule(self, resume: bool) -> WarmupCosine:
        """``--epochs`` of warmup + cosine; with ``--time-limit`` the budget's plan (a resumed run's schedule is
        then restored from its checkpoint)."""
        c, per_epoch = self.config, self.steps_per_epoch
        self.budget = Budget(c.time_limit * 60, per_epoch, c.epochs) if c.time_limit else None
        if self.budget is not None and not resume:
            return self.budget.first_plan(self._probe(), c.warmup_epochs, c.min_lr / c.lr)
        total = per_epoch * c.epochs
        return WarmupCosine(total, max(1, min(total - 1, round(c.warmup_epochs * per_epoch))), c.min_lr / c.lr)

    def _probe(self) -> Pace:
        """The pace of this machine on the run's first batch (the mean over the processes)."""
        first = self.feed.first_batch()
        pace = budget.probe_pace(self.model, first.inputs.to(self.device), first.targets.to(self.device),
                                 self.config.precision, self.task.sizes[1])
        return self._mean_pace(pace)

    def _mean_pace(self, pace: Pace) -> Pace:
        """Every process plans with the same numbers, so all take the same decisions."""
        step_s, extra_s = distributed.sum_all([pace.step_s, pace.epoch_extra_s], self.group, self.device)
        return Pace(step_s / self.group.world, extra_s / self.group.world)

    def _restore(self) -> None:
        state, folder = load_checkpoint(self.run_dir, self._log, set_aside=self.group.main)
        try:
            distributed.load_full_state(self.model, self.optimizer, state["model"], state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.ema is not None and state.get("ema") is not None:
                self.ema.load_state_dict(state["ema"])
        except (RuntimeError, KeyError, ValueError) as error:
            raise VitkitError(f"checkpoint {folder} does not fit the model of {self.run_dir / CONFIG_FILE} "
                              f"({str(error).splitlines()[0][:160]}); resume with the config it was saved with") from None
        torch.set_rng_state(state["rng"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.best_accuracy, self.history = state["best_accuracy"], state["history"]
        self.partial = EpochStats(**state.get("partial", {}))
        self.bad_steps = list(state.get("bad_steps", []))
        if self.budget is not None:
            self.budget.used_before = state.get("budget_used_s", 0.0)
        self.last_checkpoint = folder.name
        self._log(f"resuming {self.run_dir} from {folder.name}: epoch {self.epoch + 1}, step {self.step} of "
            f"{self.steps_per_epoch}")

    # --- the loop ----------------------------------------------------------------------------------------

    def fit(self, stop_after_steps: int | None = None) -> dict[str, Any]:
        """Train to the end (or until a signal, the time limit or ``stop_after_steps``); returns the summary."""
        c = self.config
        if self.group.main:
            atomic_write_json(self.run_dir / CONFIG_FILE, self.model_json)
        board = report.TensorBoard(self.run_dir, purge_step=self.global_step, enabled=self.group.main)
        start, steps_done = time.monotonic(), 0
        if self.budget is not None:
            self.budget.started = budget.now()
        self.clock = RunClock(self.schedule.total, self.global_step, c.time_limit and c.time_limit * 60)
        self._print_start()
        finished = False  # False while an exception unwinds: then no rank waits for the others
        try:
            with StopRequest() as stop:
                while self.epoch < self.planned_epochs:
                    began = budget.now()
                    train_stats = self._train_epoch(stop, stop_after_steps, steps_done)
                    steps = train_stats.pop("steps")
                    steps_done += steps
                    if self.step < self.steps_per_epoch:  # interrupted mid-epoch
                        self._save_checkpoint()
                        reason = f"signal {stop.signal}" if stop.signal else "stop requested"
                        self._log(f"{reason}: saved {self.run_dir} at epoch {self.epoch + 1} step {self.step}; "
                                  f"continue with `vitkit train --resume {self.run_dir}`")
                        finished = True
                        return {"interrupted": True, "epoch": self.epoch, "step": self.step}
                    step_s = (budget.now() - began) / max(1, steps)
                    self._end_epoch(train_stats, time.monotonic() - start, board, step_s)
            finished = True
            if self.budget is not None:
                self._log(self.budget.done_text(self.epoch, self.scheduler.get_last_lr()[0], c.min_lr))
        finally:
            board.close()
            self.feed.close()
            distributed.stop(self.group, finished)
        if not self.group.main:
            return {"rank": self.group.rank, "epochs_done": self.epoch}
        return self._finish(time.monotonic() - start)

    def _log(self, message: str) -> None:
        if self.group.main:
            log(message)

    def _train_epoch(self, stop: StopRequest, stop_after_steps: int | None, steps_done: int) -> dict[str, float]:
        c = self.config
        self.wrapped.train()
        batches = self.feed.batches(self.epoch, self.step, self.steps_per_epoch)
        stats, steps, waited, began = self.partial, 0, 0.0, time.perf_counter()
        bar = tqdm(total=self.steps_per_epoch * c.batch_size, initial=self.step * c.batch_size, unit="img",
                   desc=f"epoch {self.epoch + 1}/{self.planned_epochs}", leave=False, dynamic_ncols=True,
                   disable=None if self.group.main else True)
        while self.step < self.steps_per_epoch:
            asked = stop.signal is not None or (stop_after_steps is not None and steps_done + steps >= stop_after_steps)
            if distributed.any_true(asked, self.group, self.device):  # every process stops at the same step
                break
            ready = next(batches)
            waited += self.feed.wait
            images = ready.inputs.to(self.device, non_blocking=True)
            result = self._optimizer_step(images, ready.targets.to(self.device, non_blocking=True))
            if result is not None:
                stats.add(*result, c.batch_size)
            self.step, steps = self.step + 1, steps + 1
            bar.update(c.batch_size)
            elapsed = time.perf_counter() - began
            speed = dict(speed=f"{steps * c.batch_size / elapsed:.0f} img/s")
            if waited > 0.1 * elapsed:  # the loader is the bottleneck: say how long each step waits for data
                speed["data_wait"] = f"{1000 * waited / steps:.0f} ms/step"
            bar.set_postfix(loss=f"{stats.loss:.3f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}",
                            run_eta=self.clock.text(self.global_step), **speed)
            if c.save_every and self.global_step % c.save_every == 0 and self.step < self.steps_per_epoch:
                self._save_checkpoint()
        bar.close()
        elapsed = time.perf_counter() - began
        return {"train_loss": stats.loss, "train_accuracy": stats.accuracy, "steps": steps,
                "images_per_s": round(steps * c.batch_size / max(elapsed, 1e-9), 1),
                "data_wait_s_per_step": round(waited / max(1, steps), 4)}

    def _optimizer_step(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[float, int] | None:
        """One step on the global batch; returns its (mean loss, correct count), or None when it was skipped."""
        c = self.config
        micro = self.local_batch // c.accum_steps
        starts = range(0, len(images), micro)
        loss_sum, hits = 0.0, 0
        for start in starts:
            x, y = images[start : start + micro], targets[start : start + micro]
            with self._sync_if(start == starts[-1]):
                with autocast(c.precision, self.device):
                    logits = self.forward(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=c.label_smoothing)
                (loss * len(x) / len(images)).backward()
            loss_sum += loss.item() * len(x)
            hits += int((logits.argmax(1) == y.argmax(1)).sum())
        # clip_grad 0 still measures the norm (max_norm inf scales by exactly 1): it tells bad gradients apart.
        norm = distributed.global_norm(nn.utils.clip_grad_norm_(self.model.parameters(), c.clip_grad or math.inf))
        bad_input = not bool(torch.isfinite(images).all())
        loss_sum, hits, bad_input = distributed.sum_all([loss_sum, hits, bad_input], self.group, self.device)
        loss = loss_sum / c.batch_size
        finite = math.isfinite(loss) and math.isfinite(norm) and not bad_input
        if finite:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()  # also after a skip: the schedule stays tied to the data position
        if not finite:
            self._skip_step(loss, norm, bool(bad_input))
            return None
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss, int(hits)

    def _sync_if(self, last: bool) -> Any:
        """DDP averages gradients only on the last micro-batch of an accumulated step."""
        if last or not hasattr(self.wrapped, "no_sync"):
            return contextlib.nullcontext()
        return self.wrapped.no_sync()

    def _skip_step(self, loss: float, norm: float, bad_input: bool) -> None:
        """Skip-and-count a step with non-finite values; past ``max_bad_steps`` stop, keeping the last checkpoint."""
        c, bad = self.config, BadStep(loss, norm, bad_input)
        where = f"step {self.global_step + 1} (epoch {self.epoch + 1}, step {self.step + 1} of {self.steps_per_epoch})"
        self.bad_steps.append(f"{where}: {bad.what} {bad.value}")
        self._log(f"warning: skipped {where}: {bad.what} is {bad.value} ({len(self.bad_steps)} of at most "
                  f"{c.max_bad_steps} skips)")
        if len(self.bad_steps) <= c.max_bad_steps:
            return
        kept = f"the last good checkpoint, {self.last_checkpoint}, is kept" if self.last_checkpoint else \
            "no checkpoint was saved yet"
        raise VitkitError(f"training stopped at {where}: {len(self.bad_steps)} steps had non-finite values "
                          f"(--max-bad-steps {c.max_bad_steps}), the last: {bad.what} {bad.value}; likely cause: "
                          f"{bad.likely_cause(c)}; {kept} in {self.run_dir}")

    def _end_epoch(self, train_stats: dict[str, float], elapsed: float, board: report.TensorBoard,
                   step_s: float) -> None:
        evaluated = budget.now()
        metrics = self.task.evaluate(self.eval_model, self.config.precision)
        self.epoch, self.step = self.epoch + 1, 0
        # Re-planned before the checkpoint, which must hold the schedule the run goes on with.
        note = self._replan(Pace(step_s, budget.now() - evaluated + self.save_s)) if self.budget else None
        row = {"epoch": self.epoch, **train_stats, "val_loss": metrics["loss"], "val_accuracy": metrics["accuracy"],
               "lr": self.scheduler.get_last_lr()[0], "elapsed_s": round(elapsed, 1)}
        if "top5_accuracy" in metrics:
            row["val_top5_accuracy"] = metrics["top5_accuracy"]
        self.history.append(row)
        self.partial = EpochStats()
        improved = metrics["accuracy"] > self.best_accuracy
        if improved:
            self.best_accuracy = metrics["accuracy"]
        self._save_checkpoint(best=improved)
        if self.group.main:
            report.write_metrics(self.run_dir, self.history)
            board.scalars({k: v for k, v in row.items() if k != "epoch"}, self.epoch * self.steps_per_epoch)
            report.plot_curves(self.run_dir, self.history)
        self._log(f"epoch {self.epoch}/{self.planned_epochs}  train loss {row['train_loss']:.4f}  "
            f"val loss {row['val_loss']:.4f}  val acc {row['val_accuracy']:.2%}{'  (best)' if improved else ''}  "
            f"lr {row['lr']:.2e}  "
            f"[{elapsed / 60:.1f} min, run ETA {self.clock.text(self.global_step)}]")
        if note:
            self._log(note)

    def _replan(self, pace: Pace) -> str | None:
        """Move the schedule's end if the last epoch's pace fits another number of epochs in the budget."""
        note = self.budget.replan(self.schedule, self.epoch, self._mean_pace(pace))
        self.clock.total = self.schedule.total
        return note

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _save_checkpoint(self, best: bool = False) -> None:
        """Rank 0 writes last.safetensors (and model.safetensors when ``best``), then a verified checkpoint."""
        began = budget.now()
        model_state, optim_state = distributed.full_state(self.model, self.optimizer)  # a collective under FSDP
        if not self.group.main:
            return
        weights = state_dict_bytes(self.ema.module if self.ema is not None else model_state)
        write_weights(self.run_dir, weights, best, self.last_checkpoint)
        folder = save_checkpoint(self.run_dir, self.global_step, {
            "model": model_state, "optimizer": optim_state,
            "scheduler": self.scheduler.state_dict(), "ema": self.ema.state_dict() if self.ema else None,
            "rng": torch.get_rng_state(), "epoch": self.epoch, "step": self.step,
            "best_accuracy": self.best_accuracy, "history": self.history, "partial": vars(self.partial),
            "bad_steps": self.bad_steps, **budget.state(self.budget),
        })
        self.last_checkpoint = folder.name
        self.save_s = budget.now() - began

    def _print_start(self) -> None:
        c = self.config
        params = sum(p.numel() for p in self.model.parameters())  # FSDP's DTensors count their full size
        train_size, val_size = self.task.sizes
        self._log(f"training {c.model} ({params / 1e6:.2f}M params) on {c.data}: {train_size} train / {val_size} val "
                  f"{self.task.kind}s, {len(self.class_names)} classes, {self.task.describe()}, "
                  f"{self.steps_per_epoch} steps/epoch x {self.planned_epochs} epochs, {c.precision}, {self.device} -> "
                  f"{self.run_dir}")
        for line in c.plan:
            self._log(f"recipe: {line}")
        if self.budget is not None:
            self._log(f"--time-limit {c.time_limit:g} min (at most {c.epochs} epochs) {self.plan_text()}")
        engine = ("FSDP" if c.fsdp else "DDP") if self.group.active else "1 process"
        self._log(f"global batch {c.batch_size} = {self.group.world} process(es) x {self.local_batch} per process"
                  f" ({c.accum_steps} micro-batch(es) of {self.local_batch // c.accum_steps}), {engine}; lr {c.lr:g} "
                  "is for the global batch, so the process count changes nothing (scale --lr with --batch-size)")
        self._log(self.normalisation)
        self._log(self.feed.describe())

    def _finish(self, elapsed: float) -> dict[str, Any]:
        best, _ = load_model(self.run_dir, device=self.device)
        metrics = self.task.evaluate(best, "fp32")
        report.plot_confusion(self.run_dir / "plots" / "confusion_matrix.png", metrics["confusion_matrix"],
                              self.class_names)
        return write_summary(self.run_dir, self.config, self.epoch, elapsed, metrics, len(self.task.skipped))


def train(config: TrainConfig, *, resume: bool = False, overwrite: bool = False,
          stop_after_steps: int | None = None) -> dict[str, Any]:
    """Run (or resume) a training run; returns its summary. A new run needs an empty or absent ``config.out``
    (``overwrite=True`` replaces the files of an earlier run there)."""
    return Trainer(config, resume=resume, overwrite=overwrite).fit(stop_after_steps=stop_after_steps)


__all__ = ["Trainer", "train", "ImageSet"]
