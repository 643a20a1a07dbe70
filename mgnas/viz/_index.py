"""An HTML index of a run directory: what was produced, the headline numbers, links to every file.

Compute, then draw: :func:`index_data` reads a directory (``result.json`` of a search, ``trials.csv`` and
``front/`` of a study, each in the directory itself or one level below) into typed tuples that tests check;
:func:`write_index` draws them as one static HTML page (no JavaScript, no plotting library), with links relative
to the page so the directory can be moved or archived.
"""

from __future__ import annotations

import csv
import html
import json
import re
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["IndexEntry", "IndexSection", "index_data", "write_index"]

#: Known outputs, in display order, with what they are.
_FILES = {
    "report.html": "search report: discovered groups per layer, gate dynamics, accuracy and ζ/o curves",
    "spec.json": "the discovered architecture (mgnas.arch/1): `mgnas train --spec FILE`, `mgnas export FILE`",
    "weights.pt": "the discovered network's trained weights (`mgnas train --init-from`, `mgnas export --checkpoint`)",
    "result.json": "final metrics of the search",
    "history.jsonl": "one row per epoch: accuracy, complexity, groups and gates",
    "pareto.html": "study plots: Pareto front (accuracy vs params / MACs), hypervolume history, importances",
    "trials.csv": "every trial of the study: choices, objectives, state",
    "pareto.json": "the plot data behind pareto.html",
    "study.db": "the Optuna storage (opens in optuna-dashboard; `mgnas pareto --storage sqlite:///...`)",
    "config.yaml": "the resolved configuration (re-run with --config)",
    "checkpoint.pt": "the last training checkpoint (resume with --resume)",
}


class IndexEntry(NamedTuple):
    path: str          # relative to the index page
    description: str


class IndexSection(NamedTuple):
    title: str
    summary: dict[str, str]                 # headline numbers
    table_header: list[str]                 # e.g. the Pareto front; empty when none
    table_rows: list[list[str]]
    entries: list[IndexEntry]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _where(root: Path, d: Path) -> str:
    return "this folder" if d == root else f"{d.relative_to(root)}/"


def _search_title(r: dict[str, Any], prov: dict[str, Any]) -> str:
    """``search: resnet20_groups on digits, budget b=4 (hinge penalty)`` from the run's own records."""
    space, data = prov.get("space"), prov.get("data")
    budget, penalty = prov.get("budget") or r.get("budget_spec"), prov.get("penalty") or r.get("penalty")
    title = "search: " + (space or "DGConv groups") + (f" on {data}" if data else "")
    if budget:
        title += f", budget {budget}" + (f" ({penalty} penalty)" if penalty else "")
    return title


def _search_section(root: Path, d: Path) -> IndexSection | None:
    if not (d / "result.json").is_file():
        return None
    r = json.loads((d / "result.json").read_text())
    prov = _read_json(d / "spec.json").get("provenance") or {}
    summary = {}
    if r.get("test_accuracy") is not None:
        summary["test accuracy"] = f"{100 * r['test_accuracy']:.2f}%"
    if r.get("zeta_over_o") is not None:
        summary["ζ/o (complexity / budget)"] = (f"{r['zeta_over_o']:.3f} "
                                                 f"({'within' if r.get('within_budget') else 'over'} budget)")
    for key, shown in (("params", "parameters"), ("macs", "MACs")):
        if isinstance(r.get(key), int):
            summary[shown] = f"{r[key]:,}"
    if r.get("groups"):
        summary["groups per DGConv layer"] = " ".join(str(g) for g in r["groups"])
    if r.get("epochs") is not None:
        summary["epochs"] = str(r["epochs"])
    summary["folder"] = _where(root, d)
    return IndexSection(_search_title(r, prov), summary, [], [], _entries(root, d))


def _study_section(root: Path, d: Path) -> IndexSection | None:
    if not (d / "trials.csv").is_file():
        return None
    with open(d / "trials.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    states: dict[str, int] = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    header = _read_json(d / "pareto.json").get("header") or {}
    summary = {"trials": ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))}
    bad = (header.get("counts") or {}).get("infeasible")
    if bad and states.get("PRUNED"):
        summary["trials"] += f" ({bad} of them infeasible: choices that cannot be built)"
    if header.get("epochs_per_trial"):
        summary["epochs per trial"] = str(header["epochs_per_trial"])
    front = sorted((d / "front").glob("*.json")) if (d / "front").is_dir() else []
    columns, table = ["spec", "val accuracy", "test accuracy", "params", "MACs", "choices"], []
    for path in front:
        spec = json.loads(path.read_text())
        m, choices = spec.get("metrics", {}), spec.get("provenance", {}).get("choices", {})
        table.append([str(path.relative_to(root)), _pct(m.get("val_accuracy")), _pct(m.get("test_accuracy")),
                      _int(m.get("params")), _int(m.get("macs")),
                      ", ".join(f"{k}={'none' if v is None else v}" for k, v in choices.items())])
    summary["Pareto front"] = f"{len(front)} architecture(s)"
    summary["folder"] = _where(root, d)
    space = header.get("space") or next((json.loads(p.read_text()).get("provenance", {}).get("space") for p in front),
                                        None)
    title = "study" + (f": {space}" if space and space != "?" else ": Optuna trials") + (
        f" on {header['data']}" if header.get("data") not in (None, "?") else "")
    entries = _entries(root, d) + [IndexEntry(str(p.relative_to(root)), "a Pareto-optimal spec (metrics filled in)")
                                   for p in front]
    return IndexSection(title, summary, columns, table, entries)


def _pct(v: Any) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else "-"


def _int(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else "-"


def _entries(root: Path, d: Path) -> list[IndexEntry]:
    return [IndexEntry(str((d / name).relative_to(root)), text)
            for name, text in _FILES.items() if (d / name).is_file()]


def index_data(out_dir: str | Path) -> list[IndexSection]:
    """The sections of ``out_dir``'s index: searches and studies found in it and its direct subdirectories."""
    root = Path(out_dir)
    sections = []
    for d in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        for make in (_search_section, _study_section):
            section = make(root, d)
            if section is not None:
                sections.append(section)
    return sections


def _text(s: str) -> str:
    """Escaped text with ``code`` spans as <code> (no literal backticks on the page)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(s))


def _draw_section(s: IndexSection) -> str:
    e = html.escape
    parts = [f"<h2>{e(s.title)}</h2><table class='kv'>"]
    parts += [f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in s.summary.items()]
    parts.append("</table>")
    if s.table_rows:
        parts.append("<table class='grid'><tr>" + "".join(f"<th>{e(h)}</th>" for h in s.table_header) + "</tr>")
        for row in s.table_rows:
            cells = [f"<a href='{e(row[0])}'>{e(Path(row[0]).name)}</a>", *map(e, row[1:])]
            parts.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        parts.append("</table>")
    parts.append("<ul>" + "".join(f"<li><a href='{e(x.path)}'>{e(x.path)}</a>: {_text(x.description)}</li>"
                                  for x in s.entries) + "</ul>")
    return "\n".join(parts)


_STYLE = ("body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
          "table{border-collapse:collapse;margin:.5em 0}th,td{padding:.2em .8em;text-align:left}"
          "table.grid td,table.grid th{border-bottom:1px solid #ddd}table.kv th{color:#555;font-weight:normal}"
          "code{background:#f2f2f2;padding:0 .25em;border-radius:3px}")


def write_index(out_dir: str | Path, title: str = "mgnas outputs") -> Path:
    """Write ``out_dir/index.html`` linking everything :func:`index_data` finds; returns its path."""
    root = Path(out_dir)
    sections = index_data(root)
    body = "\n".join(_draw_section(s) for s in sections) or "<p>nothing produced yet</p>"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")
    path = root / "index.html"
    from mgnas._atomic import write_text_atomic

    write_text_atomic(page, path)
    return path
