"""Names of the parts of a spec: field paths into the JSON and layer names for people.

Two spellings exist, for two readers:

- the **field path** addresses the JSON of a spec file: ``stages[2].blocks[0].conv2.groups``
  (what :class:`SpecError` messages name, so a user can find the field in ``spec.json``);
- the **layer name** is what everything else shows (search-space labels, ``result.json``, reports,
  ``mgnas count`` rows, ``trials.csv``): the same path written as a module path,
  ``stages.2.0.conv2.groups``. For the families whose module tree follows the spec (ResNet, ResNeXt,
  G-ResNeXt, WRN, MobileNetV2) it is exactly the ``named_modules()`` / ``state_dict`` prefix of the
  conv's wrapper module; for MGIC, MgNet/MGiaD and the multigrid nets it is the spec address in the
  same spelling (their modules are organised by level, not by spec field).

:func:`label_to_path` reads every spelling, including the old labels (``stage2.block0.conv2.groups``,
deprecated), so ``spec.get``/``spec.with_values`` accept a layer name, a label or a field path.
"""

from __future__ import annotations

import re
from typing import Any

from ._errors import SpecError

_TOKEN = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")
_LEGACY_PART = re.compile(r"^(stage|block|level|layer)(\d+)$")
_PLURAL = {"stage": "stages", "block": "blocks", "level": "levels", "layer": "layers"}


def split_path(path: str) -> list[str | int]:
    """``"stages[2].blocks[0].conv2"`` -> ``["stages", 2, "blocks", 0, "conv2"]``."""
    keys: list[str | int] = []
    for part in path.split("."):
        keys.extend(_token_keys(part, path))
    return keys


def _token_keys(part: str, whole: str) -> list[str | int]:
    """``"blocks[0][1]"`` -> ``["blocks", 0, 1]``; SpecError naming ``whole`` when ``part`` is malformed."""
    m = _TOKEN.fullmatch(part)
    if not m:
        raise SpecError(whole, f"malformed field path near {part!r}")
    return [m.group(1), *(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))]


def join_path(keys: list[str | int]) -> str:
    out = ""
    for k in keys:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else k)
    return out


def _keys(name: str) -> list[str | int]:
    """Keys of a layer name, a label (old or new) or a field path."""
    keys: list[str | int] = []
    for part in name.split("."):
        if part.isdigit():
            # ``stages.2.0``: the number after a stage index is the block index (``stages[2].blocks[0]``)
            keys.extend(["blocks", int(part)] if len(keys) == 2 and keys[0] == "stages" else [int(part)])
            continue
        legacy = _LEGACY_PART.match(part)
        if legacy:  # deprecated label spelling: ``stage2.block0.level1``
            keys.extend([_PLURAL[legacy.group(1)], int(legacy.group(2))])
            continue
        keys.extend(_token_keys(part, name))
    return keys


def label_to_path(label: str) -> str:
    """Any spelling -> field path: ``"stages.2.0.conv2.groups"`` (and the deprecated
    ``"stage2.block0.conv2.groups"``) -> ``"stages[2].blocks[0].conv2.groups"``."""
    return join_path(_keys(label)) if label else label


def layer_name(path: str) -> str:
    """Any spelling -> layer name: ``"stages[2].blocks[0].conv2"`` -> ``"stages.2.0.conv2"``."""
    if not path:
        return path
    keys = _keys(path)
    if len(keys) >= 4 and keys[0] == "stages" and keys[2] == "blocks":
        keys = keys[:2] + keys[3:]
    return ".".join(str(k) for k in keys)


def path_to_label(path: str) -> str:
    """The label spelling of a field path: the layer name (:func:`layer_name`)."""
    return layer_name(path)


def legacy_label(label: str) -> str:
    """The deprecated label spelling (``stage2.block0.conv2.groups``) of any spelling, for old configs."""
    def repl(m: re.Match[str]) -> str:
        singular = {v: k for k, v in _PLURAL.items()}[m.group(1)]
        return f"{singular}{m.group(2)}"

    return re.sub(r"\b(stages|blocks|levels|layers)\[(\d+)\]", repl, label_to_path(label))


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
