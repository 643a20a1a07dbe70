"""What a network *could be*: labelled discrete choices (NNI's space / sample / freeze separation).

A sample is a flat JSON dict ``{label: value}``. ``freeze(sample)`` returns a plain
:class:`~mgnas.spec.ArchSpec` with no search machinery; ``suggest(trial)`` asks any object with
``suggest_categorical`` (an Optuna trial, :class:`FixedTrial`) for each label in order and freezes
the answer, so replaying a recorded sample through ``suggest(FixedTrial(sample))`` rebuilds exactly
``freeze(sample)`` (Optuna's ``FixedTrial`` guarantee). Spaces never import a strategy library.
"""

from __future__ import annotations

import abc
import difflib
import itertools
import random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from mgnas.spec import ArchSpec, layer_name, legacy_label


class InfeasibleChoice(ValueError):
    """A combination of choices that cannot be built (the message says why). Studies prune these."""


class TrialLike(Protocol):
    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any: ...


@dataclass(frozen=True)
class Dimension:
    """One labelled choice. ``label`` is stable and hierarchical: a model argument (``group_size``) or
    a layer name plus the field it sets (``stages.2.0.conv2.groups``, see :func:`mgnas.spec.layer_name`)."""

    label: str
    choices: tuple[Any, ...]
    default: Any

    def __post_init__(self) -> None:
        if not self.choices:
            raise ValueError(f"{self.label}: a dimension needs at least one choice")
        if self.default not in self.choices:
            raise ValueError(f"{self.label}: default {self.default!r} is not one of {list(self.choices)}")


class FixedTrial:
    """Replays recorded choices through ``suggest`` (same interface as ``optuna.trial.FixedTrial``)."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = dict(params)
        self.used: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Sequence[Any]) -> Any:
        if name not in self.params and legacy_label(name) in self.params:  # recorded with the deprecated label spelling
            self.params[name] = self.params.pop(legacy_label(name))
        if name not in self.params:
            raise ValueError(f"FixedTrial has no value for {name!r}")
        value = self.params[name]
        if value not in choices:
            raise ValueError(f"{name}: recorded value {value!r} is not one of {list(choices)}")
        self.used[name] = value
        return value

    def suggest_int(self, name: str, low: int, high: int, **_: Any) -> int:
        value = self.params[name]
        if not low <= value <= high:
            raise ValueError(f"{name}: recorded value {value!r} outside [{low}, {high}]")
        self.used[name] = value
        return int(value)


def _modern_labels(choices: Mapping[str, Any], dims: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept the deprecated label spelling (``stage0.block0.conv1.groups``) with a warning."""
    old = {label: layer_name(label) for label in choices if label not in dims and layer_name(label) in dims}
    if not old:
        return choices
    label = next(iter(old))
    warnings.warn(f"label {label!r} is deprecated; write {old[label]!r} (the layer name)", DeprecationWarning,
                  stacklevel=4)
    return {old.get(k, k): v for k, v in choices.items()}


def _rng(rng: random.Random | int | Any | None) -> random.Random:
    if isinstance(rng, random.Random):
        return rng
    if rng is None or isinstance(rng, int):
        return random.Random(rng)
    if hasattr(rng, "integers"):  # numpy Generator: derive a Python RNG from it
        return random.Random(int(rng.integers(2**63 - 1)))
    raise TypeError(f"rng must be an int seed, random.Random or numpy Generator, got {type(rng).__name__}")


class SearchSpace(abc.ABC):
    """Base class: subclasses define :meth:`dimensions`, :meth:`_build`, :meth:`_decode`, :meth:`supernet_spec`."""

    name: str = ""
    description: str = ""
    max_sample_tries = 200

    # ------------------------------------------------------------------ to implement
    @abc.abstractmethod
    def dimensions(self) -> list[Dimension]:
        """The labelled choices, in suggestion order."""

    @abc.abstractmethod
    def _build(self, choices: dict[str, Any]) -> ArchSpec:
        """The spec of a complete, validated sample; raise InfeasibleChoice (with the reason) if it cannot be built."""

    @abc.abstractmethod
    def _decode(self, spec: ArchSpec) -> dict[str, Any] | None:
        """The sample that would produce ``spec`` (None if it cannot come from this space)."""

    @abc.abstractmethod
    def supernet_spec(self) -> ArchSpec:
        """The differentiable supernet: the searchable convs of kind ``dgconv``."""

    def supernet_labels(self) -> list[str]:
        """The labels that shape the supernet (a nested search chooses these; the supernet learns the others)."""
        return self.labels()

    def supernet_of(self, choices: Mapping[str, Any]) -> ArchSpec:
        """The supernet of one structure (``choices`` of :meth:`supernet_labels`, others default): the searchable
        convs of ``freeze(choices)`` as DGConv."""
        raise NotImplementedError(f"{self.name} has no supernet per structure")

    # ------------------------------------------------------------------ derived API
    def labels(self) -> list[str]:
        return [d.label for d in self.dimensions()]

    def default_choices(self) -> dict[str, Any]:
        return {d.label: d.default for d in self.dimensions()}

    def default(self) -> ArchSpec:
        return self.freeze(self.default_choices())

    def size(self) -> int:
        n = 1
        for d in self.dimensions():
            n *= len(d.choices)
        return n

    def check_choices(self, choices: Mapping[str, Any]) -> dict[str, Any]:
        """Complete choices with defaults; ValueError on an unknown label or a value outside its choices."""
        dims = {d.label: d for d in self.dimensions()}
        choices = _modern_labels(choices, dims)
        for label, value in choices.items():
            if label not in dims:
                close = difflib.get_close_matches(label, list(dims), n=3)
                some = ", ".join(list(dims)[:8])
                hint = f"; did you mean {', '.join(close)}?" if close else f"; valid labels: {some}…"
                raise ValueError(f"{self.name}: unknown label {label!r}{hint}")
            if value not in dims[label].choices:
                raise ValueError(f"{self.name}: {label}={value!r} is not one of {list(dims[label].choices)}")
        return {label: choices.get(label, d.default) for label, d in dims.items()}

    def freeze(self, choices: Mapping[str, Any]) -> ArchSpec:
        """The plain architecture for a sample (missing labels take their defaults)."""
        full = self.check_choices(choices)
        spec = self._build(full)
        return spec.with_provenance(space=self.name, choices=full)

    def sample_choices(self, rng: random.Random | int | Any | None = None) -> dict[str, Any]:
        """A uniformly random *feasible* sample (rejection sampling over infeasible combinations)."""
        r = _rng(rng)
        reasons: list[str] = []
        for _ in range(self.max_sample_tries):
            choices = {d.label: r.choice(d.choices) for d in self.dimensions()}
            try:
                self._build(choices)
            except InfeasibleChoice as err:
                reasons.append(str(err))
                continue
            return choices
        raise InfeasibleChoice(f"{self.name}: no feasible sample in {self.max_sample_tries} tries, e.g. {reasons[-1]}")

    def sample(self, rng: random.Random | int | Any | None = None) -> ArchSpec:
        return self.freeze(self.sample_choices(rng))

    def suggest(self, trial: TrialLike) -> ArchSpec:
        """Ask ``trial`` for every label (in order) and freeze; InfeasibleChoice says why a combination fails."""
        choices = {d.label: trial.suggest_categorical(d.label, list(d.choices)) for d in self.dimensions()}
        return self.freeze(choices)

    def contains(self, spec: ArchSpec) -> bool:
        """Whether ``spec`` is exactly an architecture of this space (name, provenance and metrics ignored)."""
        try:
            choices = self._decode(spec)
            if choices is None:
                return False
            return self._build(self.check_choices(choices)).content_hash() == self._normalise(spec).content_hash()
        except ValueError:
            return False

    def _normalise(self, spec: ArchSpec) -> ArchSpec:
        """Hook: how a spec is compared in :meth:`contains` (e.g. channel permutations ignored)."""
        return spec

    def iter_choices(self) -> Iterator[dict[str, Any]]:
        """Every sample (feasible or not) in grid order; use on small spaces only."""
        dims = self.dimensions()
        for values in itertools.product(*(d.choices for d in dims)):
            yield dict(zip((d.label for d in dims), values))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}: {len(self.dimensions())} dimensions, {self.size():,} samples>"
