"""Pareto results of a study (compatibility module): the code lives in :mod:`mgnas.strategies.study._pareto`."""

from __future__ import annotations

from .study._pareto import (  # noqa: F401
    HypervolumeInfo,
    ImportanceInfo,
    ParetoFrontInfo,
    _atomic_write,
    _complete,
    _feasible,
    _hypervolume_2d,
    _objectives,
    _short,
    _signs,
    _trials_csv,
    dominates,
    draw_hypervolume,
    draw_importances,
    draw_pareto_front,
    export_pareto,
    hypervolume_info,
    importance_info,
    non_dominated,
    pareto_front_info,
)

__all__ = ["ParetoFrontInfo", "HypervolumeInfo", "ImportanceInfo", "pareto_front_info", "hypervolume_info",
           "importance_info", "non_dominated", "export_pareto"]
