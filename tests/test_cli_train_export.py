"""``mgnas train`` and ``mgnas export`` end to end: a tiny search's spec retrains and exports with --check;
bad input is one line with exit code 2; a failed check is exit code 1 (issue 5, deliverables 3-4)."""

from __future__ import annotations

import json

import pytest
import torch

import mgnas.cli as cli
from mgnas.cli._export import ExportCommand
from mgnas.cli._search import SearchCommand
from mgnas.cli._train import TrainCommand, _init_from
from mgnas.models import adapt_spec, build_model
from mgnas.spec import load

pytestmark = pytest.mark.export


@pytest.fixture(autouse=True)
def _commands(monkeypatch):
    """Register the commands under test (a no-op once the lead adds them to ``mgnas.cli.COMMANDS``)."""
    names = {c.name for c in cli.COMMANDS}
    extra = [c for c in (SearchCommand(), ExportCommand(), TrainCommand()) if c.name not in names]
    monkeypatch.setattr(cli, "COMMANDS", [*cli.COMMANDS, *extra])


@pytest.fixture(scope="module")
def search_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "run"
    names = {c.name for c in cli.COMMANDS}
    commands = [*cli.COMMANDS, *(c for c in (SearchCommand(),) if c.name not in names)]
    saved, cli.COMMANDS = cli.COMMANDS, commands
    try:
        assert cli.main(["search", "--space", "resnet20_groups", "--data", "digits", "--epochs", "1", "--budget", "b=4",
                         "--batch-size", "128", "--out", str(out), "--no-progress"]) == 0
    finally:
        cli.COMMANDS = saved
    return out


@pytest.fixture(scope="module")
def trained_dir(search_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    names = {c.name for c in cli.COMMANDS}
    saved = cli.COMMANDS
    cli.COMMANDS = [*saved, *(c for c in (TrainCommand(),) if c.name not in names)]
    try:
        assert cli.main(["train", "--spec", str(search_dir / "spec.json"), "--data", "digits", "--epochs", "1",
                         "--batch-size", "128", "--out", str(out), "--no-progress"]) == 0
    finally:
        cli.COMMANDS = saved
    return out


def _one_line_error(capsys, code: int, argv: list[str], expect: str) -> None:
    assert cli.main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert expect in err, err


def test_train_writes_a_run(search_dir, trained_dir):
    for name in ("result.json", "checkpoint.pt", "history.jsonl", "config.yaml", "spec.json"):
        assert (trained_dir / name).is_file(), name
    result = json.loads((trained_dir / "result.json").read_text())
    assert set(result) >= {"accuracy", "params", "macs", "epochs", "seconds"}
    assert result["epochs"] == 1 and 0.0 <= result["accuracy"] <= 1.0
    trained = load(trained_dir / "spec.json")
    searched = load(search_dir / "spec.json")
    assert [c.to_dict() for _, c in trained.convs()] == [c.to_dict() for _, c in searched.convs()]
    assert trained.metrics["params"] == result["params"] == searched.metrics["params"]
    assert trained.metrics["macs"] == searched.metrics["macs"]
    ckpt = torch.load(trained_dir / "checkpoint.pt", weights_only=True)
    build_model(trained).load_state_dict(ckpt["model"])


def test_export_trained_with_check(trained_dir, tmp_path, capsys):
    out = tmp_path / "net.onnx"
    assert cli.main(["export", str(trained_dir / "spec.json"), "--checkpoint", str(trained_dir / "checkpoint.pt"),
                     "--format", "onnx", "--out", str(out), "--check"]) == 0
    manifest = json.loads((tmp_path / "net.onnx.manifest.json").read_text())
    assert manifest["check"]["passed"] and manifest["spec_hash"] == load(trained_dir / "spec.json").content_hash()
    assert "check passed" in capsys.readouterr().out


def test_refuses_to_overwrite_then_resumes(search_dir, trained_dir, capsys):
    argv = ["train", "--spec", str(search_dir / "spec.json"), "--data", "digits", "--epochs", "1", "--batch-size",
            "128", "--out", str(trained_dir), "--no-progress"]
    before = (trained_dir / "checkpoint.pt").read_bytes()
    _one_line_error(capsys, 2, argv, "already holds a run")
    assert (trained_dir / "checkpoint.pt").read_bytes() == before
    _one_line_error(capsys, 2, [*argv[:6], "3", *argv[7:], "--resume"], "another training config")
    assert cli.main([*argv, "--resume"]) == 0  # the run is complete: resuming it trains nothing more
    assert len((trained_dir / "history.jsonl").read_text().splitlines()) == 1
    assert json.loads((trained_dir / "result.json").read_text())["epochs"] == 1


def test_init_from_weights_and_supernet(search_dir):
    spec = load(search_dir / "spec.json")
    spec = adapt_spec(spec, in_channels=1, num_classes=10, input_size=tuple(spec.input_size))
    static = torch.load(search_dir / "weights.pt", weights_only=True)
    model = build_model(spec)
    _init_from(model, spec, str(search_dir / "weights.pt"))
    assert all(torch.equal(v, static[k]) for k, v in model.state_dict().items())
    if json.loads((search_dir / "result.json").read_text())["projection_flips"]:
        pytest.skip("the search projected its gates after the last checkpoint")
    model = build_model(spec)
    _init_from(model, spec, str(search_dir / "checkpoint.pt"))  # the supernet, frozen with its gates
    for key, value in model.state_dict().items():
        assert torch.allclose(value.float(), static[key].float()), key


def test_export_bad_input(search_dir, tmp_path, capsys):
    spec = str(search_dir / "spec.json")
    bad = tmp_path / "bad.json"
    data = json.loads((search_dir / "spec.json").read_text())
    data["stages"][0]["blocks"][0]["conv1"]["groups"] = 5
    bad.write_text(json.dumps(data))
    out = str(tmp_path / "m.onnx")
    _one_line_error(capsys, 2, ["export", str(bad), "--format", "onnx", "--out", out], "groups")
    _one_line_error(capsys, 2, ["export", spec, "--format", "tflite", "--out", out], "unknown format 'tflite'")
    _one_line_error(capsys, 2, ["export", spec, "--format", "onnx", "--out", str(tmp_path / "no" / "m.onnx")],
                    "does not exist")
    state = torch.load(search_dir / "weights.pt", weights_only=True)
    first = next(iter(state))
    state[first] = torch.zeros(3)
    torch.save(state, tmp_path / "w.pt")
    _one_line_error(capsys, 2, ["export", spec, "--checkpoint", str(tmp_path / "w.pt"), "--format", "onnx",
                                "--out", out], f"tensor '{first}' has shape [3]")
    if not json.loads((search_dir / "result.json").read_text())["projection_flips"]:  # issue 11: the loader of
        assert cli.main(["export", spec, "--checkpoint", str(search_dir / "checkpoint.pt"), "--format", "pt2",
                         "--out", str(tmp_path / "m.pt2")]) == 0  # --init-from takes the supernet checkpoint too
    _one_line_error(capsys, 2, ["train", "--spec", spec, "--model", "resnet20_cifar", "--data", "digits",
                                "--out", str(tmp_path / "t")], "exactly one of --spec")


def test_failed_check_exits_1(tmp_path, capsys, monkeypatch):
    from mgnas.export import _export

    monkeypatch.setattr(_export, "TOLERANCE", -1.0)
    _one_line_error(capsys, 1, ["export", "mgnet_cifar", "--format", "torchscript", "--out",
                                str(tmp_path / "m.ts"), "--check", "--random-init"], "check failed")
