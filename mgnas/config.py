"""Run configurations: frozen dataclasses loaded from YAML, strictly.

A config says how a run executes (training, search, study); it is written next to the results as
``config.yaml`` so that a run can be repeated exactly. Loading is strict:

- an unknown key is a :class:`ConfigError` that names the key and lists the valid ones;
- every value is type-checked against the dataclass annotation (``int``, ``float``, ``bool``, ``str``,
  ``Path``, ``X | None``, ``tuple[X, ...]``, ``list[X]``, ``dict[str, X]``, ``Literal[...]``, nested
  dataclasses); a wrong type is a :class:`ConfigError` naming the key and the expected type;
- ``overrides`` (e.g. from the command line) are applied after the YAML file; a dotted key
  (``"train.lr"``) reaches into a nested dataclass.

Two conveniences, both lossless: an ``int`` is accepted for a ``float`` field, and a string that
parses as a number is accepted for a ``float`` field (PyYAML follows YAML 1.1, which reads ``1e-3``
as a *string*). ``bool`` is never accepted for a number, nor a number for a ``bool``.
Errors raised by the dataclass's own ``__post_init__`` (``ValueError``) become ``ConfigError``.

Numbers are checked against a documented range before any work: a ``float`` must be finite (``nan`` and
``inf`` are refused everywhere), and a field's range is ``field(metadata={"range": (lo, hi)})`` if given,
else :data:`LIMITS` by the field's name, else :data:`INT_LIMIT` for an ``int``. A dotted override into a
``dict`` field takes the rest of the key as ONE key (``choices.stages.0.1.conv2.groups=[...]`` sets the
label ``stages.0.1.conv2.groups``), as YAML does.

YAML is read with ``yaml.SafeLoader`` (no Python objects), bounded: at most :data:`MAX_YAML_BYTES`
bytes, :data:`MAX_YAML_NODES` nodes after alias expansion (a "billion laughs" file is refused before it
is built) and :data:`MAX_YAML_DEPTH` levels of nesting.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = ["ConfigError", "load_config", "dump_config", "config_to_dict", "read_yaml", "LIMITS"]

T = TypeVar("T")

#: Inclusive ranges of numeric config keys, by field name (wherever the field is, e.g. ``train.epochs``).
LIMITS: dict[str, tuple[float, float]] = {
    "epochs": (1, 100_000), "batch_size": (1, 1 << 20), "eval_batch_size": (1, 1 << 20), "workers": (0, 1024),
    "seed": (0, 2**32 - 1), "trials": (1, 1_000_000), "max_params": (1, 10**12), "image_size": (8, 4096),
    "gate_warmup_epochs": (0, 100_000), "warmup_epochs": (0, 100_000), "step_milestones": (1, 100_000),
    "lr": (0.0, 1e6), "gate_lr": (0.0, 1e6), "lambda_lr": (0.0, 1e6), "lambda_init": (0.0, 1e12),
    "weight_decay": (0.0, 1e6), "gate_weight_decay": (0.0, 1e6), "momentum": (0.0, 1.0),
    "heartbeat_interval": (1, 86_400), "grace_period": (1, 864_000), "max_retry": (0, 1000),
    "poll_seconds": (0.0, 3600.0), "grad_clip": (0.0, 1e12), "alpha": (-1e3, 0.0),
}
#: The range of an ``int`` field that neither its metadata nor :data:`LIMITS` bounds.
INT_LIMIT = (-(2**63), 2**63 - 1)
MAX_YAML_BYTES = 16 << 20
MAX_YAML_NODES = 1_000_000
MAX_YAML_DEPTH = 64


class ConfigError(ValueError):
    """A configuration file or override is invalid (unknown key, wrong type, bad value)."""


def load_config(cls: type[T], path: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> T:
    """Build the frozen dataclass ``cls`` from the YAML file ``path`` (optional), then ``overrides``."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"load_config needs a dataclass type, got {cls!r}")
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(Path(path))
    for key, value in (overrides or {}).items():
        _set_dotted(data, str(key), value, cls)
    return _build(cls, data, prefix="")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain YAML/JSON values (tuples become lists, paths become strings)."""
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        raise TypeError(f"config_to_dict needs a dataclass instance, got {cfg!r}")
    return _plain(cfg)


def dump_config(cfg: Any) -> str:
    """YAML text of ``cfg`` that :func:`load_config` reads back to an equal object."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, default_flow_style=None)


# --- reading -------------------------------------------------------------------------------------------


class _BoundedLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses documents growing past :data:`MAX_YAML_NODES` nodes (aliases counted
    at every use, so a "billion laughs" file stops early) or nested deeper than :data:`MAX_YAML_DEPTH`."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._mgnas_depth = 0
        self._mgnas_sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:  # counts the nesting depth while composing
        self._mgnas_depth += 1
        try:
            if self._mgnas_depth > MAX_YAML_DEPTH:
                raise ConfigError(f"nested more than {MAX_YAML_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._mgnas_depth -= 1

    def construct_document(self, node: Any) -> Any:
        self._mgnas_expanded_size(node)  # before building anything: the size with every alias expanded
        return super().construct_document(node)

    def _mgnas_expanded_size(self, root: Any) -> int:
        sizes, active = self._mgnas_sizes, set()
        stack: list[tuple[Any, bool]] = [(root, False)]
        while stack:  # iterative post-order walk; a node shared by aliases is sized once, counted at every use
            node, ready = stack.pop()
            if id(node) in sizes:
                continue
            children = ([c for kv in node.value for c in kv] if isinstance(node, yaml.MappingNode)
                        else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
            if ready or not children:
                active.discard(id(node))
                total = 1 + sum(sizes.get(id(c), 0) for c in children)
                sizes[id(node)] = total
                if total > MAX_YAML_NODES:
                    raise ConfigError(f"expands to more than {MAX_YAML_NODES:,} values (aliases of aliases?)")
                continue
            if id(node) in active:
                raise ConfigError("holds a recursive alias (a node that contains itself)")
            active.add(id(node))
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
        return sizes[id(root)]


def read_yaml(path: str | Path) -> Any:
    """The YAML document in ``path`` (safe and bounded, see the module docs); a ConfigError names the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise ConfigError(f"{path}: is a directory, not a config file")
        if not path.is_file():
            raise ConfigError(f"{path}: is not a regular file")
        if size > MAX_YAML_BYTES:
            raise ConfigError(f"{path}: too large for a config file ({size:,} bytes; at most {MAX_YAML_BYTES:,})")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    try:
        return yaml.load(text, Loader=_BoundedLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of key: value, got {type(data).__name__}")
    return data


def _field_type(cls: Any, name: str) -> Any:
    """The annotation of field ``name`` of the dataclass ``cls`` (None if unknown), unwrapping ``X | None``."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        return None
    tp = typing.get_type_hints(cls).get(name)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if len(args) == 1 else tp
    return tp


def _set_dotted(data: dict[str, Any], key: str, value: Any, cls: Any = None, full: str | None = None) -> None:
    full = key if full is None else full
    head, _, rest = key.partition(".")
    tp = _field_type(cls, head)
    is_map = tp is dict or typing.get_origin(tp) in (dict, Mapping)
    if not rest:
        data[head] = value
        return
    if cls is not None and tp is not None and not is_map and not dataclasses.is_dataclass(tp):
        raise ConfigError(f"override {full!r}: {head!r} is a value ({_type_name(tp)}), not a section")
    sub = data.setdefault(head, {})
    if dataclasses.is_dataclass(sub) and not isinstance(sub, type):
        sub = data[head] = _plain(sub)
    if not isinstance(sub, dict):
        raise ConfigError(f"override {full!r}: {head!r} is not a section (it holds {sub!r})")
    if is_map:  # a dict field (e.g. study choices): its keys are labels that may themselves hold dots
        sub[rest] = value
        return
    _set_dotted(sub, rest, value, tp if dataclasses.is_dataclass(tp) else None, full)


def _build(cls: type, data: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or cls.__name__
    if dataclasses.is_dataclass(data) and isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of key: value, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown key in {cls.__name__}; valid keys: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _check(value, hints[name], f"{prefix}{name}") for name, value in data.items()}
    for name, value in kwargs.items():
        _check_range(value, _range(fields[name], hints[name]), f"{prefix}{name}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _range(f: dataclasses.Field, tp: Any) -> tuple[float, float] | None:
    if "range" in f.metadata:
        return tuple(f.metadata["range"])  # type: ignore[return-value]
    if f.name in LIMITS:
        return LIMITS[f.name]
    return INT_LIMIT if int in (tp, *typing.get_args(tp)) else None


def _check_range(value: Any, bounds: tuple[float, float] | None, key: str) -> None:
    """Numbers (also inside lists/tuples) must be finite and within ``bounds``; ConfigError naming ``key``."""
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_range(v, bounds, f"{key}[{i}]")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}: must be a finite number, got {value}")
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ConfigError(f"{key}: {value} is outside the valid range [{bounds[0]}, {bounds[1]}]")


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _check(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` converted to ``tp`` (losslessly) or raise ConfigError naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _check(value, arg, key)
            except ConfigError:
                continue
        raise _type_error(key, tp, value)
    if origin is typing.Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: {value!r} is not allowed; valid values: {', '.join(map(repr, args))}")
    if tp is type(None):
        if value is None:
            return None
        raise _type_error(key, tp, value)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _type_error(key, tp, value)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {len(args)} items ({_type_name(tp)}), got {len(value)}")
            return tuple(_check(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_check(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise _type_error(key, tp, value)
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _check(v, vt, f"{key}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, prefix=f"{key}.")
    return _check_scalar(value, tp, key)


def _check_scalar(value: Any, tp: Any, key: str) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Path:
        if isinstance(value, (str, Path)):
            return Path(value)
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise _type_error(key, tp, value)


def _type_error(key: str, tp: Any, value: Any) -> ConfigError:
    return ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__})")


# --- writing -------------------------------------------------------------------------------------------


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj
