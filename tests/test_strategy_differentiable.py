"""DGConv search pieces: budgets (Zhang et al. §3.3/§4), penalties, projection, freeze, report data."""

from __future__ import annotations

import json
import math

import pytest
import torch
from mgnas.search_spaces import get_space
from mgnas.strategies import freeze, make_budget, parse_budget
from mgnas.strategies._freeze import supernet_paths
from mgnas.strategies.differentiable import SearchConfig, hinge_penalty, paper_penalty, project

from mgnas.models import adapt_spec, build_model
from mgnas.profile import count
from mgnas.viz import report_data

SIZE = (1, 8, 8)


@pytest.fixture(scope="module")
def supernet():
    spec = adapt_spec(get_space("resnet20_groups").supernet_spec(), in_channels=1, num_classes=10, input_size=SIZE)
    dense_spec = spec.with_values({p: c.replace(kind="dense").to_dict() for p, c in spec.convs() if c.kind == "dgconv"})
    dense = count(build_model(dense_spec), SIZE, per_layer=False)
    return spec, dense


def _model(spec, seed=0):
    torch.manual_seed(seed)
    return build_model(spec)


def test_parse_budget():
    assert parse_budget("b=32") == ("b", 32.0)
    assert parse_budget("params=1.5e6") == ("params", 1.5e6)
    for bad in ("32", "x=3", "b=abc", "b=-1", "b=0"):
        with pytest.raises(ValueError):
            parse_budget(bad)


def test_b_budget_is_the_papers_o(supernet):
    spec, _ = supernet
    model = _model(spec)
    budget = make_budget("b=32", model)
    convs = [c for _, c in spec.convs() if c.kind == "dgconv"]
    assert len(budget.layers) == len(convs) == 18
    assert budget.target == pytest.approx(sum(c.in_channels * c.out_channels for c in convs) / 32)
    # all gates coupled (G = 1): ζ = Σ C_in C_out, the dense size (Eq. 8)
    for m in budget.layers:
        m.set_gates([1] * len(m.factors))
    assert budget.hard_zeta() == sum(c.in_channels * c.out_channels for c in convs)
    assert float(budget.zeta().detach()) == pytest.approx(budget.hard_zeta())
    # every layer at G = gcd: the minimum
    for m in budget.layers:
        m.set_gates([0] * len(m.factors))
    assert budget.hard_zeta() == pytest.approx(budget.minimum())


def test_zeta_is_differentiable_through_the_ste(supernet):
    spec, _ = supernet
    budget = make_budget("b=4", _model(spec))
    budget.zeta().backward()
    grads = [m.gates.grad for m in budget.layers]
    assert all(g is not None and torch.all(g > 0) for g in grads)  # more coupling -> larger ζ


def test_impossible_budget_names_the_minimum(supernet):
    spec, dense = supernet
    model = _model(spec)
    with pytest.raises(ValueError, match=r"impossible budget b=1000.*minimum.*b=44"):
        make_budget("b=1000", model)
    with pytest.raises(ValueError, match=r"impossible budget params=100.*smallest reachable params budget"):
        make_budget("params=100", model, static_params=dense.params)


@pytest.mark.parametrize("kind", ["params", "macs"])
def test_params_and_macs_budgets_are_exact_totals(supernet, kind):
    spec, dense = supernet
    model = _model(spec, seed=1)
    limit = (dense.params if kind == "params" else dense.macs) // 3
    budget = make_budget(f"{kind}={limit}", model, input_size=SIZE, static_params=dense.params,
                         static_macs=dense.macs)
    project(budget)
    assert budget.hard_zeta() <= budget.target
    frozen, _ = freeze(spec, model)
    got = count(build_model(frozen), SIZE, per_layer=False)
    total = got.params if kind == "params" else got.macs
    assert total == budget.fixed + budget.hard_zeta()  # ζ is exactly the DGConv part of the frozen total
    assert total <= limit


def test_penalties():
    ce = torch.tensor(2.0)
    zeta = torch.tensor(320.0, requires_grad=True)
    # paper: CE·(o/ζ)^α above budget, CE below; ζ/o = 32 raises the loss by only 32^0.02 ≈ 1.072 (DESIGN.md)
    assert float(paper_penalty(ce, zeta, 10.0, -0.02).detach()) == pytest.approx(2.0 * 32**0.02)
    assert float(paper_penalty(ce, torch.tensor(5.0), 10.0, -0.02)) == 2.0
    assert float(hinge_penalty(ce, zeta, 10.0, 0.5).detach()) == pytest.approx(2.0 + 0.5 * math.log(32))
    assert float(hinge_penalty(ce, torch.tensor(5.0), 10.0, 0.5)) == 2.0


def test_projection_reaches_the_budget_flipping_least_confident_gates(supernet):
    spec, _ = supernet
    model = _model(spec, seed=2)
    budget = make_budget("b=16", model)
    for i, m in enumerate(budget.layers):
        m.set_gates([1] * len(m.factors), magnitude=1.0 + i)  # layer 0 least confident
    big = budget.layers[0]
    flips = project(budget)
    assert flips > 0 and budget.hard_zeta() <= budget.target
    assert big.gate_pattern() == (0,) * len(big.factors)  # the least-confident gates went first
    assert project(budget) == 0  # idempotent


def test_freeze_is_exact_and_grouped(supernet):
    spec, _ = supernet
    model = _model(spec, seed=3)
    budget = make_budget("b=4", model)
    patterns = [[k % 2 for k in range(len(m.factors))] for m in budget.layers]  # unsorted: needs permutations
    for m, p in zip(budget.layers, patterns):
        m.set_gates(p)
    model.eval()
    frozen, state = freeze(spec, model)
    kinds = {c.kind for p, c in frozen.convs()}
    assert "dgconv" not in kinds and "group" in kinds
    assert any(c.in_perm is not None for _, c in frozen.convs())
    frozen_convs = dict(frozen.convs())
    for path, _, m in supernet_paths(spec, model):
        assert frozen_convs[path].groups == m.num_groups()
    static = build_model(frozen)
    static.load_state_dict(state)
    static.eval()
    x = torch.randn(5, *SIZE)
    with torch.no_grad():
        torch.testing.assert_close(static(x), model(x), atol=1e-5, rtol=1e-5)
    expected = sum(p.numel() for p in model.parameters()) - sum(
        m.weight.numel() + m.gates.numel() - m.weight.numel() // m.num_groups() for m in budget.layers)
    assert sum(p.numel() for p in static.parameters()) == expected


def test_search_config_validation():
    assert SearchConfig().penalty == "hinge"
    with pytest.raises(ValueError, match="penalty"):
        SearchConfig(penalty="l1")
    with pytest.raises(ValueError, match="budget"):
        SearchConfig(budget="b32")


def test_report_data_from_history():
    history = [
        {"epoch": 1, "train_accuracy": 0.5, "val_accuracy": 0.4, "zeta_over_o_hard": 2.0, "groups": [1, 2],
         "gates": [[0.1, -0.2], [-0.3]]},
        {"epoch": 2, "train_accuracy": 0.8, "val_accuracy": 0.7, "zeta_over_o_hard": 0.9, "groups": [2, 2],
         "gates": [[-0.1, -0.2], [-0.4]]},
    ]
    result = {"groups": [2, 2], "layers": [{"path": "a", "out_channels": 4, "max_groups": 4},
                                           {"path": "b", "out_channels": 2, "max_groups": 2}], "zeta_over_o": 0.9}
    data = report_data(history, result, "t")
    assert data.groups.groups == [2, 2] and data.groups.channels == [4, 2]
    assert data.dynamics.epochs == [1, 2]
    assert data.dynamics.groups == [[1, 2], [2, 2]]
    assert data.dynamics.gates[0] == [[0.1, -0.1], [-0.2, -0.2]] and data.dynamics.gates[1] == [[-0.3, -0.4]]
    assert data.curves.zeta_over_o == [2.0, 0.9] and data.curves.val_accuracy == [0.4, 0.7]
    assert data.summary["zeta_over_o"] == 0.9


def test_gate_param_group_and_warmup(tmp_path):
    from mgnas.strategies.differentiable import DifferentiableSearch

    from mgnas.config import load_config

    cfg = load_config(SearchConfig, None, {"budget": "b=8", "gate_lr": 0.05, "gate_warmup_epochs": 1,
                                           "train.epochs": 2, "train.weight_decay": 1e-3})
    search = DifferentiableSearch(cfg, tmp_path, progress=False)
    weights, gates = search.param_groups()
    assert gates["lr"] == 0.05 and gates["weight_decay"] == 0.0 and len(gates["params"]) == 18
    assert "lr" not in weights and not {id(p) for p in gates["params"]} & {id(p) for p in weights["params"]}
    before = [m.gates.detach().clone() for m in search.budget.layers]
    result = search.run()
    rows = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert rows[0]["gates"] == [b.tolist() for b in before]  # frozen during the warm-up epoch
    assert rows[1]["gates"] != rows[0]["gates"]  # trained afterwards
    assert result.result["zeta_over_o"] <= 1.0
