"""``ArchSpec``: what a whole network *is*. Discrete, JSON, content-hashed, validated.

JSON layout (``"format": "mgnas.arch/1"``)::

    {
      "format": "mgnas.arch/1",
      "name": "resnext50_32x4d",          # a label; not part of the hash
      "family": "resnet",                 # which builder in mgnas.models turns it into a module
      "num_classes": 1000, "in_channels": 3, "input_size": [3, 224, 224],
      "config": {...},                    # family-wide settings (stem style, head, MGIC s_g/s_c, ...)
      "stem": {...} | null,               # a block
      "stages": [{"blocks": [{"type": "bottleneck", "conv2": {"kind": "group", ...}, ...}, ...]}, ...],
      "head": {...} | null,
      "provenance": {...},                # where it came from (space, search, seed, git commit)
      "metrics": {...}                    # params, macs, accuracy ... (recorded, not hashed)
    }

Blocks are JSON objects with a ``"type"``; any object with a ``"kind"`` is a :class:`ConvSpec`.
Structural checks happen here; each family builder checks the keys of its own block types when
building (an unknown block key is a :class:`SpecError` naming its path), so the builder is the
single source of truth for what a block may contain.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._conv import ConvSpec, is_conv
from ._errors import SpecError
from ._path import get_at, label_to_path, set_at

FORMAT = "mgnas.arch/1"
_HASH_EXCLUDED = ("name", "provenance", "metrics")
_TOP_KEYS = (
    "format", "name", "family", "num_classes", "in_channels", "input_size",
    "config", "stem", "stages", "head", "provenance", "metrics",
)


@dataclass(frozen=True)
class ArchSpec:
    """A network architecture. Treat as immutable: the ``with_*`` methods return new specs."""

    family: str
    stages: list[dict[str, Any]]
    name: str = ""
    num_classes: int = 1000
    in_channels: int = 3
    input_size: tuple[int, int, int] = (3, 224, 224)
    config: dict[str, Any] = field(default_factory=dict)
    stem: dict[str, Any] | None = None
    head: dict[str, Any] | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(self.input_size))
        validate(self)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format, "name": self.name, "family": self.family,
            "num_classes": self.num_classes, "in_channels": self.in_channels,
            "input_size": list(self.input_size), "config": self.config,
            "stem": self.stem, "stages": self.stages, "head": self.head,
            "provenance": self.provenance, "metrics": self.metrics,
        }
        return copy.deepcopy(out)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArchSpec:
        if not isinstance(data, Mapping):
            raise SpecError("", f"a spec is a JSON object, got {type(data).__name__}")
        fmt = data.get("format")
        if fmt != FORMAT:
            raise SpecError("format", f"unsupported format {fmt!r}; this mgnas reads {FORMAT!r}")
        unknown = sorted(set(data) - set(_TOP_KEYS))
        if unknown:
            raise SpecError(unknown[0], f"unknown spec key; valid keys: {', '.join(_TOP_KEYS)}")
        for required in ("family", "stages"):
            if required not in data:
                raise SpecError(required, "missing")
        return cls(**copy.deepcopy(dict(data)))

    def to_json(self, indent: int | None = 1) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    # ------------------------------------------------------------------ identity
    def content_hash(self, length: int = 16) -> str:
        """SHA-256 of the canonical JSON of the architecture (name, provenance, metrics excluded)."""
        data = {k: v for k, v in self.to_dict().items() if k not in _HASH_EXCLUDED}
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:length]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArchSpec) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(self.content_hash())

    # ------------------------------------------------------------------ navigation and edits
    def get(self, path: str) -> Any:
        """The value at a field path (``stages[0].blocks[1].conv2``) or a layer name (``stages.0.1.conv2``)."""
        return copy.deepcopy(get_at(self.to_dict(), label_to_path(path)))

    def with_values(self, values: Mapping[str, Any]) -> ArchSpec:
        """A new spec with each path/label in ``values`` set; the result is validated."""
        data = self.to_dict()
        for path, value in values.items():
            set_at(data, label_to_path(path), copy.deepcopy(value))
        return ArchSpec.from_dict(data)

    def with_metrics(self, **metrics: Any) -> ArchSpec:
        data = self.to_dict()
        data["metrics"].update(metrics)
        return ArchSpec.from_dict(data)

    def with_provenance(self, **provenance: Any) -> ArchSpec:
        data = self.to_dict()
        data["provenance"].update(provenance)
        return ArchSpec.from_dict(data)

    def with_name(self, name: str) -> ArchSpec:
        data = self.to_dict()
        data["name"] = name
        return ArchSpec.from_dict(data)

    def convs(self) -> Iterator[tuple[str, ConvSpec]]:
        """Every conv spec in the network with its field path, in network order."""
        for path, value in _walk(self.to_dict(), ""):
            if is_conv(value):
                yield path, ConvSpec.from_dict(value, path)


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        if is_conv(node):
            return
        for k, v in node.items():
            if k in ("provenance", "metrics") and not path:
                continue
            yield from _walk(v, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, f"{path}[{i}]")


def _check_block(block: Any, path: str) -> None:
    if not isinstance(block, dict):
        raise SpecError(path, f"a block is a JSON object, got {type(block).__name__}")
    if not isinstance(block.get("type"), str):
        raise SpecError(path + ".type", "every block needs a string 'type'")


def validate(spec: ArchSpec) -> None:
    """Structural validation; raises :class:`SpecError` naming the first bad field."""
    if spec.format != FORMAT:
        raise SpecError("format", f"unsupported format {spec.format!r}; this mgnas reads {FORMAT!r}")
    if not isinstance(spec.family, str) or not spec.family:
        raise SpecError("family", "must be a non-empty string")
    for name in ("num_classes", "in_channels"):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise SpecError(name, f"must be a positive integer, got {value!r}")
    if len(spec.input_size) != 3 or not all(isinstance(v, int) and v > 0 for v in spec.input_size):
        raise SpecError("input_size", f"must be [channels, height, width], got {list(spec.input_size)}")
    if spec.input_size[0] != spec.in_channels:
        raise SpecError("input_size", f"has {spec.input_size[0]} channels but in_channels is {spec.in_channels}")
    for name in ("config", "provenance", "metrics"):
        if not isinstance(getattr(spec, name), dict):
            raise SpecError(name, "must be a JSON object")
    if not isinstance(spec.stages, list) or not spec.stages:
        raise SpecError("stages", "must be a non-empty list")
    for i, stage in enumerate(spec.stages):
        if not isinstance(stage, dict) or not isinstance(stage.get("blocks"), list):
            raise SpecError(f"stages[{i}]", "a stage is an object with a 'blocks' list")
        for j, block in enumerate(stage["blocks"]):
            _check_block(block, f"stages[{i}].blocks[{j}]")
    for name in ("stem", "head"):
        if getattr(spec, name) is not None:
            _check_block(getattr(spec, name), name)
    try:
        json.dumps(spec.to_dict())
    except (TypeError, ValueError) as err:
        raise SpecError("", f"not JSON-serialisable: {err}") from None
    for path, value in _walk(spec.to_dict(), ""):
        if is_conv(value):
            ConvSpec.from_dict(value, path)
