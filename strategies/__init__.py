"""Search strategies (L4).

- ``differentiable``: DGConv gates trained jointly with the weights under a complexity budget.
- ``optuna_study``: multi-objective Optuna studies over a space's labelled choices (accuracy vs params/MACs),
  shared storages for many workers, Pareto export.
- ``nni_space`` / ``nni_hpo`` (experimental, extra ``nni``): a group-structure space as an NNI ModelSpace for
  NNI's DARTS / RandomOneShot / Random, and NNI's HPO tuners behind ``mgnas study --backend nni``.

Heavy modules (mgnas.train, mgnas.data, optuna) are imported only when their names are asked for.
"""

from ._budget import Budget, make_budget, parse_budget
from ._freeze import freeze, load_weights_for_spec

_LAZY = {
    "SearchConfig": "differentiable", "DifferentiableSearch": "differentiable", "run_search": "differentiable",
    "SearchResult": "differentiable",
    "StudyConfig": "optuna_study", "run_study": "optuna_study", "open_storage": "optuna_study",
    "StudyError": "optuna_study", "export_pareto": "_pareto",
    "to_nni_space": "nni_space", "to_mgnas_spec": "nni_space", "run_nni_nas": "nni_space",
    "NNIUnavailable": "_nni_common", "import_nni": "_nni_common", "ExperimentalWarning": "_experimental",
}
__all__ = ["Budget", "make_budget", "parse_budget", "freeze", "load_weights_for_spec", *sorted(_LAZY)]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
