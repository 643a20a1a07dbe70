"""Two reusable kinds of space.

- :class:`ModelArgsSpace`: choices are keyword arguments of a named model (MGIC's s_g / s_c /
  levels / width, MGiaD's c_K / gs / λ / η_post / levels). Infeasible combinations are rejected by
  the model factory with its own reason.
- :class:`ConvGroupsSpace`: one ``groups`` choice per selected conv of a named model, labelled by
  the conv's layer name (``stages.2.0.conv2.groups``), optionally a global switch to
  two-level group convs. Only group counts dividing both channel counts are offered, so every
  sample is buildable by construction. Its supernet turns the selected convs into DGConvs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mgnas.models import model_spec
from mgnas.spec import ArchSpec, ConvSpec, layer_name

from ._base import Dimension, InfeasibleChoice, SearchSpace

ConvFilter = Callable[[str, ConvSpec], bool]


class ModelArgsSpace(SearchSpace):
    def __init__(
        self, name: str, model: str, dims: Mapping[str, tuple[Sequence[Any], Any]], *,
        fixed: Mapping[str, Any] | None = None, supernet: Callable[[ArchSpec], ArchSpec] | None = None,
        description: str = "",
    ) -> None:
        self.name, self.model, self.description = name, model, description
        self.fixed = dict(fixed or {})
        self._dims = [Dimension(label, tuple(choices), default) for label, (choices, default) in dims.items()]
        self._supernet = supernet

    def dimensions(self) -> list[Dimension]:
        return list(self._dims)

    def _build(self, choices: dict[str, Any]) -> ArchSpec:
        try:
            return model_spec(self.model, **self.fixed, **choices)
        except ValueError as err:
            raise InfeasibleChoice(str(err)) from None

    def _decode(self, spec: ArchSpec) -> dict[str, Any] | None:
        prov = spec.provenance
        if prov.get("model") == self.model and isinstance(prov.get("model_kwargs"), dict):
            kwargs = {k: v for k, v in prov["model_kwargs"].items() if k not in self.fixed}
            return kwargs if set(kwargs) <= set(self.labels()) else None
        for choices in self.iter_choices() if self.size() <= 4096 else ():  # no provenance: small spaces only
            try:
                if self._build(choices).content_hash() == spec.content_hash():
                    return choices
            except InfeasibleChoice:
                continue
        return None

    def supernet_spec(self) -> ArchSpec:
        if self._supernet is None:
            raise NotImplementedError(f"{self.name} has no differentiable supernet")
        return self._supernet(self.default()).with_provenance(space=self.name, supernet=True)

    def supernet_of(self, choices: Mapping[str, Any]) -> ArchSpec:
        if self._supernet is None:
            raise NotImplementedError(f"{self.name} has no differentiable supernet")
        return self._supernet(self.freeze(choices)).with_provenance(space=self.name, supernet=True)


def dgconv_supernet(select: ConvFilter) -> Callable[[ArchSpec], ArchSpec]:
    """A supernet maker: every selected conv of a spec becomes a DGConv (groups are then learned)."""

    def make(spec: ArchSpec) -> ArchSpec:
        values = {p: c.replace(kind="dgconv", groups=1, in_perm=None, out_perm=None, shuffle=0).to_dict()
                  for p, c in spec.convs() if select(p, c)}
        return spec.with_values(values)

    return make


def path_matches(pattern: str, *, exclude_depthwise: bool = True) -> ConvFilter:
    """Select convs whose field path matches a regular expression (full match)."""
    rx = re.compile(pattern)

    def select(path: str, conv: ConvSpec) -> bool:
        depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
        return bool(rx.fullmatch(path)) and not (exclude_depthwise and depthwise)

    return select


class ConvGroupsSpace(SearchSpace):
    def __init__(
        self, name: str, model: str, select: ConvFilter, group_choices: Sequence[int], *,
        default_groups: int | None = None, model_kwargs: Mapping[str, Any] | None = None,
        two_level: bool = False, description: str = "",
    ) -> None:
        self.name, self.model, self.description = name, model, description
        self.model_kwargs = dict(model_kwargs or {})
        self.select, self.two_level = select, two_level
        self.base = model_spec(model, **self.model_kwargs)
        self._paths: dict[str, tuple[str, ConvSpec]] = {}
        dims = []
        for path, conv in self.base.convs():
            if not select(path, conv):
                continue
            options = tuple(g for g in group_choices if conv.in_channels % g == 0 and conv.out_channels % g == 0)
            current = conv.groups if conv.kind in ("group", "two_level") else 1
            default = default_groups if default_groups in options else (current if current in options else options[0])
            label = layer_name(path) + ".groups"
            self._paths[label] = (path, conv)
            dims.append(Dimension(label, options, default))
        if not dims:
            raise ValueError(f"{name}: the selection matches no conv of {model}")
        if two_level:
            dims.append(Dimension("two_level", (False, True), False))
        self._dims = dims

    def dimensions(self) -> list[Dimension]:
        return list(self._dims)

    def _build(self, choices: dict[str, Any]) -> ArchSpec:
        tl = bool(choices.get("two_level", False))
        values = {}
        for label, (path, conv) in self._paths.items():
            g = int(choices[label])
            kind = "dense" if g == 1 else ("two_level" if tl else "group")
            values[path] = conv.replace(kind=kind, groups=g, in_perm=None, out_perm=None, shuffle=0).to_dict()
        return self.base.with_values(values)

    def _decode(self, spec: ArchSpec) -> dict[str, Any] | None:
        convs = dict(spec.convs())
        choices: dict[str, Any] = {}
        kinds = set()
        for label, (path, _) in self._paths.items():
            conv = convs.get(path)
            if conv is None:
                return None
            choices[label] = conv.groups
            kinds.add(conv.kind)
        if self.two_level:
            choices["two_level"] = "two_level" in kinds
        return choices

    def _normalise(self, spec: ArchSpec) -> ArchSpec:
        """Channel permutations only relabel channels: a searched spec with permutations is in the space."""
        values = {
            p: c.replace(in_perm=None, out_perm=None).to_dict() for p, c in spec.convs() if c.in_perm or c.out_perm
        }
        return spec.with_values(values) if values else spec

    def supernet_spec(self) -> ArchSpec:
        select = {path for path, _ in self._paths.values()}
        return dgconv_supernet(lambda p, _c: p in select)(self.base).with_provenance(space=self.name, supernet=True)

    def supernet_labels(self) -> list[str]:
        return []  # the supernet learns every group count (and has no two-level switch)

    def supernet_of(self, choices: Mapping[str, Any]) -> ArchSpec:
        return self.supernet_spec()
