"""Field paths into a spec's JSON tree: ``stages[2].blocks[0].conv2.groups``.

Search-space labels are the same paths written without brackets (``stage2.block0.conv2.groups``);
:func:`label_to_path` converts one into the other so a flat ``{label: value}`` sample addresses
exactly one field of the spec.
"""

from __future__ import annotations

import re
from typing import Any

from ._errors import SpecError

_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")
_LABEL_PART = re.compile(r"^(stage|block|level|layer)(\d+)$")
_PLURAL = {"stage": "stages", "block": "blocks", "level": "levels", "layer": "layers"}


def split_path(path: str) -> list[str | int]:
    """``"stages[2].blocks[0].conv2"`` -> ``["stages", 2, "blocks", 0, "conv2"]``."""
    keys: list[str | int] = []
    for part in path.split("."):
        m = _TOKEN.fullmatch(part)
        if not m:
            raise SpecError(path, f"malformed field path near {part!r}")
        keys.append(m.group(1))
        keys.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return keys


def join_path(keys: list[str | int]) -> str:
    out = ""
    for k in keys:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else k)
    return out


def label_to_path(label: str) -> str:
    """``"stage2.block0.conv2.groups"`` -> ``"stages[2].blocks[0].conv2.groups"``."""
    out: list[str] = []
    for part in label.split("."):
        m = _LABEL_PART.match(part)
        if m and out is not None:
            word, idx = m.groups()
            out.append(f"{_PLURAL[word]}[{idx}]")
        else:
            out.append(part)
    return ".".join(out)


def path_to_label(path: str) -> str:
    """Inverse of :func:`label_to_path`."""
    def repl(m: re.Match[str]) -> str:
        singular = {v: k for k, v in _PLURAL.items()}[m.group(1)]
        return f"{singular}{m.group(2)}"

    return re.sub(r"\b(stages|blocks|levels|layers)\[(\d+)\]", repl, path)


def get_at(tree: Any, path: str) -> Any:
    node = tree
    walked: list[str | int] = []
    for key in split_path(path):
        walked.append(key)
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            raise SpecError(join_path(walked), "no such field") from None
    return node


def set_at(tree: Any, path: str, value: Any) -> None:
    """Set a value in place (the parent must exist)."""
    keys = split_path(path)
    parent = get_at(tree, join_path(keys[:-1])) if len(keys) > 1 else tree
    last = keys[-1]
    if isinstance(last, int):
        if not isinstance(parent, list) or last >= len(parent):
            raise SpecError(path, "no such field")
    elif not isinstance(parent, dict):
        raise SpecError(path, "no such field")
    parent[last] = value
