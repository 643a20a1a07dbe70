"""The HTML report of a DGConv search (Zhang et al. Fig. 5 and Fig. 6), Optuna-style: compute, then draw.

:func:`report_data` turns ``history.jsonl`` rows and ``result.json`` into typed NamedTuples (no plotting
library involved; tests assert on these); :func:`write_report` draws them with plotly (imported only
there) into one self-contained offline HTML file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple


class GroupsPerLayer(NamedTuple):
    """Fig. 5: the learned group number of each DGConv layer, input to output."""

    labels: list[str]          # "stages[0].blocks[1].conv2 (16)"
    channels: list[int]        # C_out of each layer
    groups: list[int]
    max_groups: list[int]


class GateDynamics(NamedTuple):
    """Fig. 6: group number (a) and raw gate values g̃ (b) of every layer over the epochs."""

    epochs: list[int]
    groups: list[list[int]]             # [layer][epoch]
    gates: list[list[list[float]]]      # [layer][gate k][epoch]


class Curves(NamedTuple):
    epochs: list[int]
    train_accuracy: list[float | None]
    val_accuracy: list[float | None]
    zeta_over_o: list[float | None]     # hard gates at the end of each epoch


class ReportData(NamedTuple):
    title: str
    summary: dict[str, Any]
    groups: GroupsPerLayer
    dynamics: GateDynamics
    curves: Curves


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``history.jsonl`` (empty if missing)."""
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def report_data(history: Sequence[Mapping[str, Any]], result: Mapping[str, Any], title: str = "") -> ReportData:
    """Plot data from per-epoch history rows (with ``groups``/``gates`` lists) and the final result."""
    layers = list(result.get("layers") or [])
    final_groups = [int(g) for g in result.get("groups") or []]
    n = len(final_groups) or len(layers)
    labels = [f"{lay.get('path', i)} ({lay.get('out_channels', '?')})" for i, lay in enumerate(layers)] or \
        [f"layer {i}" for i in range(n)]
    groups = GroupsPerLayer(labels, [int(lay.get("out_channels", 0)) for lay in layers] or [0] * n, final_groups,
                            [int(lay.get("max_groups", 0)) for lay in layers] or [0] * n)
    rows = [r for r in history if "groups" in r]
    epochs = [int(r.get("epoch", i)) for i, r in enumerate(rows)]
    dyn_groups = [[int(r["groups"][li]) for r in rows] for li in range(n)]
    dyn_gates: list[list[list[float]]] = []
    for li in range(n):
        k_count = len(rows[0]["gates"][li]) if rows and "gates" in rows[0] else 0
        dyn_gates.append([[float(r["gates"][li][k]) for r in rows] for k in range(k_count)])
    all_epochs = [int(r.get("epoch", i)) for i, r in enumerate(history)]
    curves = Curves(
        all_epochs, [r.get("train_accuracy") for r in history], [r.get("val_accuracy") for r in history],
        [r.get("zeta_over_o_hard", r.get("zeta_over_o")) for r in history],
    )
    keys = ("accuracy", "complexity", "budget", "zeta_over_o", "projected", "params", "macs", "epochs", "seconds")
    summary = {k: result.get(k) for k in keys if k in result}
    return ReportData(title or "DGConv search", summary, groups, GateDynamics(epochs, dyn_groups, dyn_gates), curves)


def _figures(data: ReportData) -> list[Any]:
    import plotly.graph_objects as go

    figs = []
    g = data.groups
    fig = go.Figure(go.Bar(x=list(range(len(g.groups))), y=g.groups, text=g.groups, hovertext=g.labels,
                           name="learned groups"))
    if any(g.max_groups):
        fig.add_trace(go.Scatter(x=list(range(len(g.groups))), y=g.max_groups, mode="markers", name="max groups"))
    fig.update_layout(title="Learned number of groups per DGConv layer (cf. Fig. 5)", yaxis_type="log",
                      xaxis=dict(title="DGConv layer, input to output (C_out)", tickmode="array",
                                 tickvals=list(range(len(g.groups))), ticktext=[str(c) for c in g.channels]),
                      yaxis_title="groups")
    figs.append(fig)
    d = data.dynamics
    fig = go.Figure()
    for li, series in enumerate(d.groups):
        fig.add_trace(go.Scatter(x=d.epochs, y=series, mode="lines+markers", name=g.labels[li] if li < len(g.labels)
                                 else f"layer {li}"))
    fig.update_layout(title="Group number during training (cf. Fig. 6a)", xaxis_title="epoch", yaxis_title="groups",
                      yaxis_type="log")
    figs.append(fig)
    fig = go.Figure()
    for li, layer in enumerate(d.gates):
        for k, series in enumerate(layer):
            fig.add_trace(go.Scatter(x=d.epochs, y=series, mode="lines", name=f"L{li} g{k + 1}",
                                     legendgroup=f"L{li}"))
    fig.update_layout(title="Gate values g̃ during training (cf. Fig. 6b); g = 1[g̃ ≥ 0]", xaxis_title="epoch",
                      yaxis_title="g̃")
    figs.append(fig)
    c = data.curves
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=c.epochs, y=c.train_accuracy, name="train accuracy"))
    fig.add_trace(go.Scatter(x=c.epochs, y=c.val_accuracy, name="val accuracy"))
    fig.add_trace(go.Scatter(x=c.epochs, y=c.zeta_over_o, name="ζ/o (hard gates)", yaxis="y2"))
    fig.update_layout(title="Accuracy and ζ/o", xaxis_title="epoch", yaxis=dict(title="accuracy"),
                      yaxis2=dict(title="ζ/o", overlaying="y", side="right"))
    fig.add_hline(y=1.0, line_dash="dot", yref="y2")
    figs.append(fig)
    return figs


def write_report(path: str | Path, history: Sequence[Mapping[str, Any]], result: Mapping[str, Any],
                 title: str = "") -> Path:
    """Write the self-contained HTML report (plotly.js inlined once: works offline)."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        raise ImportError("the report needs plotly: pip install 'mgnas[viz]'") from None
    data = report_data(history, result, title)
    figs = _figures(data)
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in data.summary.items())
    parts = [f"<html><head><meta charset='utf-8'><title>{data.title}</title></head><body>",
             f"<h1>{data.title}</h1><table>{rows}</table>"]
    for i, fig in enumerate(figs):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    parts.append("</body></html>")
    out = Path(path)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
