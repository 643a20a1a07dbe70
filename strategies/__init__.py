"""Search strategies (L4). ``differentiable``: DGConv gates trained jointly with the weights under a budget."""

from ._budget import Budget, make_budget, parse_budget
from ._freeze import freeze

__all__ = ["Budget", "make_budget", "parse_budget", "freeze", "SearchConfig", "DifferentiableSearch", "run_search"]


def __getattr__(name: str):  # the search needs mgnas.train / mgnas.data: import them only when asked
    if name in ("SearchConfig", "DifferentiableSearch", "run_search", "SearchResult"):
        from . import differentiable

        return getattr(differentiable, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
