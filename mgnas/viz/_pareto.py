"""The HTML page of a study (``pareto.html``), Optuna-style: compute the page data, then draw.

:func:`pareto_page_data` turns plain trial rows (numbers, states, objective values, choices, user attrs;
no Optuna object) plus the study's front / hypervolume / importance data into typed NamedTuples that tests
check; :func:`write_pareto_page` draws them with plotly (imported only there) into one offline HTML file:

- a header: study, space, data, epochs per trial, how many trials completed / were pruned / infeasible;
- accuracy against each cost objective (params, MACs): every trial a point whose hover shows its choices,
  params, MACs, accuracy and spec file; the front drawn as steps; pruned, infeasible and constraint-violating
  trials with their own markers;
- the hypervolume after each trial, its reference point written out;
- parameter importances, flagged as unreliable below :data:`RELIABLE_TRIALS` completed trials.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

#: fANOVA importances from fewer completed trials than this are noise more than signal.
RELIABLE_TRIALS = 20

#: what a point of the plot is (its marker), in drawing order
KINDS = ("dominated", "front", "pruned", "violates constraint")


class TrialPoint(NamedTuple):
    number: int
    kind: str                        # one of KINDS, or "infeasible" (cannot be built: no point on the plot)
    accuracy: float | None           # the objective; a pruned trial: its last reported val accuracy
    params: int | None
    macs: int | None
    choices: dict[str, Any]
    spec_path: str                   # relative to the page ("front/trial_0003.json"), "" if not exported
    note: str                        # why pruned / infeasible


class StudyHeader(NamedTuple):
    study: str
    space: str
    data: str
    trial_kind: str                  # "train" or "search"
    epochs_per_trial: int | None
    counts: dict[str, int]           # complete / pruned / infeasible / failed / running


class ParetoPageData(NamedTuple):
    header: StudyHeader
    objectives: list[str]
    directions: list[str]
    points: list[TrialPoint]
    steps: dict[str, list[int]]      # cost objective -> trial numbers of the accuracy-vs-cost front, by cost
    hv_numbers: list[int]
    hypervolume: list[float]
    reference_point: list[float]
    reference_text: str              # the reference point in words
    importances: dict[str, dict[str, float]]
    importance_note: str             # why some are missing or why they are unreliable ("" when fine)
    importance_reliable: bool


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _front_2d(points: Sequence[TrialPoint], cost: str) -> list[int]:
    """Trials no other trial beats on both accuracy (higher) and ``cost`` (lower), sorted by cost."""
    pts = [(getattr(p, cost), p.accuracy, p.number) for p in points
           if p.kind in ("front", "dominated") and getattr(p, cost) is not None and p.accuracy is not None]
    pts.sort(key=lambda t: (t[0], -t[1]))
    out, best = [], float("-inf")
    for _cost, a, n in pts:
        if a > best:
            out.append(n)
            best = a
    return out


def _reference_text(objectives: Sequence[str], directions: Sequence[str], ref: Sequence[float]) -> str:
    if not ref:
        return ""
    parts = []
    for name, d, r in zip(objectives, directions, ref):
        parts.append(f"{name} {abs(r):g}" if d == "maximize" else f"{name} {r:,.0f} (1.1 × the largest seen)")
    return (f"Hypervolume: the objective-space volume the front dominates up to the reference point: "
            f"{', '.join(parts)}. Maximised objectives are negated first. It never falls, and rises when a trial "
            "extends the front.")


def pareto_page_data(
    trials: Sequence[Mapping[str, Any]], *, study: str, objectives: Sequence[str], directions: Sequence[str],
    front: Sequence[int], hv_numbers: Sequence[int] = (), hypervolume: Sequence[float] = (),
    reference_point: Sequence[float] = (), importances: Mapping[str, Mapping[str, float]] | None = None,
    importance_note: str = "", study_attrs: Mapping[str, Any] | None = None,
    spec_paths: Mapping[int, str] | None = None,
) -> ParetoPageData:
    """Page data from trial rows ``{"number", "state", "values", "params" (the choices), "user_attrs",
    "feasible"}`` (``state`` an Optuna state name: COMPLETE, PRUNED, FAIL, RUNNING, ...)."""
    attrs, spec_paths, on_front = dict(study_attrs or {}), dict(spec_paths or {}), set(front)
    objectives, directions = list(objectives), list(directions)
    acc_i = objectives.index("accuracy") if "accuracy" in objectives else None
    points, counts = [], {"complete": 0, "pruned": 0, "infeasible": 0, "failed": 0, "running": 0}
    epochs = []
    for t in trials:
        ua, state = dict(t.get("user_attrs") or {}), str(t.get("state", ""))
        if ua.get("surplus"):
            continue
        values = list(t.get("values") or [])
        history = ua.get("val_accuracy_history") or []
        if state == "COMPLETE":
            counts["complete"] += 1
            epochs.append(len(history))
            kind = "front" if t["number"] in on_front else (
                "dominated" if t.get("feasible", True) else "violates constraint")
            acc = values[acc_i] if acc_i is not None and values else _num(ua.get("val_accuracy"))
            note = "" if t.get("feasible", True) else "violates a constraint (e.g. max_params)"
        elif state == "PRUNED" and ua.get("infeasible"):
            counts["infeasible"] += 1
            kind, acc, note = "infeasible", None, str(ua["infeasible"])
        elif state == "PRUNED":
            counts["pruned"] += 1
            kind, acc = "pruned", _num(history[-1]) if history else None
            reason = ua.get("pruned_reason") or (f"duplicate of trial {ua['duplicate_of']}"
                                                 if "duplicate_of" in ua else "")
            at = f" at epoch {ua['pruned_at_epoch']}" if "pruned_at_epoch" in ua else ""
            note = f"pruned{at}" + (f": {reason}" if reason else "")
        elif state == "FAIL":
            counts["failed"] += 1
            continue
        else:
            counts["running"] += 1
            continue
        points.append(TrialPoint(int(t["number"]), kind, _num(acc), ua.get("params"), ua.get("macs"),
                                 dict(t.get("params") or {}), spec_paths.get(int(t["number"]), ""), note))
    header = StudyHeader(study, str(attrs.get("space") or "?"), str(attrs.get("data") or "?"),
                         str(attrs.get("trial_kind") or "train"),
                         attrs.get("epochs") or (max(epochs) if epochs else None), counts)
    costs = [o for o in objectives if o in ("params", "macs")] or (
        ["params"] if any(p.params is not None for p in points) else [])
    steps = {c: _front_2d(points, c) for c in costs}
    reliable = counts["complete"] >= RELIABLE_TRIALS
    note = importance_note
    if not reliable:
        warn = (f"only {counts['complete']} completed trial(s): importances from fewer than {RELIABLE_TRIALS} "
                "are unreliable")
        note = f"{warn}; {note}" if note else warn
    return ParetoPageData(header, objectives, directions, points, steps, list(hv_numbers), list(hypervolume),
                          list(reference_point), _reference_text(objectives, directions, reference_point),
                          {k: dict(v) for k, v in (importances or {}).items()}, note, reliable)


# --------------------------------------------------------------------------- drawing (plotly)
_FONT = dict(family="system-ui, sans-serif", size=13)
_MARKERS = {
    "dominated": dict(symbol="circle", size=9, color="#9aa9bd"),
    "front": dict(symbol="diamond", size=12, color="#d35400", line=dict(width=1, color="#333")),
    "pruned": dict(symbol="x-thin-open", size=10, color="#777", line=dict(width=2, color="#777")),
    "violates constraint": dict(symbol="circle-open", size=10, color="#c0392b", line=dict(width=2)),
}
_COST_TITLE = {"params": "parameters", "macs": "MACs"}


def _hover(p: TrialPoint) -> str:
    choices = "<br>".join(f"  {k} = {v}" for k, v in p.choices.items()) or "  (none)"
    acc = f"{100 * p.accuracy:.1f}%" if p.accuracy is not None else "-"
    lines = [f"<b>trial {p.number}</b> ({p.kind})", f"accuracy {acc}",
             f"params {p.params:,}" if isinstance(p.params, int) else "params -",
             f"MACs {p.macs:,}" if isinstance(p.macs, int) else "MACs -",
             f"spec: {p.spec_path}" if p.spec_path else "spec: in the study storage (not on the front)",
             "choices:", choices]
    if p.note:
        lines.append(html.escape(p.note[:120]))
    return "<br>".join(lines)


def draw_front(data: ParetoPageData, cost: str) -> Any:
    """Accuracy against one cost objective: every trial, the front as steps."""
    import plotly.graph_objects as go

    fig = go.Figure()
    by_number = {p.number: p for p in data.points}
    steps = [by_number[n] for n in data.steps.get(cost, [])]
    if steps:
        fig.add_trace(go.Scatter(x=[getattr(p, cost) for p in steps], y=[p.accuracy for p in steps],
                                 mode="lines", line_shape="hv", line=dict(color="#d35400", width=2),
                                 name="front (accuracy vs " + _COST_TITLE.get(cost, cost) + ")", hoverinfo="skip"))
    for kind in KINDS:
        pts = [p for p in data.points if p.kind == kind and getattr(p, cost) is not None and p.accuracy is not None]
        if not pts:
            continue
        label = {"front": "Pareto-optimal (all objectives)", "pruned": "pruned (last val accuracy)"}.get(kind, kind)
        fig.add_trace(go.Scatter(x=[getattr(p, cost) for p in pts], y=[p.accuracy for p in pts], mode="markers",
                                 name=f"{label} ({len(pts)})", marker=_MARKERS[kind],
                                 hovertext=[_hover(p) for p in pts], hoverinfo="text"))
    fig.update_layout(title=f"Accuracy vs {_COST_TITLE.get(cost, cost)}: every trial; hover a point for its "
                            "choices and spec file", font=_FONT, height=520,
                      xaxis=_cost_axis(cost, [getattr(p, cost) for p in data.points]),
                      yaxis=dict(title="val accuracy", tickformat=".0%"),
                      legend=dict(orientation="h", y=-0.18), hoverlabel=dict(align="left"))
    return fig


def _cost_axis(cost: str, values: Sequence[Any]) -> dict[str, Any]:
    """A log axis when the costs span more than a decade, else a linear one (fewer, readable ticks)."""
    vals = [v for v in values if isinstance(v, (int, float)) and v > 0]
    wide = bool(vals) and max(vals) > 10 * min(vals)
    title = _COST_TITLE.get(cost, cost) + (" (log axis)" if wide else "")
    return dict(title=title, type="log" if wide else "linear", tickformat="~s")


def draw_hypervolume_history(data: ParetoPageData) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=data.hv_numbers, y=data.hypervolume, mode="lines+markers", line_shape="hv",
                               hovertemplate="after trial %{x}: %{y:.4g}<extra></extra>"))
    fig.update_layout(title="Hypervolume after each completed trial", font=_FONT, height=380,
                      xaxis=dict(title="trial", dtick=1 if len(data.hv_numbers) <= 30 else None),
                      yaxis=dict(title="hypervolume", tickformat="~s"))
    return fig


def draw_importance_bars(data: ParetoPageData) -> Any:
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, imp in data.importances.items():
        fig.add_trace(go.Bar(x=list(imp.values()), y=list(imp.keys()), orientation="h", name=name,
                             opacity=1.0 if data.importance_reliable else 0.45,
                             hovertemplate="%{y}: %{x:.2f}<extra>" + name + "</extra>"))
    title = "Parameter importances (fANOVA)"
    if not data.importance_reliable:
        title += " — UNRELIABLE"
    n = max((len(v) for v in data.importances.values()), default=1)
    fig.update_layout(title=dict(text=title + (f"<br><sup>{html.escape(data.importance_note)}</sup>"
                                               if data.importance_note else "")),
                      font=_FONT, height=max(300, 160 + 28 * n * max(1, len(data.importances))),
                      xaxis=dict(title="importance", range=[0, 1]), barmode="group")
    return fig


def pareto_figures(data: ParetoPageData) -> list[Any]:
    """The page's figures, in order: accuracy vs each cost, hypervolume history, importances (for PNG export too)."""
    figs = [draw_front(data, c) for c in data.steps]
    if data.hv_numbers:
        figs.append(draw_hypervolume_history(data))
    if data.importances or data.importance_note:
        figs.append(draw_importance_bars(data))
    return figs


_STYLE = ("body{font-family:system-ui,sans-serif;max-width:90em;margin:1.5em auto;padding:0 1em;color:#222}"
          "table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{padding:.2em .9em;text-align:left}"
          "th{color:#555;font-weight:normal}table.grid td,table.grid th{border-bottom:1px solid #ddd}"
          "p.note{color:#555;max-width:60em}.fig{margin-bottom:2em}")


def _header_html(data: ParetoPageData) -> str:
    e, h = html.escape, data.header
    counts = ", ".join(f"{n} {k}" for k, n in h.counts.items() if n) or "none yet"
    rows = [("space", h.space), ("data", h.data), ("trial", "a DGConv search per trial" if h.trial_kind == "search"
                                                    else "train the sampled architecture"),
            ("epochs per trial", str(h.epochs_per_trial) if h.epochs_per_trial else "-"), ("trials", counts),
            ("objectives", ", ".join(f"{o} ({'max' if d == 'maximize' else 'min'})"
                                     for o, d in zip(data.objectives, data.directions)))]
    return (f"<h1>Study {e(h.study)}</h1><table>" +
            "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows) + "</table>")


def _infeasible_html(data: ParetoPageData) -> str:
    bad = [p for p in data.points if p.kind == "infeasible"]
    if not bad:
        return ""
    e = html.escape
    rows = "".join(f"<tr><td>{p.number}</td><td>{e(', '.join(f'{k}={v}' for k, v in p.choices.items()))}</td>"
                   f"<td>{e(p.note)}</td></tr>" for p in bad)
    return (f"<h2>Infeasible trials ({len(bad)}): choices that cannot be built, pruned before training</h2>"
            f"<table class='grid'><tr><th>trial</th><th>choices</th><th>why</th></tr>{rows}</table>")


def write_pareto_page(path: str | Path, data: ParetoPageData) -> Path:
    """Write the self-contained study page (plotly.js inlined once: works offline)."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise ImportError("the study page needs plotly: pip install 'mgnas[viz]'") from None
    figs = pareto_figures(data)
    notes = {len(data.steps): data.reference_text} if data.hv_numbers else {}  # under the hypervolume plot
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>study {html.escape(data.header.study)}"
             f"</title><style>{_STYLE}</style></head><body>", _header_html(data)]
    for i, fig in enumerate(figs):
        note = notes.get(i, "")
        body = fig.to_html(full_html=False, include_plotlyjs=(i == 0), config={"displaylogo": False})
        parts.append(f"<div class='fig'>{body}" + (f"<p class='note'>{html.escape(note)}</p>" if note else "")
                     + "</div>")
    parts.append(_infeasible_html(data))
    parts.append("</body></html>")
    out = Path(path)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    tmp.replace(out)
    return out
