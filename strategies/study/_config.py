"""The study's configuration: :class:`StudyConfig`, its CLI/YAML defaults, and what it derives (search grid,
sampler, Optuna pruner)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mgnas.train.config import TrainConfig

__all__ = ["StudyConfig", "StudyError", "OBJECTIVES", "SAMPLERS", "PRUNERS", "TRIAL_KINDS", "TRAIN_DEFAULTS",
           "FINISHED", "BUDGET_LABEL", "study_overrides"]

OBJECTIVES = {"accuracy": "maximize", "params": "minimize", "macs": "minimize"}
SAMPLERS = ("tpe", "nsga2", "random", "grid")
PRUNERS = ("median", "sha", "hyperband", "none")
TRIAL_KINDS = ("train", "search")
FINISHED = ("COMPLETE", "PRUNED")
#: ``--trial search``: the Optuna parameter holding the trial's budget (one of ``config.budgets``, e.g. "b=32")
BUDGET_LABEL = "budget"
#: A study's training defaults where they differ from TrainConfig's (short trials: AdamW brings MGIC-ResNet-56
#: on digits to ~45% val accuracy in one epoch of batch 32, SGD at lr 0.1 stays near chance).
#: ``load_config`` builds the nested TrainConfig from its own defaults, so :func:`study_overrides` adds these.
TRAIN_DEFAULTS = {"epochs": 2, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 1e-4, "batch_size": 32}


def study_overrides(yaml_path: str | Path | None, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` plus the study's training defaults for the keys neither the YAML file nor they set."""
    from mgnas.config import read_yaml

    data = read_yaml(yaml_path) if yaml_path is not None else None  # safe and bounded (aliases, depth, size)
    train = (data or {}).get("train") or {} if isinstance(data, dict) else {}
    out = dict(overrides)
    for key, value in TRAIN_DEFAULTS.items():
        if key not in train and f"train.{key}" not in out:
            out[f"train.{key}"] = value
    return out


class StudyError(ValueError):
    """Bad input for a study (unknown objective, storage that cannot be opened, incompatible study)."""


@dataclass(frozen=True)
class StudyConfig:
    """A study: what to search, how each trial trains, where results are stored, how workers cooperate."""

    space: str = "mgic_resnet56"
    data: str = "digits"
    trials: int = 20
    storage: str | None = None           # None: sqlite:///OUT/study.db
    study_name: str | None = None        # None: "<space>-<data>"
    sampler: str = "tpe"
    objectives: tuple[str, ...] = ("accuracy", "params")
    max_params: int | None = None
    pruner: str = "median"
    pruner_min_epochs: int = 1           # sha / hyperband: the first rung r (epochs)
    reduction_factor: int = 3            # sha / hyperband: η (rungs at r·η^k epochs; the top 1/η continue)
    seed: int = 0
    fixed: dict[str, Any] = field(default_factory=dict)      # labels pinned to one value (not searched)
    choices: dict[str, list] = field(default_factory=dict)   # labels searched over a subset of their choices
    trial_kind: str = "train"            # train: train the suggested spec | search: DGConv search inside the trial
    budgets: tuple[str, ...] = ()        # --trial search: the budgets Optuna chooses from, e.g. ("b=16", "b=32")
    heartbeat_interval: int = 10
    grace_period: int = 30
    max_retry: int = 2
    poll_seconds: float = 1.0
    download: bool = False
    device: str | None = None            # None/"auto": cuda if available, else cpu (mgnas.runtime.resolve_device)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(**TRAIN_DEFAULTS))

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise StudyError(f"sampler: {self.sampler!r} is not supported; valid values: {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise StudyError(f"pruner: {self.pruner!r} is not supported; valid values: {', '.join(PRUNERS)}")
        if self.pruner_min_epochs < 1 or self.reduction_factor < 2:
            raise StudyError(f"pruner_min_epochs must be >= 1 and reduction_factor >= 2, got {self.pruner_min_epochs} "
                             f"and {self.reduction_factor}")
        if self.trial_kind not in TRIAL_KINDS:
            raise StudyError(f"trial_kind: {self.trial_kind!r} is not supported; valid values: "
                             f"{', '.join(TRIAL_KINDS)}")
        object.__setattr__(self, "budgets", tuple(str(b) for b in self.budgets))
        if self.trial_kind == "search":
            _check_budgets(self.budgets)
        objs = tuple(self.objectives)
        bad = [o for o in objs if o not in OBJECTIVES]
        if bad or not objs or len(set(objs)) != len(objs):
            raise StudyError(f"objectives: {','.join(objs) or '(none)'} is not valid; choose distinct names from "
                             f"{', '.join(OBJECTIVES)}, e.g. accuracy,params")
        object.__setattr__(self, "objectives", objs)
        if self.trials < 0:
            raise StudyError(f"trials: must be >= 0, got {self.trials}")
        if self.max_params is not None and self.max_params <= 0:
            raise StudyError(f"max_params: must be > 0, got {self.max_params}")
        if self.heartbeat_interval < 1 or self.grace_period <= self.heartbeat_interval:
            raise StudyError("heartbeat_interval must be >= 1 and grace_period > heartbeat_interval")

    @property
    def name(self) -> str:
        return self.study_name or f"{self.space}-{self.data.split(':')[0]}"

    @property
    def directions(self) -> list[str]:
        return [OBJECTIVES[o] for o in self.objectives]

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1


def numeric_order(values: Any) -> list:
    """Numeric choices in ascending order (None, "the default rule", first); others as given.

    Optuna keeps a categorical choice's *index*; optuna-dashboard orders categorical axes by it and
    ``optuna.visualization`` plots all-number choices on a numeric axis. Suggesting numbers in ascending order,
    as numbers (never strings), makes both show them in numeric order (``choices`` may list them in any order).
    """
    values = list(values)
    numeric = all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values)
    if not numeric:
        return values
    return sorted(values, key=lambda v: (v is not None, v if v is not None else 0))


def _check_budgets(budgets: tuple[str, ...]) -> None:
    """``--trial search`` needs distinct, valid DGConv budgets (``b=32``, ``params=1e6``, ``macs=2e8``)."""
    from mgnas.strategies._budget import parse_budget

    if not budgets:
        raise StudyError("budgets: --trial search needs the budgets Optuna chooses from, e.g. --budgets b=16,b=32")
    if len(set(budgets)) != len(budgets):
        raise StudyError(f"budgets: {','.join(budgets)} lists a budget twice")
    for budget in budgets:
        try:
            parse_budget(budget)
        except ValueError as err:
            raise StudyError(f"budgets: {err}") from None


def _search_space(config: StudyConfig) -> dict[str, list]:
    """The labels Optuna chooses (after ``fixed``/``choices``) and their choices: the grid sampler's grid."""
    from mgnas.search_spaces import get_space

    space = get_space(config.space)
    dims = {d.label: numeric_order(d.choices) for d in space.dimensions()}
    for label in list(config.fixed) + list(config.choices):
        if label not in dims:
            raise StudyError(f"{config.space}: unknown label {label!r} in fixed/choices; labels: {', '.join(dims)}")
    for label, values in config.choices.items():
        bad = [v for v in values if v not in dims[label]]
        if bad or not values:
            raise StudyError(f"choices.{label}: {bad or values} not in {dims[label]}")
        dims[label] = numeric_order(values)
    for label, value in config.fixed.items():
        if value not in dims[label]:
            raise StudyError(f"fixed.{label}: {value!r} is not one of {dims[label]}")
        del dims[label]
    if config.trial_kind == "search":  # a nested search learns the other labels: Optuna chooses the supernet's
        keep = set(space.supernet_labels())
        dims = {label: values for label, values in dims.items() if label in keep}
        if config.budgets:
            dims[BUDGET_LABEL] = list(config.budgets)
    return dims


def _sampler(config: StudyConfig, salt: int = 0) -> Any:
    import optuna

    seed = config.seed + salt
    if config.sampler == "grid":  # no salt: every worker must see the grid in one order (trial n takes point n)
        return optuna.samplers.GridSampler(_search_space(config), seed=config.seed)
    if config.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if config.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)


def _pruner(config: StudyConfig) -> Any:
    """Optuna's own pruner for single-objective studies; multi-objective studies get a NopPruner here (their
    ``sha``/``hyperband`` pruning is :mod:`._pruning`'s, called from the trial's epoch hook)."""
    import optuna

    if config.pruner == "none" or config.multi_objective:
        return optuna.pruners.NopPruner()
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=config.pruner_min_epochs, max_resource=config.train.epochs,
                                              reduction_factor=config.reduction_factor)
    if config.pruner == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=config.pruner_min_epochs,
                                                      reduction_factor=config.reduction_factor)
    return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
