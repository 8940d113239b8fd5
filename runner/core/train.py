"""The training loop: minibatches -> forward -> loss -> backward -> optimizer.step, evaluated each epoch.

``Training`` is the loop as an object whose progress a checkpoint saves. What it is configured with and how
it draws batches (``TrainerConfig``, ``BatchSampler``: runner.core.trainer_config) and how it scores a model
(``targets_for``, ``evaluate``, ``batch_scorer``: runner.core.evaluation) are importable from here too.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from runner.api import Loss, Optimizer, RunnerError, Splits
from runner.core.evaluation import EVAL_ROWS as EVAL_ROWS
from runner.core.evaluation import batch_scorer, evaluate, targets_for
from runner.core.trainer_config import BatchSampler, TrainerConfig
from runner.core.watch import Watch

log = logging.getLogger("runner.train")

#: ``log(metrics, step)``: where the loop reports what it measures.
MetricSink = Callable[[dict[str, float], int], None]


@runtime_checkable
class HasLearningRate(Protocol):
    """An optimizer with a learning rate: a plain attribute ``lr``, read at every step, which a schedule sets."""

    lr: float


def clip_by_global_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale every gradient by max_norm / ||g|| when the global norm ||g|| = sqrt(sum g^2) exceeds max_norm."""
    norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
    if norm > max_norm:
        scale = max_norm / (norm + 1e-6)
        for g in grads.values():
            g *= scale
    return norm


#: ``hook(training)``: called after every step or epoch (e.g. to stop at a step boundary on a signal)
StepHook = Callable[["Training"], None]


class Training:
    """The loop, as an object whose progress can be saved and restored (checkpoints, resume).

    ``run()`` trains from the step after ``self.step`` to the last and returns the final metrics,
    e.g. ``{"test/accuracy": 0.97, ...}``. ``learning_rate(step)`` sets ``optimizer.lr`` before each
    step (a schedule), logged as train/lr. ``after_step`` and ``after_epoch`` are called at those
    boundaries, where the state is consistent.

    What is measured when (``TrainerConfig``): train/loss is the running mean of the batch losses,
    logged every ``log_every`` steps; train/accuracy (train/mae) the running score of the batches
    since the last evaluation (``train_metrics: running``, free) or the whole training split
    re-evaluated (``full``); the val split is evaluated every ``eval_every`` epochs and after the
    last; the test split once, after the last epoch (``eval_test: final``) or with every evaluation.
    """

    def __init__(
        self,
        model,
        loss: Loss,
        optimizer: Optimizer,
        splits: Splits,
        trainer: TrainerConfig,
        rng: np.random.Generator,
        sink: MetricSink,
        learning_rate: Callable[[int], float] | None = None,
        after_step: StepHook | None = None,
        after_epoch: StepHook | None = None,
        watch: Watch | None = None,
    ):
        self.model, self.loss, self.optimizer, self.splits, self.trainer = model, loss, optimizer, splits, trainer
        self.sink, self.learning_rate, self.after_step, self.after_epoch = sink, learning_rate, after_step, after_epoch
        #: what backprop does at about 50 steps of the run (runner.core.watch); None: nothing is watched, at no cost
        self.watch = watch
        #: called with the watch once it has seen the run's last step, after that epoch's time is taken and before its
        #: evaluation: its pictures can be drawn from then on (the run hands them over, drawn on the other core meanwhile)
        self.watch_done: Callable[[Watch], None] | None = None
        #: the optimizer, when it has a learning rate to schedule and log (train/lr); None otherwise
        self.scheduled: HasLearningRate | None = optimizer if isinstance(optimizer, HasLearningRate) else None
        if learning_rate is not None and self.scheduled is None:
            raise RunnerError(
                f"schedule: the optimizer ({type(optimizer).__name__}) has no learning rate lr to schedule; use schedule=constant"
            )
        self.n = len(splits.train)
        trainer.validate(self.n)
        self.per_epoch, self.total = trainer.steps_per_epoch(self.n), trainer.total_steps(self.n)
        self.eval_interval = trainer.evaluation_interval(self.n)
        self.sampler = BatchSampler(trainer, self.n, rng)
        self.step = 0
        self.window: list[float] = []  # batch losses since train/loss was last logged
        self.last_loss = float("nan")
        self.score = [0.0, 0]  # the batches' summed score (correct answers, or |error|) and samples since the last evaluation
        self.final: dict[str, float] = {}
        self.epoch_seconds = 0.0  # training time of the current epoch so far

    @property
    def epoch(self) -> int:
        return math.ceil(self.step / self.per_epoch)

    @property
    def epochs(self) -> int:
        return math.ceil(self.total / self.per_epoch)

    def state_dict(self) -> dict:
        return {
            "step": self.step,
            "window": list(self.window),
            "last_loss": self.last_loss,
            "final": dict(self.final),
            "epoch_seconds": self.epoch_seconds,
            "score": list(self.score),
            "sampler": self.sampler.state_dict(),
            **({"watch": self.watch.state_dict()} if self.watch is not None else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.step, self.window, self.last_loss = int(state["step"]), list(state["window"]), float(state["last_loss"])
        self.final, self.epoch_seconds = dict(state["final"]), float(state["epoch_seconds"])
        score = state.get("score", (0.0, 0))
        self.score = [float(score[0]), int(score[1])]
        self.sampler.load_state_dict(state["sampler"])
        if self.watch is not None and "watch" in state:
            self.watch.load_state_dict(state["watch"])

    def run(self) -> dict[str, float]:
        trainer, model, loss, optimizer, sampler = self.trainer, self.model, self.loss, self.optimizer, self.sampler
        scheduled, watch = self.scheduled, self.watch
        x, y, meta = self.splits.train.x, self.splits.train.y, self.splits.meta
        targets = targets_for(y, meta, loss, x.dtype)
        labels_are_targets = targets is y
        score = batch_scorer(meta, loss) if trainer.train_metrics == "running" else None
        params, grads = model.params, model.grads
        log.info(
            "training %d steps (%d per epoch), batch %d, %s sampling%s",
            self.total,
            self.per_epoch,
            trainer.batch_size,
            trainer.sampling,
            f", resuming after step {self.step}" if self.step else "",
        )
        bar = progress_bar(self)
        began = time.perf_counter()
        while self.step < self.total:
            step = self.step + 1
            watched = watch if watch is not None and watch.due(step) else None  # this step is watched
            index = sampler.next()
            batch_targets = targets[index]
            if watched is not None:
                watched.start(model, step)  # the forward pass below hands it each layer's output
            pred = model.forward(x[index], training=True)
            value = loss.forward(pred, batch_targets)
            if not math.isfinite(value):
                raise RunnerError(
                    f"training diverged at step {step}: train/loss is {value}{first_non_finite(params, grads)}; "
                    "try a smaller optimizer.lr (or trainer.clip_grad_norm)"
                )
            if score is not None:
                self.score[0] += score(pred, batch_targets if labels_are_targets else y[index])
                self.score[1] += len(index)
            model.backward(loss.backward())
            if watched is not None:
                watched.gradients(model)  # as backprop made them, before clipping; and the weights before the step
            if trainer.clip_grad_norm is not None:
                grad_norm = clip_by_global_norm(grads, trainer.clip_grad_norm)
            if self.learning_rate is not None and scheduled is not None:
                scheduled.lr = self.learning_rate(step)
            optimizer.step(params, grads)
            if watched is not None:
                self.sink(watched.finish(model, step), step)
            self.step = step
            self.window.append(value)
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"loss {value:.4f}", refresh=False)
            if step % trainer.log_every == 0 or step == self.total:
                self.last_loss = float(np.mean(self.window))
                point = {"train/loss": self.last_loss}
                if hasattr(model, "scalars"):  # a graph's learned scalars: model/<node> (runner.core.graph)
                    point.update(model.scalars())
                if scheduled is not None:
                    point["train/lr"] = float(scheduled.lr)
                if trainer.clip_grad_norm is not None:
                    point["train/grad_norm"] = grad_norm
                self.sink(point, step)
                self.window.clear()
            if step % self.per_epoch == 0 or step == self.total:
                now = time.perf_counter()
                self.epoch_seconds += now - began
                if bar is not None:
                    bar.close()
                if step == self.total and watch is not None and self.watch_done is not None:
                    self.watch_done(watch)  # its last step seen (the last is always watched); not in the epoch's time
                self.end_epoch()
                bar = progress_bar(self) if step < self.total else None
                began = time.perf_counter()
            if self.after_step is not None:
                self.after_step(self)
        return self.final

    def end_epoch(self) -> None:
        """Report the epoch's time, evaluate when due (``eval_every``, and after the last epoch), call ``after_epoch``."""
        epoch, last = self.epoch, self.step == self.total
        point: dict[str, float] = {"epoch": epoch, "time/epoch_s": self.epoch_seconds}
        self.epoch_seconds = 0.0
        if last or epoch % self.eval_interval == 0:
            point.update(self.evaluation(last))
            self.final = {**point, "train/loss": self.last_loss}
            if (
                last or epoch % (self.eval_interval * max(1, math.ceil(self.epochs / self.eval_interval / 20))) == 0
            ):  # about 20 lines
                log.info(
                    "epoch %d/%d step %d/%d  %s",
                    epoch,
                    self.epochs,
                    self.step,
                    self.total,
                    "  ".join(f"{k} {v:.4f}" for k, v in self.final.items() if k not in ("epoch", "time/epoch_s")),
                )
        self.sink(point, self.step)
        if self.after_epoch is not None:
            self.after_epoch(self)

    def evaluation(self, last: bool) -> dict[str, float]:
        """train/<score> (running or re-evaluated), val/* and, when due, test/*."""
        splits, meta, trainer = self.splits, self.splits.meta, self.trainer
        key = "mae" if meta.task == "regression" else "accuracy"
        if trainer.train_metrics == "running":
            metrics = {f"train/{key}": self.score[0] / self.score[1]} if self.score[1] else {}
            self.score = [0.0, 0]
        else:  # train/loss stays the running mean of the batch losses
            metrics = {f"train/{key}": evaluate(self.model, self.loss, splits.train, meta, trainer.batch_size)[key]}
        due = [("val", splits.val)] + ([("test", splits.test)] if last or trainer.eval_test == "every" else [])
        for name, split in due:
            if len(split):
                metrics.update(
                    {f"{name}/{k}": v for k, v in evaluate(self.model, self.loss, split, meta, trainer.batch_size).items()}
                )
        return metrics


def progress_bar(training: Training):
    """A tqdm bar over the current epoch's steps when stderr is a terminal; None otherwise (plain log lines)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    epochs = math.ceil(training.total / training.per_epoch)
    done_in_epoch = training.step % training.per_epoch
    steps = min(training.per_epoch, training.total - training.step + done_in_epoch)
    return tqdm(
        total=steps,
        initial=done_in_epoch,
        desc=f"epoch {training.epoch + (done_in_epoch == 0)}/{epochs}",
        unit="step",
        leave=False,
        dynamic_ncols=True,
        file=sys.stderr,
    )


def first_non_finite(params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> str:
    """Names the first parameter (or its gradient) holding NaN or inf: where the divergence shows."""
    for name, value in params.items():
        if not np.isfinite(value).all():
            return f"; parameter {name} holds non-finite values"
    for name, value in grads.items():
        if not np.isfinite(value).all():
            return f"; the gradient of {name} holds non-finite values"
    return "; every parameter is finite: the activations overflowed"
