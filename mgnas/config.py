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
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = ["ConfigError", "load_config", "dump_config", "config_to_dict"]

T = TypeVar("T")


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
        _set_dotted(data, str(key), value)
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


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of key: value, got {type(data).__name__}")
    return data


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if not rest:
        data[head] = value
        return
    sub = data.setdefault(head, {})
    if dataclasses.is_dataclass(sub) and not isinstance(sub, type):
        sub = data[head] = _plain(sub)
    if not isinstance(sub, dict):
        raise ConfigError(f"override {key!r}: {head!r} is not a section (it holds {sub!r})")
    _set_dotted(sub, rest, value)


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
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


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
