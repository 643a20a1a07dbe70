"""The layering of DESIGN.md: imports only point down; the spec layer imports no torch."""

import ast
from pathlib import Path

import pytest

import mgnas.ops

ROOT = Path(__file__).resolve().parents[1]
# package -> mgnas subpackages it may import (L0 spec < L1 ops < L2 models/profile < L3 spaces < L4 strategies < L5 cli)
# mgnas/_atomic.py (atomic file writes, standard library only) sits below every layer.
ALLOWED = {
    "mgnas/spec": {"_atomic", "spec"},
    "mgnas/ops": {"spec", "ops"},
    "mgnas/models": {"_atomic", "spec", "ops", "models"},
    "mgnas/profile": {"_atomic", "spec", "ops", "profile"},
    "search_spaces": {"_atomic", "spec", "ops", "models", "profile", "search_spaces"},
}


def test_atomic_is_standard_library_only():
    tree = ast.parse((ROOT / "mgnas" / "_atomic.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"__future__", "contextlib", "errno", "json", "os", "collections", "pathlib", "typing"}, names


def _mgnas_imports(path: Path) -> set[str]:
    found = set()
    rel = path.relative_to(ROOT).parts
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the file's package
                base = list(rel[:-node.level]) if node.level <= len(rel) - 1 else []
                mod = ".".join(base[1:] + ([node.module] if node.module else []))
                top = mod.split(".")[0] if mod else rel[1] if len(rel) > 2 else ""
                if rel[0] == "mgnas":
                    found.add(top or rel[1])
                elif rel[0] == "search_spaces":
                    found.add("search_spaces")
            elif node.module and node.module.startswith("mgnas."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("mgnas."))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_down(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = _mgnas_imports(path) - ALLOWED[package]
        assert not bad, f"{path.relative_to(ROOT)} imports mgnas.{sorted(bad)} (above its layer)"


def test_every_lazy_op_export_resolves():
    for name in mgnas.ops.__all__:
        assert getattr(mgnas.ops, name) is not None, name
