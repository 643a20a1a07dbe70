"""Per-step learning-rate schedule: linear warm-up, then cosine / step / constant.

Every parameter group keeps its own base learning rate (``group["initial_lr"]``, set once from
``group["lr"]``); the schedule multiplies it by one factor, so groups with a different lr (e.g. DGConv
gates) keep their ratio to the others throughout. The schedule is stateless apart from the step count,
which makes resuming exact.
"""

from __future__ import annotations

import math

import torch

from mgnas.train.config import TrainConfig

__all__ = ["lr_factor", "StepSchedule"]


def lr_factor(step: int, steps_per_epoch: int, config: TrainConfig) -> float:
    """The factor applied to every group's base lr at optimiser step ``step`` (0-based)."""
    total = config.epochs * steps_per_epoch
    warm = round(config.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    if config.schedule == "cosine":
        t = (step - warm) / max(1, total - warm)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, t)))
    if config.schedule == "step":
        epoch = step / steps_per_epoch
        return config.step_gamma ** sum(epoch >= m for m in config.step_milestones)
    return 1.0


class StepSchedule:
    """Sets every group's ``lr`` to ``initial_lr * lr_factor(step)``; call :meth:`apply` before each step."""

    def __init__(self, optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int) -> None:
        if steps_per_epoch < 1:
            raise ValueError("the training loader is empty: the schedule needs at least one batch per epoch")
        self.optimizer, self.config, self.steps_per_epoch = optimizer, config, steps_per_epoch
        self.step_count = 0
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])

    def apply(self) -> float:
        """Set the lr for the coming optimiser step and return the factor."""
        factor = lr_factor(self.step_count, self.steps_per_epoch, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        return factor

    def step(self) -> None:
        self.step_count += 1

    def state_dict(self) -> dict[str, int]:
        return {"step": self.step_count, "steps_per_epoch": self.steps_per_epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state["steps_per_epoch"]) != self.steps_per_epoch:
            raise ValueError(f"the checkpoint was written with {state['steps_per_epoch']} steps per epoch, "
                             f"this run has {self.steps_per_epoch} (different data or batch size)")
        self.step_count = int(state["step"])
