"""Search with the exact sparse DGConv (issue 9 §2): budget and accuracy, gate gradients equal to the masked
run's, DDP, what result.json and the spec record, and ``--device`` for ``mgnas search`` / ``mgnas train``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from mgnas.strategies.differentiable import DifferentiableSearch, SearchConfig

import mgnas.cli as cli
from mgnas.config import load_config
from mgnas.train.distributed import resolve_device

FAST = ["--space", "resnet20_groups", "--data", "digits", "--no-progress"]


def _result(out: Path) -> dict:
    return json.loads((out / "result.json").read_text())


def test_sparse_search_meets_the_budget_and_the_accuracy_bar(digits_b4_search):
    # `search --space resnet20_groups --data digits --budget b=4 --epochs 6 --dgconv-impl sparse --device cpu`
    # (hinge, the default penalty): conftest.py runs it once for this and test_cli_search.py
    out = digits_b4_search
    r = _result(out)
    assert r["test_accuracy"] >= 0.95  # the masked run's bar (test_cli_search.py)
    assert r["complexity"] <= r["budget"] and r["zeta_over_o"] <= 1.0 and r["within_budget"]
    assert r["dgconv_impl"] == "sparse" and r["device"] == "cpu"
    spec = json.loads((out / "spec.json").read_text())
    assert spec["provenance"]["supernet_impl"] == "sparse" and "dgconv" not in (out / "spec.json").read_text()
    assert yaml.safe_load((out / "config.yaml").read_text())["dgconv_impl"] == "sparse"


def test_masked_is_recorded_and_a_run_resumes_with_the_other_impl(tmp_path):
    out = tmp_path / "masked"
    args = ["search", *FAST, "--budget", "b=8", "--epochs", "1", "--out", str(out)]
    assert cli.main([*args, "--dgconv-impl", "masked"]) == 0
    assert _result(out)["dgconv_impl"] == "masked"
    assert json.loads((out / "spec.json").read_text())["provenance"]["supernet_impl"] == "masked"
    metrics = json.loads((out / "spec.json").read_text())["metrics"]
    # same computation, so not part of the run's identity: resuming with sparse is allowed and changes nothing
    assert cli.main([*args, "--dgconv-impl", "sparse", "--resume"]) == 0
    assert _result(out)["dgconv_impl"] == "sparse"
    assert json.loads((out / "spec.json").read_text())["metrics"] == metrics


def test_config_key_and_validation():
    assert SearchConfig().dgconv_impl == "sparse" and SearchConfig().device == "auto"
    assert load_config(SearchConfig, None, {"dgconv_impl": "masked"}).dgconv_impl == "masked"
    with pytest.raises(ValueError, match="dgconv_impl"):
        SearchConfig(dgconv_impl="dense")
    with pytest.raises(ValueError, match="device"):
        SearchConfig(device="gpu")


def _search(impl: str) -> DifferentiableSearch:
    cfg = load_config(SearchConfig, None, {"budget": "b=4", "dgconv_impl": impl, "gate_lr": 0.5, "device": "cpu",
                                           "train.epochs": 1, "train.batch_size": 64})
    return DifferentiableSearch(cfg, None, progress=False)


def _rel_close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4) -> bool:
    return float((a - b).abs().max()) <= rtol * max(float(b.abs().max()), 1e-12)


def test_gate_gradients_equal_the_masked_runs_over_the_first_steps():
    masked, sparse = _search("masked"), _search("sparse")
    assert {m.impl for m in masked.budget.layers} == {"masked"}
    assert {m.impl for m in sparse.budget.layers} == {"sparse"}
    for a, b in zip(masked.model.state_dict().values(), sparse.model.state_dict().values()):
        assert torch.equal(a, b)  # same seed: same weights and gate signs
    optimizer = torch.optim.SGD(masked.param_groups(), lr=0.05, momentum=0.9)
    masked.model.train()
    sparse.model.train()
    masked.data.set_epoch(0)
    patterns = []
    for step, (x, y) in enumerate(masked.data.train):
        if step == 5:
            break
        patterns.append([m.gate_pattern() for m in masked.budget.layers])
        sparse.lam = masked.lam
        optimizer.zero_grad(set_to_none=True)
        sparse.model.zero_grad(set_to_none=True)
        loss_m, _ = masked.loss_fn(masked.model, x, y)
        loss_s, _ = sparse.loss_fn(sparse.model, x, y)
        loss_m.backward()
        loss_s.backward()
        assert _rel_close(loss_s.detach(), loss_m.detach(), 1e-5)
        for lm, ls in zip(masked.budget.layers, sparse.budget.layers):
            assert ls.gate_pattern() == lm.gate_pattern()
            assert _rel_close(ls.gates.grad, lm.gates.grad), (step, lm.gates.grad, ls.gates.grad)
            assert _rel_close(ls.weight.grad, lm.weight.grad), step
        optimizer.step()
        # the sparse model continues from exactly the masked model's state: every step compares equal inputs
        sparse.model.load_state_dict(masked.model.state_dict())
    assert len(patterns) == 5 and any(p != patterns[0] for p in patterns[1:])  # hard gates flipped on the way


def test_ddp_two_gloo_processes_keep_sparse_gates_identical(tmp_path):
    worker = Path(__file__).with_name("_ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(worker.parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "--monitor-interval=0.1", str(worker), str(tmp_path / "ddp"), "--search", "sparse", "--epochs", "1"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    assert proc.stdout.count("-> OK") == 2 and "impl ['sparse']" in proc.stdout, proc.stdout
    r = _result(tmp_path / "ddp")
    assert r["dgconv_impl"] == "sparse" and r["device"] == "cpu"


# --------------------------------------------------------------------------- --device
@pytest.mark.parametrize("command", ["search", "train"])
@pytest.mark.parametrize("device, words", [("tpu", "unknown device 'tpu'"), ("cuda:x", "unknown device"),
                                           ("cpu:0", "unknown device"), ("cuda", "needs CUDA"),
                                           ("cuda:1", "needs CUDA")])
def test_bad_or_unavailable_device_exits_2_with_one_line(tmp_path, capsys, monkeypatch, command, device, words):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "never"
    what = ["--space", "resnet20_groups"] if command == "search" else ["--model", "resnet20_cifar"]
    assert cli.main([command, *what, "--data", "digits", "--epochs", "1", "--out", str(out), "--no-progress",
                     "--device", device]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and "--device" in err[0], err
    assert not out.exists()


def test_device_from_a_config_file_is_checked_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("space: resnet20_groups\ndata: digits\ndevice: cuda\n")
    out = tmp_path / "never"
    assert cli.main(["search", "--config", str(cfg), "--epochs", "1", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs CUDA" in err[0]
    assert not out.exists()


def test_train_records_its_device(tmp_path):
    out = tmp_path / "train"
    assert cli.main(["train", "--model", "resnet20_cifar", "--data", "digits", "--epochs", "1", "--out", str(out),
                     "--no-progress", "--device", "cpu"]) == 0
    assert _result(out)["device"] == "cpu"


def test_resolve_device(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == resolve_device("auto") == resolve_device(" CPU ") == torch.device("cpu")
    # a machine with 2 GPUs (nothing here touches a real GPU)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 0)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)  # a single process: the explicit device wins
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="does not exist: 2 GPU"):
        resolve_device("cuda:2")
    # under torchrun with 2 processes, each takes cuda:LOCAL_RANK; one named GPU for all of them is refused
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("cuda:1") == resolve_device(torch.device("cuda", 1)) == torch.device("cuda", 1)
    with pytest.raises(ValueError, match="torchrun started 2 processes"):
        resolve_device("cuda:0")
