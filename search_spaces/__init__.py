"""Search spaces (L3): what may vary, as labelled choices. Strategy-agnostic (no optuna import).

``get_space(name)`` -> a :class:`SearchSpace` with ``default()``, ``sample(rng)``, ``suggest(trial)``,
``contains(spec)``, ``freeze(choices)`` and ``supernet_spec()``.
"""

from . import mgic, multigrid, resnet, two_level  # noqa: F401  (one import per space file registers its spaces)
from ._base import Dimension, FixedTrial, InfeasibleChoice, SearchSpace
from ._generic import ConvGroupsSpace, ModelArgsSpace, dgconv_supernet, path_matches
from ._registry import get_space, list_spaces, register_space

__all__ = [
    "SearchSpace", "Dimension", "FixedTrial", "InfeasibleChoice", "ModelArgsSpace", "ConvGroupsSpace",
    "dgconv_supernet", "path_matches", "get_space", "list_spaces", "register_space",
]
