"""``mgnas.train.retrain``: the library function behind ``mgnas train`` (issue 12 §6)."""

from __future__ import annotations

import json

import pytest
import torch

import mgnas
from mgnas.models import build_model, model_spec
from mgnas.spec import load
from mgnas.train import RetrainResult, TrainConfig, load_static_weights, retrain


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    out = tmp_path_factory.mktemp("retrain") / "scratch"
    run = retrain(model_spec("resnet20_cifar"), "digits", TrainConfig(epochs=1, batch_size=128), out,
                  progress=False)
    return run, out


def test_retrain_from_scratch_writes_and_returns_the_run(scratch):
    run, out = scratch
    assert isinstance(run, RetrainResult) and run.out_dir == out
    for name in ("result.json", "spec.json", "config.yaml", "checkpoint.pt", "history.jsonl"):
        assert (out / name).is_file(), name
    result = json.loads((out / "result.json").read_text())
    assert result == run.result
    assert result["epochs"] == 1 and 0.0 <= result["accuracy"] <= 1.0 and result["init_from"] is None
    trained = load(out / "spec.json")
    assert trained.input_size == (1, 8, 8) and trained.num_classes == 10  # adapted to digits
    assert trained.metrics["params"] == result["params"] == sum(p.numel() for p in run.model.parameters())
    assert trained.provenance["retrained_on"] == "digits"


def test_load_static_weights_from_a_checkpoint_and_a_state_dict(scratch):
    run, out = scratch
    model = build_model(run.spec)
    load_static_weights(model, out / "checkpoint.pt")
    for key, value in run.model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value.cpu()), key
    other = build_model(run.spec)
    load_static_weights(other, run.model.state_dict())
    assert torch.equal(other.state_dict()["head.fc.weight"], model.state_dict()["head.fc.weight"])


def test_retrain_init_from_records_it_and_starts_from_the_weights(scratch, tmp_path):
    run, out = scratch
    fine = retrain(run.spec, "digits", TrainConfig(epochs=1, batch_size=128, lr=1e-9, weight_decay=0.0),
                   tmp_path / "ft", init_from=out / "checkpoint.pt", progress=False)
    assert fine.result["init_from"] == str(out / "checkpoint.pt")
    assert fine.spec.provenance["retrain_init_from"] == str(out / "checkpoint.pt")
    # a vanishing lr keeps the weights where init_from put them (BN running stats do move)
    w0, w1 = run.model.state_dict()["head.fc.weight"], fine.model.state_dict()["head.fc.weight"]
    assert torch.allclose(w0.cpu(), w1.cpu(), atol=1e-6)


def test_a_mismatch_and_a_supernet_checkpoint_are_value_errors(scratch):
    run, _ = scratch
    model = build_model(run.spec)
    state = dict(model.state_dict())
    state.pop("head.fc.bias")
    with pytest.raises(ValueError, match="missing tensor 'head.fc.bias'"):
        load_static_weights(model, state)
    with pytest.raises(ValueError, match="load_weights_for_spec"):
        load_static_weights(model, {**model.state_dict(), "stages.0.0.conv1.gates": torch.zeros(4)})
    with pytest.raises(ValueError, match="resume"):
        retrain(run.spec, "digits", TrainConfig(epochs=1), None, init_from=model.state_dict(), resume=True)


def test_public_names_are_reachable_from_import_mgnas():
    assert mgnas.train.retrain is retrain
    assert callable(mgnas.strategies.load_weights_for_spec)
    assert callable(mgnas.export.load_state_dict) and callable(mgnas.export.to_static)


def test_import_mgnas_is_lazy_and_gives_the_subpackages():
    import subprocess
    import sys

    code = ("import sys, mgnas; heavy = [m for m in ('torch', 'torchvision', 'optuna', 'plotly') if m in sys.modules]; "
            "assert not heavy, heavy; mgnas.export.to_static; mgnas.profile.count; mgnas.data.load_data; "
            "mgnas.train.retrain; mgnas.search_spaces.get_space; mgnas.strategies.freeze; "
            "assert 'torchvision' not in sys.modules and 'optuna' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_cli_modules_import_no_private_module_of_another_package():
    import re
    from pathlib import Path

    cli_dir = Path(mgnas.__file__).parent / "cli"
    private = re.compile(r"^\s*from (mgnas\.[\w.]*\._\w+|\.\.\w+(\.\w+)*\._\w+) import", re.M)
    hits = [f"{p.name}: {m.group(0).strip()}" for p in sorted(cli_dir.glob("*.py"))
            for m in private.finditer(p.read_text(encoding="utf-8"))]
    assert not hits, hits
