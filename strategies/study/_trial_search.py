"""``--trial search``: a DGConv search inside every study trial (issue 10 §2).

Optuna chooses the structure (the labels of ``space.supernet_labels()``: for MGIC s_g, s_c, levels, level rule;
none for a group-count space, whose group counts are exactly what DGConv learns) and a budget (parameter
``budget``, one of ``config.budgets``, e.g. ``b=32``). The trial builds that structure's supernet
(``space.supernet_of(choices)``: every searchable conv a DGConv, e.g. every grouped conv of every MGIC level),
runs :class:`~mgnas.strategies.differentiable.DifferentiableSearch` on it for ``train.epochs`` epochs with the
``hinge`` penalty (so the frozen network is guaranteed within budget, ζ <= o) and the sparse DGConv, freezes it,
and returns the frozen architecture: its spec holds no DGConv, and the objectives (accuracy, params, MACs) are
those of the frozen network. The trial records ``zeta``, ``o``, ``zeta_over_o``, ``within_budget``,
``projected``, ``groups`` (per DGConv layer) and ``budget`` as user attrs.

After every epoch the epoch hook gets the supernet's validation accuracy with the params/MACs of the network the
current hard gates would freeze to (counted only when a pruner reads them, else NaN), so a multi-objective
pruner (``--pruner sha``) can stop a search trial early.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

__all__ = ["run_search_trial", "search_config", "structure_choices", "current_counts"]

#: The penalty of a nested search: the hinge with projection ends within budget (the paper's form may not).
NESTED_PENALTY = "hinge"


def structure_choices(space: Any, spec: Any = None, choices: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The values of ``space.supernet_labels()`` from explicit ``choices`` or a suggested spec's provenance."""
    provenance = getattr(spec, "provenance", None) or {}
    picked = dict(choices) if choices is not None else dict(provenance.get("choices") or {})
    return {label: picked[label] for label in space.supernet_labels() if label in picked}


def search_config(config: Any, budget: str) -> Any:
    """The :class:`~mgnas.strategies.differentiable.SearchConfig` of one nested trial of the study ``config``."""
    from mgnas.strategies.differentiable import SearchConfig

    known = {f.name for f in fields(SearchConfig)}
    kwargs: dict[str, Any] = {"space": config.space, "data": config.data, "budget": str(budget),
                              "penalty": NESTED_PENALTY, "download": config.download, "train": config.train}
    if "dgconv_impl" in known:
        kwargs["dgconv_impl"] = "sparse"
    device = getattr(config, "device", None)
    if device is not None and "device" in known:
        kwargs["device"] = str(device)
    return SearchConfig(**kwargs)


def current_counts(search: Any) -> tuple[int, int]:
    """Params and MACs of the network the supernet's current hard gates freeze to."""
    from mgnas.strategies._freeze import frozen_conv, supernet_paths

    from mgnas.models import build_model
    from mgnas.profile import count
    from mgnas.spec import ConvSpec

    spec = search.supernet_spec
    values = {path: frozen_conv(ConvSpec.from_dict(spec.get(path), path), mod).to_dict()
              for path, _, mod in supernet_paths(spec, search.model)}
    counted = count(build_model(spec.with_values(values)), spec.input_size, per_layer=False)
    return int(counted.params), int(counted.macs)


def _pruned_on_counts(config: Any) -> bool:
    """Whether a pruner reads params/MACs at every epoch (then they are counted each epoch; otherwise NaN)."""
    counted = {"params", "macs"} & set(config.objectives)
    if not counted or config.pruner == "none":
        return False
    if len(config.objectives) > 1:
        return config.pruner in ("sha", "hyperband")
    return config.objectives[0] in counted


def run_search_trial(trial: Any, config: Any, data: Any, *, spec: Any = None, budget: str,
                     choices: Mapping[str, Any] | None = None, progress: bool = False,
                     on_epoch_end: Callable[[int, float, tuple[float, ...]], None] | None = None) -> tuple[Any, dict]:
    """Run one nested trial; return ``(candidate, metrics)`` for the study to record.

    ``spec`` (the space's suggestion) or ``choices`` give the structure; ``budget`` is the trial's budget text.
    ``candidate`` is a :class:`~._trial.Candidate` of the *frozen* architecture (spec without DGConv, the model
    loaded with the searched weights, its params and MACs); ``metrics`` holds ``val_accuracy``,
    ``test_accuracy``, ``seconds``, ``val_accuracy_history`` and ``user_attrs`` (ζ, o, groups, …).
    ``on_epoch_end(epoch, val_accuracy, values)`` runs after every search epoch (it may raise
    ``optuna.TrialPruned``). ``trial`` is unused here (the caller records); it is accepted for symmetry.
    Raises :class:`~mgnas.search_spaces.InfeasibleChoice` when the structure cannot be built and ``ValueError``
    (as InfeasibleChoice) when the budget cannot be reached by this structure.
    """
    from mgnas.search_spaces import InfeasibleChoice, get_space
    from mgnas.strategies.differentiable import DifferentiableSearch

    from mgnas.models import build_model

    from ._trial import Candidate, epoch_values

    del trial
    space = get_space(config.space)
    try:
        supernet = space.supernet_of(structure_choices(space, spec, choices))
    except NotImplementedError as err:
        raise InfeasibleChoice(f"--trial search: {err}") from None
    history: list[float] = []
    counts_per_epoch = _pruned_on_counts(config)

    class _Nested(DifferentiableSearch):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> dict[str, Any]:
            out = super().on_epoch_end(epoch, logs)
            accuracy = float(logs["val_accuracy"])
            history.append(accuracy)
            if on_epoch_end is not None:
                params, macs = current_counts(self) if counts_per_epoch else (math.nan, math.nan)
                on_epoch_end(epoch, accuracy, epoch_values(config, accuracy, params, macs))
            return out

    try:
        search = _Nested(search_config(config, budget), None, progress=progress, data=data, supernet=supernet)
    except ValueError as err:  # e.g. a budget below what this structure can reach, or nothing to search
        raise InfeasibleChoice(f"cannot search this structure under {budget}: {err}") from None
    result = search.run()
    frozen, info = result.spec, result.result
    model = build_model(frozen)
    model.load_state_dict(search.static_state)
    candidate = Candidate(frozen, model, int(info["params"]), int(info["macs"]))
    attrs = {"budget": str(budget), "zeta": float(info["complexity"]), "o": float(info["budget"]),
             "zeta_over_o": float(info["zeta_over_o"]), "within_budget": bool(info["within_budget"]),
             "projected": bool(info["projected"]), "groups": [int(g) for g in info["groups"]],
             "search_penalty": NESTED_PENALTY, "dgconv_impl": str(info.get("dgconv_impl", "masked"))}
    metrics = {"val_accuracy": info["val_accuracy"], "test_accuracy": info["test_accuracy"],
               "seconds": float(info["seconds"]), "val_accuracy_history": history, "user_attrs": attrs}
    return candidate, metrics
