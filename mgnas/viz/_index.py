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


def _search_section(root: Path, d: Path) -> IndexSection | None:
    if not (d / "result.json").is_file():
        return None
    r = json.loads((d / "result.json").read_text())
    summary = {}
    if r.get("test_accuracy") is not None:
        summary["test accuracy"] = f"{100 * r['test_accuracy']:.2f}%"
    if r.get("zeta_over_o") is not None:
        summary["ζ/o"] = f"{r['zeta_over_o']:.3f} ({'within' if r.get('within_budget') else 'over'} budget)"
    for key in ("params", "macs"):
        if isinstance(r.get(key), int):
            summary[key] = f"{r[key]:,}"
    if r.get("groups"):
        summary["groups"] = " ".join(str(g) for g in r["groups"])
    return IndexSection(f"search: {d.relative_to(root) if d != root else '.'}", summary, [], [], _entries(root, d))


def _study_section(root: Path, d: Path) -> IndexSection | None:
    if not (d / "trials.csv").is_file():
        return None
    with open(d / "trials.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    states: dict[str, int] = {}
    for row in rows:
        states[row["state"]] = states.get(row["state"], 0) + 1
    summary = {"trials": ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))}
    front = sorted((d / "front").glob("*.json")) if (d / "front").is_dir() else []
    header, table = ["spec", "val accuracy", "test accuracy", "params", "MACs", "choices"], []
    for path in front:
        spec = json.loads(path.read_text())
        m, choices = spec.get("metrics", {}), spec.get("provenance", {}).get("choices", {})
        table.append([str(path.relative_to(root)), _pct(m.get("val_accuracy")), _pct(m.get("test_accuracy")),
                      _int(m.get("params")), _int(m.get("macs")), ", ".join(f"{k}={v}" for k, v in choices.items())])
    summary["Pareto front"] = f"{len(front)} architecture(s)"
    entries = _entries(root, d) + [IndexEntry(str(p.relative_to(root)), "a Pareto-optimal spec (metrics filled in)")
                                   for p in front]
    return IndexSection(f"study: {d.relative_to(root) if d != root else '.'}", summary, header, table, entries)


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
    parts.append("<ul>" + "".join(f"<li><a href='{e(x.path)}'>{e(x.path)}</a>: {e(x.description)}</li>"
                                  for x in s.entries) + "</ul>")
    return "\n".join(parts)


_STYLE = ("body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em}"
          "table{border-collapse:collapse;margin:.5em 0}th,td{padding:.2em .8em;text-align:left}"
          "table.grid td,table.grid th{border-bottom:1px solid #ddd}table.kv th{color:#555;font-weight:normal}")


def write_index(out_dir: str | Path, title: str = "mgnas outputs") -> Path:
    """Write ``out_dir/index.html`` linking everything :func:`index_data` finds; returns its path."""
    root = Path(out_dir)
    sections = index_data(root)
    body = "\n".join(_draw_section(s) for s in sections) or "<p>nothing produced yet</p>"
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")
    path = root / "index.html"
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
