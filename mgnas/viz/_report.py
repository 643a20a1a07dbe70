"""The HTML report of a DGConv search (Zhang et al. Fig. 5 and Fig. 6), Optuna-style: compute, then draw.

:func:`report_data` turns ``history.jsonl`` rows and ``result.json`` into typed NamedTuples (no plotting
library involved; tests assert on these); :func:`write_report` draws them with plotly (imported only
there) into one self-contained offline HTML file:

- the learned groups of each DGConv layer against its layer name (Fig. 5), on a log2 axis;
- the group number of every layer over the epochs as a layer × epoch heatmap (Fig. 6a);
- the gate values g̃ as a layer × gate heatmap with one slider frame per epoch (Fig. 6b);
- accuracy and ζ/o per epoch with the budget line (ζ/o = 1) labelled.

Layers are named as everywhere else in mgnas (``stages.0.0.conv1``, :func:`mgnas.spec.layer_name`).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple


class GroupsPerLayer(NamedTuple):
    """Fig. 5: the learned group number of each DGConv layer, input to output."""

    labels: list[str]          # layer names, "stages.0.1.conv2"
    channels: list[int]        # C_out of each layer
    groups: list[int]
    max_groups: list[int]      # gcd(C_in, C_out): the most groups the layer can reach


class GateDynamics(NamedTuple):
    """Fig. 6: group number (a) and raw gate values g̃ (b) of every layer over the epochs."""

    epochs: list[int]
    groups: list[list[int]]             # [layer][epoch]
    gates: list[list[list[float]]]      # [layer][gate k][epoch]


class GateFrames(NamedTuple):
    """Fig. 6b as heatmap frames: one layer × gate matrix of g̃ per epoch (``None`` where a layer has fewer gates)."""

    layers: list[str]                          # layer names (rows)
    gate_labels: list[str]                     # "g1" (the most significant Kronecker factor) ... "gK" (columns)
    epochs: list[int]                          # one frame per epoch
    values: list[list[list[float | None]]]     # [epoch][layer][gate]
    flips: list[int]                           # per layer: how often a hard gate g = 1[g̃ ≥ 0] changed


class Curves(NamedTuple):
    epochs: list[int]
    train_accuracy: list[float | None]
    val_accuracy: list[float | None]
    zeta_over_o: list[float | None]     # hard gates at the end of each epoch
    budget: float = 1.0                 # the budget line: ζ/o = 1 means ζ = o


class ReportData(NamedTuple):
    title: str
    summary: dict[str, Any]             # raw numbers from result.json
    groups: GroupsPerLayer
    dynamics: GateDynamics
    curves: Curves
    frames: GateFrames
    summary_rows: list[tuple[str, str]]  # the same, rounded and worded for people


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``history.jsonl`` (empty if missing)."""
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _name(layer: Mapping[str, Any], i: int) -> str:
    """The layer name of a ``result.json`` layer (older results wrote the spec field path as ``path``)."""
    from mgnas.spec import SpecError, layer_name

    raw = layer.get("name") or layer.get("path")
    if not raw:
        return f"layer {i}"
    try:
        return layer_name(str(raw))
    except SpecError:
        return str(raw)


def _flips(series: Sequence[Sequence[float]]) -> int:
    """Changes of the hard gates 1[g̃ ≥ 0] over epochs, summed over a layer's gates."""
    return sum(sum((a >= 0) != (b >= 0) for a, b in zip(s, s[1:])) for s in series)


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}%" if isinstance(v, (int, float)) else "-"


def _si(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n:,.0f} ({n / scale:.2f}{unit})"
    return f"{n:,.0f}"


def _duration(s: Any) -> str:
    if not isinstance(s, (int, float)):
        return "-"
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    return f"{h} h {m} min" if h else (f"{m} min {sec} s" if m else f"{sec} s")


def _summary_rows(r: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if r.get("test_accuracy") is not None:
        rows.append(("test accuracy", _pct(r["test_accuracy"])))
    if r.get("val_accuracy") is not None:
        rows.append(("val accuracy", _pct(r["val_accuracy"])))
    elif r.get("accuracy") is not None:
        rows.append(("accuracy", _pct(r["accuracy"])))
    if isinstance(r.get("zeta_over_o"), (int, float)):
        verdict = "within budget" if r.get("within_budget", r["zeta_over_o"] <= 1 + 1e-9) else "over budget"
        rows.append(("ζ/o (DGConv complexity / budget)", f"{r['zeta_over_o']:.3f}, {verdict}"))
    if isinstance(r.get("complexity"), (int, float)) and isinstance(r.get("budget"), (int, float)):
        rows.append(("ζ = Σ nnz(U) and budget o", f"{r['complexity']:,.0f} of {r['budget']:,.0f}"))
    if r.get("budget_spec") or r.get("penalty"):
        rows.append(("budget and penalty", f"{r.get('budget_spec', '-')}, {r.get('penalty', '-')}"))
    if r.get("projected"):
        rows.append(("projection", f"{r.get('projection_flips', '?')} gate(s) flipped after training to meet "
                                   "the budget"))
    rows.append(("parameters", _si(r.get("params"))))
    rows.append(("MACs", _si(r.get("macs"))))
    if r.get("epochs") is not None:
        rows.append(("epochs", str(r["epochs"])))
    if r.get("seconds") is not None:
        rows.append(("time", _duration(r["seconds"])))
    return [(k, v) for k, v in rows if v != "-"]


def report_data(history: Sequence[Mapping[str, Any]], result: Mapping[str, Any], title: str = "") -> ReportData:
    """Plot data from per-epoch history rows (with ``groups``/``gates`` lists) and the final result."""
    layers = list(result.get("layers") or [])
    final_groups = [int(g) for g in result.get("groups") or []]
    n = len(final_groups) or len(layers)
    labels = [_name(lay, i) for i, lay in enumerate(layers)] or [f"layer {i}" for i in range(n)]
    groups = GroupsPerLayer(labels, [int(lay.get("out_channels", 0)) for lay in layers] or [0] * n, final_groups,
                            [int(lay.get("max_groups", 0)) for lay in layers] or [0] * n)
    rows = [r for r in history if "groups" in r]
    epochs = [int(r.get("epoch", i)) for i, r in enumerate(rows)]
    dyn_groups = [[int(r["groups"][li]) for r in rows] for li in range(n)]
    dyn_gates: list[list[list[float]]] = []
    for li in range(n):
        k_count = len(rows[0]["gates"][li]) if rows and "gates" in rows[0] else 0
        dyn_gates.append([[float(r["gates"][li][k]) for r in rows] for k in range(k_count)])
    k_max = max((len(g) for g in dyn_gates), default=0)
    values = [[[dyn_gates[li][k][e] if k < len(dyn_gates[li]) else None for k in range(k_max)] for li in range(n)]
              for e in range(len(epochs) if k_max else 0)]
    frames = GateFrames(labels, [f"g{k + 1}" for k in range(k_max)], epochs if k_max else [], values,
                        [_flips(g) for g in dyn_gates])
    all_epochs = [int(r.get("epoch", i)) for i, r in enumerate(history)]
    curves = Curves(
        all_epochs, [r.get("train_accuracy") for r in history], [r.get("val_accuracy") for r in history],
        [r.get("zeta_over_o_hard", r.get("zeta_over_o")) for r in history],
    )
    keys = ("accuracy", "val_accuracy", "test_accuracy", "complexity", "budget", "zeta_over_o", "within_budget",
            "projected", "params", "macs", "epochs", "seconds")
    summary = {k: result.get(k) for k in keys if k in result}
    return ReportData(title or "DGConv search", summary, groups, GateDynamics(epochs, dyn_groups, dyn_gates), curves,
                      frames, _summary_rows(result))


# --------------------------------------------------------------------------- drawing (plotly)
_FONT = dict(family="system-ui, sans-serif", size=13)


def _pow2_axis(top: int) -> dict[str, Any]:
    """A log2 axis: ticks at 1, 2, 4, ... up to ``top``."""
    ticks = [2 ** i for i in range(int(math.log2(max(top, 1))) + 1)]
    return dict(type="log", tickvals=ticks, ticktext=[str(t) for t in ticks],
                range=[-0.15, math.log10(max(top, 2)) + 0.25])


def _layer_height(n: int) -> int:
    return int(min(2400, max(320, 150 + 22 * n)))


def _groups_figure(g: GroupsPerLayer) -> Any:
    import plotly.graph_objects as go

    top = max([*g.groups, *g.max_groups, 2])
    fig = go.Figure()
    fig.add_trace(go.Bar(
        x=g.labels, y=g.groups, text=g.groups, textposition="outside", name="learned groups",
        customdata=[[c, m] for c, m in zip(g.channels, g.max_groups)], marker_color="#3b6fb6",
        hovertemplate="%{x}<br>C_out %{customdata[0]}<br>groups %{y} of at most %{customdata[1]}<extra></extra>"))
    if any(g.max_groups):
        fig.add_trace(go.Scatter(x=g.labels, y=g.max_groups, mode="markers", name="most groups possible",
                                 marker=dict(symbol="line-ew-open", size=18, color="#999", line=dict(width=2)),
                                 hoverinfo="skip"))
    many = len(g.labels) > 40
    fig.update_layout(
        title="Learned groups per DGConv layer, input to output (cf. Zhang et al. Fig. 5)", font=_FONT,
        xaxis=dict(title="layer (C_out)", tickangle=-60, tickfont=dict(size=9 if many else 11),
                   tickmode="array", tickvals=g.labels,
                   ticktext=[f"{n} ({c})" for n, c in zip(g.labels, g.channels)]),
        yaxis=dict(title="groups (log2 axis)", **_pow2_axis(top)), height=560, bargap=0.25,
        legend=dict(orientation="h", y=1.08, x=1, xanchor="right"), margin=dict(b=180))
    return fig


def _group_epochs_figure(g: GroupsPerLayer, d: GateDynamics) -> Any:
    import plotly.graph_objects as go

    z = [[math.log2(max(v, 1)) for v in row] for row in d.groups]
    top = max([max(row) for row in d.groups if row] + [2])
    ticks = [2 ** i for i in range(int(math.log2(top)) + 1)]
    fig = go.Figure(go.Heatmap(
        z=z, x=d.epochs, y=g.labels, text=d.groups, texttemplate="%{text}" if len(d.epochs) <= 40 else None,
        colorscale="Viridis", zmin=0, zmax=math.log2(top), xgap=1, ygap=1,
        colorbar=dict(title="groups", tickvals=[math.log2(t) for t in ticks], ticktext=[str(t) for t in ticks]),
        hovertemplate="%{y}<br>epoch %{x}: %{text} groups<extra></extra>"))
    fig.update_layout(title="Groups of every layer after each epoch (cf. Fig. 6a)", font=_FONT,
                      xaxis=dict(title="epoch", dtick=1 if len(d.epochs) <= 30 else None),
                      yaxis=dict(title="", autorange="reversed"), height=_layer_height(len(g.labels)))
    return fig


def _gate_figure(f: GateFrames) -> Any:
    import plotly.graph_objects as go

    flat = sorted(abs(v) for frame in f.values for row in frame for v in row if v is not None)
    lim = (flat[int(0.9 * (len(flat) - 1))] if flat else 1.0) or (flat[-1] if flat else 1.0) or 1.0
    rows = [f"{name} ({n} flip{'s' if n != 1 else ''})" for name, n in zip(f.layers, f.flips)]

    def text(e: int) -> list[list[str]]:
        return [["" if v is None else ("1" if v >= 0 else "0") for v in row] for row in f.values[e]]

    last = len(f.epochs) - 1
    fig = go.Figure(go.Heatmap(
        z=f.values[last], x=f.gate_labels, y=rows, text=text(last), texttemplate="%{text}", zmid=0, zmin=-lim,
        zmax=lim, colorscale="RdBu_r", xgap=2, ygap=1, colorbar=dict(title="g̃", tickformat=".2g"),
        hovertemplate="%{y}<br>%{x}: g̃ = %{z:.3g}, g = %{text}<extra></extra>"))
    steps = [dict(method="restyle", label=str(ep), args=[{"z": [f.values[e]], "text": [text(e)]}])
             for e, ep in enumerate(f.epochs)]
    fig.update_layout(
        title=dict(text="Gate values g̃ per layer and gate after each epoch (cf. Fig. 6b)<br><sup>cell text: the "
                        "hard gate g = 1[g̃ ≥ 0]; 1 merges the groups of that Kronecker factor, 0 splits them; "
                        "g1 is the most significant factor; flips = changes of g over the epochs</sup>"),
        font=_FONT, xaxis=dict(side="top"), yaxis=dict(autorange="reversed"),
        height=_layer_height(len(rows)) + 110, margin=dict(t=110),
        sliders=[dict(active=last, steps=steps, currentvalue=dict(prefix="epoch "), pad=dict(t=20))])
    return fig


def _curves_figure(c: Curves) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.55, 0.45],
                        subplot_titles=("accuracy", "ζ/o: DGConv complexity over the budget (hard gates)"))
    fig.add_trace(go.Scatter(x=c.epochs, y=c.train_accuracy, name="train accuracy", mode="lines+markers",
                             hovertemplate="epoch %{x}: %{y:.1%}<extra>train</extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=c.epochs, y=c.val_accuracy, name="val accuracy", mode="lines+markers",
                             hovertemplate="epoch %{x}: %{y:.1%}<extra>val</extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=c.epochs, y=c.zeta_over_o, name="ζ/o", mode="lines+markers",
                             hovertemplate="epoch %{x}: ζ/o = %{y:.3f}<extra></extra>"), row=2, col=1)
    ratios = [v for v in c.zeta_over_o if isinstance(v, (int, float))]
    top = max([*ratios, c.budget]) * 1.2
    fig.add_hline(y=c.budget, line_dash="dot", line_color="#c0392b", row=2, col=1,
                  annotation_text=f"budget: ζ/o = {c.budget:g} (ζ = o); below it is within budget",
                  annotation_position="top right", annotation_font_color="#c0392b")
    dtick = 1 if len(c.epochs) <= 30 else None
    fig.update_xaxes(dtick=dtick)
    fig.update_xaxes(title="epoch", row=2, col=1)
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(range=[0, top], tickformat=".2f", row=2, col=1)
    fig.update_layout(title="Accuracy and ζ/o per epoch", font=_FONT, height=560,
                      legend=dict(orientation="h", y=1.1, x=1, xanchor="right"))
    return fig


def _figures(data: ReportData) -> list[Any]:
    figs = [_groups_figure(data.groups)]
    if data.dynamics.epochs:
        figs.append(_group_epochs_figure(data.groups, data.dynamics))
    if data.frames.epochs:
        figs.append(_gate_figure(data.frames))
    if data.curves.epochs:
        figs.append(_curves_figure(data.curves))
    return figs


_STYLE = ("body{font-family:system-ui,sans-serif;max-width:90em;margin:1.5em auto;padding:0 1em;color:#222}"
          "table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{padding:.2em .9em;text-align:left}"
          "th{color:#555;font-weight:normal}.fig{margin-bottom:2em}")


def write_report(path: str | Path, history: Sequence[Mapping[str, Any]], result: Mapping[str, Any],
                 title: str = "") -> Path:
    """Write the self-contained HTML report (plotly.js inlined once: works offline)."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise ImportError("the report needs plotly: pip install 'mgnas[viz]'") from None
    data = report_data(history, result, title)
    figs = _figures(data)
    e = html.escape
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in data.summary_rows)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(data.title)}</title>"
             f"<style>{_STYLE}</style></head><body>", f"<h1>{e(data.title)}</h1><table>{rows}</table>"]
    for i, fig in enumerate(figs):
        parts.append("<div class='fig'>" + fig.to_html(full_html=False, include_plotlyjs=(i == 0),
                                                       config={"displaylogo": False}) + "</div>")
    parts.append("</body></html>")
    out = Path(path)
    from mgnas._atomic import write_text_atomic

    write_text_atomic("\n".join(parts), out)  # never a truncated report under the real name (kill, full disk)
    return out
