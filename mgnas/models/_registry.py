"""One registry, one builder (timm's ``register_model`` / ``create_model`` idea).

- A **family** builder turns an :class:`~mgnas.spec.ArchSpec` of that family into an ``nn.Module``
  (``@register_family("resnet")``). :func:`build_model` is the only path from a spec to a module.
- A **named model** is a function returning an ``ArchSpec`` (``@register_model``); its keyword-only
  arguments are the documented knobs (``group_size``, ``width`` ...). ``create_model(name, **kw)``
  is ``build_model(model_spec(name, **kw))``. So every named model is a spec plus the one builder.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from ..spec import ArchSpec, SpecError, load

FamilyBuilder = Callable[[ArchSpec], nn.Module]
SpecFactory = Callable[..., ArchSpec]

_FAMILIES: dict[str, FamilyBuilder] = {}
_MODELS: dict[str, SpecFactory] = {}


def register_family(name: str) -> Callable[[FamilyBuilder], FamilyBuilder]:
    def deco(fn: FamilyBuilder) -> FamilyBuilder:
        if name in _FAMILIES:
            raise ValueError(f"family {name!r} is already registered")
        _FAMILIES[name] = fn
        return fn

    return deco


def register_model(fn: SpecFactory) -> SpecFactory:
    """Register a named model: a function of keyword-only arguments returning its ArchSpec."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def filter_names(names: list[str], pattern: str | None) -> list[str]:
    """Sorted ``names`` matching a shell-style wildcard (``"mgic*"``); a plain word matches as a substring."""
    names = sorted(names)
    if pattern:
        glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
        names = [n for n in names if fnmatch.fnmatch(n, glob)]
    return names


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` is a shell-style wildcard (``"mgic*"``) or a substring."""
    return filter_names(list(_MODELS), pattern)


def list_families() -> list[str]:
    return sorted(_FAMILIES)


def unknown_name(kind: str, name: str, valid: list[str]) -> ValueError:
    """``ValueError("unknown KIND 'NAME'; did you mean ...?")`` naming the close matches."""
    close = difflib.get_close_matches(name, valid, n=4, cutoff=0.5)
    if close:
        hint = f"; did you mean {', '.join(close)}?"
    elif kind == "model":
        hint = f"; run `mgnas models` to list them ({len(valid)} known)"
    else:
        hint = f"; known {kind}s: {', '.join(sorted(valid))}"
    return ValueError(f"unknown {kind} {name!r}{hint}")


def model_kwargs(name: str) -> dict[str, Any]:
    """The keyword arguments a named model accepts, with their defaults."""
    fn = _MODELS[name]
    return {p.name: p.default for p in inspect.signature(fn).parameters.values() if p.kind is p.KEYWORD_ONLY}


def model_doc(name: str) -> str:
    """The docstring of a named model's factory (its first line describes the model), ``""`` if none."""
    if name not in _MODELS:
        raise unknown_name("model", name, sorted(_MODELS))
    return inspect.getdoc(_MODELS[name]) or ""


def model_spec(name: str, **kwargs: Any) -> ArchSpec:
    """The ArchSpec of a named model. ``None`` kwargs are dropped (CLI defaults never override model defaults)."""
    if name not in _MODELS:
        raise unknown_name("model", name, sorted(_MODELS))
    valid = model_kwargs(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    for key, value in kwargs.items():
        if key not in valid:
            listing = ", ".join(f"{k}={v!r}" for k, v in valid.items()) or "none"
            raise ValueError(f"{name}: unknown argument {key!r}; valid arguments: {listing}")
        check_model_kwarg(name, key, value, valid[key])
    try:
        spec = _MODELS[name](**kwargs)
    except (ArithmeticError, TypeError) as err:  # e.g. groups=0: a division by zero deep in the factory
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ValueError(f"{name}: the arguments {given} do not make a valid model "
                         f"({type(err).__name__}: {err})") from None
    if not spec.name:
        spec = spec.with_name(name)
    # provenance is not hashed: it says how the spec was made, so spaces can decode and replay it
    return spec.with_provenance(model=name, model_kwargs=kwargs)


#: The largest int and the largest |float| a model argument may hold (widths, classes, sizes ...).
MAX_MODEL_INT = 1 << 20
MAX_MODEL_FLOAT = 10_000.0
#: The most parameters :func:`build_model` builds (estimated from the spec first: a typo such as
#: ``kernel_size: 1000000`` or ``num_classes: 1e10`` is refused in one line instead of exhausting memory).
MAX_PARAMS = 2_000_000_000


def check_model_kwarg(name: str, key: str, value: Any, default: Any) -> None:
    """A model argument has its default's type (an int for an int, a number for a float, a string for a
    string; a bool only for a bool), is finite and within ``±MAX_MODEL_*``; else a ValueError naming it."""
    where = f"{name}: argument {key}"
    is_num = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ValueError(f"{where} must be true or false, got {value!r}")
    if isinstance(default, int) and not isinstance(default, bool) and not (is_num and isinstance(value, int)):
        raise ValueError(f"{where} must be an integer, got {value!r}")
    if isinstance(default, float) and not is_num:
        raise ValueError(f"{where} must be a number, got {value!r}")
    if isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"{where} must be a string, got {value!r}")
    if is_num:
        if not math.isfinite(value):
            raise ValueError(f"{where} must be a finite number, got {value!r}")
        limit = MAX_MODEL_INT if isinstance(value, int) else MAX_MODEL_FLOAT
        if abs(value) > limit:
            raise ValueError(f"{where} = {value!r} is out of range (at most {limit} in magnitude)")
    if isinstance(value, (list, tuple)):
        for v in value:
            check_model_kwarg(name, key, v, None)


def estimate_params(spec: ArchSpec) -> int:
    """A lower bound of the parameter count of ``spec``, from its conv specs and classifier alone (no torch)."""
    total, last_out = 0, 1
    for _, conv in spec.convs():
        total += conv.in_channels // max(conv.groups, 1) * conv.out_channels * conv.kernel_size ** 2
        last_out = conv.out_channels
    return total + spec.num_classes * last_out


def check_size(spec: ArchSpec) -> None:
    """Refuse (SpecError) a spec whose estimated parameter count exceeds :data:`MAX_PARAMS`."""
    n = estimate_params(spec)
    if n > MAX_PARAMS:
        raise SpecError("", f"{spec.name or spec.family}: about {n:.3g} parameters, more than mgnas builds "
                        f"({MAX_PARAMS:.0e}); check the channel counts, kernel sizes and num_classes")


def build_model(spec: ArchSpec | Mapping[str, Any] | str | os.PathLike[str]) -> nn.Module:
    """Build the module a spec describes (a spec object, its JSON dict, or a path to a spec file)."""
    if isinstance(spec, (str, os.PathLike)):
        spec = load(spec)
    elif isinstance(spec, Mapping):
        spec = ArchSpec.from_dict(spec)
    check_size(spec)
    builder = _FAMILIES.get(spec.family)
    if builder is None:
        raise SpecError("family", str(unknown_name("family", spec.family, sorted(_FAMILIES))).removeprefix("unknown "))
    model = builder(spec)
    model.spec = spec  # type: ignore[assignment]  # for provenance: which spec built this module
    return model


def adapt_spec(spec: ArchSpec, *, in_channels: int, num_classes: int, input_size: tuple[int, int, int]) -> ArchSpec:
    """The same architecture for another data set: input channels (the first conv), classes, input size.

    The first conv in network order is the stem in every family, so changing its ``in_channels`` is enough.
    """
    first_path, _ = next(iter(spec.convs()))
    return spec.with_values({
        "in_channels": in_channels, "num_classes": num_classes, "input_size": list(input_size),
        f"{first_path}.in_channels": in_channels,
    })


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """``build_model(model_spec(name, **kwargs))``."""
    return build_model(model_spec(name, **kwargs))
