"""Reports people read (issue 12 §4): the plot data of report.html, pareto.html and index.html.

Compute, then draw: the tests assert on the typed data; the HTML checks only what a reader needs from the
page itself (plotly inlined for offline use, the labels, no literal backticks or ``None``).
"""

from __future__ import annotations

import json
import re

import pytest

from mgnas.viz import index_data, pareto_page_data, report_data, write_index, write_pareto_page, write_report
from mgnas.viz._pareto import RELIABLE_TRIALS, _hover

HISTORY = [
    {"epoch": 1, "train_accuracy": 0.5, "val_accuracy": 0.4, "zeta_over_o_hard": 1.5, "groups": [1, 2, 4],
     "gates": [[0.1, 0.2], [-0.3, 0.1], [-0.1, -0.2, 0.3]]},
    {"epoch": 2, "train_accuracy": 0.8, "val_accuracy": 0.7, "zeta_over_o_hard": 0.9, "groups": [2, 2, 8],
     "gates": [[-0.1, 0.2], [-0.4, 0.2], [-0.2, -0.3, -0.1]]},
]
RESULT = {
    "accuracy": 0.71234, "val_accuracy": 0.70111, "test_accuracy": 0.71234, "complexity": 6880.0, "budget": 7424.0,
    "zeta_over_o": 0.926724, "within_budget": True, "projected": False, "budget_spec": "b=4", "penalty": "hinge",
    "params": 64090, "macs": 972928, "epochs": 2, "seconds": 83.4, "groups": [2, 2, 8],
    "layers": [{"name": "stages.0.0.conv1", "in_channels": 16, "out_channels": 16, "max_groups": 16},
               {"name": "stages.0.0.conv2", "in_channels": 16, "out_channels": 16, "max_groups": 16},
               {"path": "stages[1].blocks[0].conv1", "in_channels": 16, "out_channels": 32, "max_groups": 16}],
}


def test_report_data_groups_gates_and_summary():
    data = report_data(HISTORY, RESULT, "DGConv search: resnet20_groups on digits")
    g = data.groups
    # Fig. 5: one bar per layer, named by the layer name (an old result's field path is converted)
    assert g.labels == ["stages.0.0.conv1", "stages.0.0.conv2", "stages.1.0.conv1"]
    assert g.groups == [2, 2, 8] and g.channels == [16, 16, 32] and g.max_groups == [16, 16, 16]
    # Fig. 6b as frames: [epoch][layer][gate], padded with None where a layer has fewer gates
    f = data.frames
    assert f.epochs == [1, 2] and f.gate_labels == ["g1", "g2", "g3"] and f.layers == g.labels
    assert f.values[0][0] == [0.1, 0.2, None] and f.values[1][2] == [-0.2, -0.3, -0.1]
    assert f.flips == [1, 0, 1]  # layer 0: g1 1->0; layer 2: g3 1->0
    assert data.dynamics.groups == [[1, 2], [2, 2], [4, 8]]
    assert data.curves.budget == 1.0 and data.curves.zeta_over_o == [1.5, 0.9]
    rows = dict(data.summary_rows)
    assert rows["test accuracy"] == "71.2%" and rows["ζ/o (DGConv complexity / budget)"] == "0.927, within budget"
    assert rows["parameters"] == "64,090 (64.09k)" and rows["time"] == "1 min 23 s"
    assert rows["ζ = Σ nnz(U) and budget o"] == "6,880 of 7,424"
    assert not any("None" in v for v in rows.values())


def test_report_html_is_offline_and_labelled(tmp_path):
    pytest.importorskip("plotly")
    page = write_report(tmp_path / "report.html", HISTORY, RESULT, "DGConv search").read_text()
    assert "<script src=\"http" not in page and "plotly.js" in page.lower()  # plotly.js inlined: works offline
    assert "below it is within budget" in page and "log2 axis" in page and "stages.1.0.conv1" in page
    assert '"sliders"' in page  # one frame per epoch, not tangled lines


def _trials():
    def row(n, state, values=None, **attrs):
        return {"number": n, "state": state, "values": values, "params": {"gs": n},
                "user_attrs": attrs, "feasible": attrs.pop("feasible", True)}

    return [
        row(0, "COMPLETE", [0.6, 100.0], params=100, macs=1000, val_accuracy_history=[0.4, 0.5, 0.6]),
        row(1, "COMPLETE", [0.8, 300.0], params=300, macs=2000, val_accuracy_history=[0.5, 0.7, 0.8]),
        row(2, "COMPLETE", [0.7, 400.0], params=400, macs=500, val_accuracy_history=[0.5, 0.6, 0.7]),
        row(3, "PRUNED", params=200, macs=900, val_accuracy_history=[0.3], pruned_at_epoch=1,
            pruned_reason="below the median"),
        row(4, "PRUNED", infeasible="levels 3 is deeper than the widths allow"),
        row(5, "COMPLETE", [0.9, 900.0], params=900, macs=9000, val_accuracy_history=[0.7, 0.8, 0.9],
            feasible=False),
        row(6, "RUNNING"),
        row(7, "FAIL", surplus=True),
    ]


def _page(**kw):
    args = dict(study="s", objectives=["accuracy", "params", "macs"],
                directions=["maximize", "minimize", "minimize"], front=[0, 1, 2], hv_numbers=[0, 1, 2],
                hypervolume=[1.0, 2.0, 2.5], reference_point=[0.0, 990.0, 9900.0],
                importances={"accuracy": {"gs": 1.0}}, study_attrs={"space": "mgic_resnet56", "data": "digits"},
                spec_paths={0: "front/trial_0000.json"})
    args.update(kw)
    return pareto_page_data(_trials(), **args)


def test_pareto_page_data_points_steps_and_header():
    data = _page()
    kinds = {p.number: p.kind for p in data.points}
    assert kinds == {0: "front", 1: "front", 2: "front", 3: "pruned", 4: "infeasible", 5: "violates constraint"}
    h = data.header
    assert (h.space, h.data, h.epochs_per_trial) == ("mgic_resnet56", "digits", 3)
    assert h.counts == {"complete": 4, "pruned": 1, "infeasible": 1, "failed": 0, "running": 1}
    p0 = next(p for p in data.points if p.number == 0)
    assert (p0.accuracy, p0.params, p0.macs, p0.spec_path) == (0.6, 100, 1000, "front/trial_0000.json")
    pruned = next(p for p in data.points if p.number == 3)
    assert pruned.accuracy == 0.3 and "epoch 1" in pruned.note and "median" in pruned.note
    # accuracy-vs-cost fronts (the step lines), by cost: trial 2 is beaten on params by trial 1, trial 0 on MACs by 2
    assert data.steps == {"params": [0, 1], "macs": [2, 1]}
    assert "accuracy 0" in data.reference_text and "params 990" in data.reference_text


def test_importances_are_flagged_below_twenty_trials():
    few = _page()
    assert not few.importance_reliable and "unreliable" in few.importance_note
    many = pareto_page_data([{**_trials()[0], "number": n} for n in range(RELIABLE_TRIALS)], study="s",
                            objectives=["accuracy", "params"], directions=["maximize", "minimize"], front=[0])
    assert many.importance_reliable and many.importance_note == ""


def test_pareto_html_hover_steps_and_markers(tmp_path):
    pytest.importorskip("plotly")
    data = _page()
    page = write_pareto_page(tmp_path / "pareto.html", data).read_text()
    assert '"shape":"hv"' in page.replace(" ", "")
    hover = _hover(data.points[0])  # what a point shows on hover: choices, params, MACs, accuracy, spec file
    for text in ("trial 0", "accuracy 60.0%", "params 100", "MACs 1,000", "spec: front/trial_0000.json", "gs = 0"):
        assert text in hover
    assert "trial_0000.json" in page
    for marker in ("x-thin-open", "circle-open", "diamond"):  # pruned, violating, front
        assert marker in page
    assert "UNRELIABLE" in page and "Infeasible trials (1)" in page and "epochs per trial" in page


def test_index_headings_come_from_the_run(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "result.json").write_text(json.dumps(RESULT))
    (run / "spec.json").write_text(json.dumps({"provenance": {"space": "resnet20_groups", "data": "digits",
                                                              "budget": "b=4", "penalty": "hinge"}}))
    study = tmp_path / "mgic"
    (study / "front").mkdir(parents=True)
    (study / "trials.csv").write_text("number,state\n0,COMPLETE\n1,PRUNED\n")
    (study / "pareto.json").write_text(json.dumps({"header": {"space": "mgic_resnet56", "data": "digits",
                                                              "epochs_per_trial": 3, "counts": {"infeasible": 1}}}))
    (study / "front" / "trial_0000.json").write_text(json.dumps(
        {"metrics": {"val_accuracy": 0.5, "params": 10}, "provenance": {"choices": {"levels": None, "gs": 4}}}))
    st, search = index_data(tmp_path)  # folders in name order: mgic/, run/
    assert search.title == "search: resnet20_groups on digits, budget b=4 (hinge penalty)"
    assert st.title == "study: mgic_resnet56 on digits"
    assert search.summary["parameters"] == "64,090" and search.summary["folder"] == "run/"
    assert st.summary["epochs per trial"] == "3" and "1 of them infeasible" in st.summary["trials"]
    page = write_index(tmp_path, title="runs").read_text()
    assert "`" not in page and "None" not in page and "levels=none" in page and "<code>" in page
    assert not re.search(r"<h2>[^<]*(run|mgic)/", page)  # headings are not folder names
