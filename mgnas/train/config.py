"""The training configuration shared by search and retraining (a frozen dataclass, see :mod:`mgnas.config`)."""

from __future__ import annotations

from dataclasses import dataclass

from mgnas.config import ConfigError

__all__ = ["TrainConfig", "OPTIMIZERS", "SCHEDULES", "AMP_MODES"]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "constant")
AMP_MODES = ("none", "bf16")

#: Fields that only change how fast a run goes, not what it computes; a resumed run may change them.
RUNTIME_FIELDS = ("workers", "eval_batch_size", "compile")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimiser, schedule, regularisation, precision, seed.

    ``batch_size``, ``workers`` and ``eval_batch_size`` are read by whoever builds the data loaders
    (``mgnas.data.load_data``); the :class:`~mgnas.train.Trainer` uses the loaders it is given.
    ``lr`` and ``weight_decay`` are defaults for parameter groups that do not set their own.
    The schedule is evaluated every step: linear warm-up over ``warmup_epochs`` (may be fractional),
    then cosine decay to 0 over the remaining steps, or a step decay by ``step_gamma`` at each epoch in
    ``step_milestones``, or constant.
    """

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    step_milestones: tuple[int, ...] = ()
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    grad_clip: float | None = None
    seed: int = 0
    workers: int = 0
    eval_batch_size: int | None = None

    def __post_init__(self) -> None:
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("amp", self.amp, AMP_MODES)
        _positive("epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        _positive("lr", self.lr)
        if self.eval_batch_size is not None:
            _positive("eval_batch_size", self.eval_batch_size)
        if self.grad_clip is not None:
            _positive("grad_clip", self.grad_clip)
        if self.weight_decay < 0 or self.momentum < 0 or self.workers < 0:
            raise ConfigError("weight_decay, momentum and workers must be >= 0")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing: {self.label_smoothing} is outside [0, 1)")
        if not 0.0 <= self.warmup_epochs <= self.epochs:
            raise ConfigError(f"warmup_epochs: {self.warmup_epochs} is outside [0, epochs={self.epochs}]")
        if not 0.0 < self.step_gamma <= 1.0:
            raise ConfigError(f"step_gamma: {self.step_gamma} is outside (0, 1]")
        ms = tuple(self.step_milestones)
        if list(ms) != sorted(set(ms)) or any(m <= 0 for m in ms):
            raise ConfigError(f"step_milestones: {list(ms)} must be strictly increasing positive epochs")
        if self.schedule == "step" and not ms:
            raise ConfigError("step_milestones: schedule 'step' needs at least one milestone, e.g. [30, 60, 80]")
        object.__setattr__(self, "step_milestones", ms)


def _choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{name}: {value!r} is not supported; valid values: {', '.join(valid)}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name}: must be > 0, got {value}")
