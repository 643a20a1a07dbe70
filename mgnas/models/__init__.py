"""Model families (L2): every named model is an ArchSpec plus the one builder, :func:`build_model`."""

# one import per family file; importing registers its builder and named models
from . import mgic, mgnet, mobilenet, multigrid, resnet, wrn  # noqa: F401
from ._registry import (
    adapt_spec,
    build_model,
    create_model,
    list_families,
    list_models,
    model_doc,
    model_kwargs,
    model_spec,
    register_family,
    register_model,
)

__all__ = [
    "adapt_spec", "build_model", "create_model", "list_models", "list_families", "model_spec", "model_kwargs",
    "model_doc", "register_family", "register_model",
]
