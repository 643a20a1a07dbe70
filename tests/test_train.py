"""Training engine: checkpoints, bit-identical resume, NaN guard, parameter groups, schedule, DDP, progress."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _ddp_worker import TinyNet, make_bundle

from mgnas.train import ResumeError, TrainConfig, Trainer, TrainingDiverged
from mgnas.train.engine import TIMING_FIELDS, build_optimizer
from mgnas.train.schedule import lr_factor

STEPS = 6  # 96 training samples / batch 16


def _trainer(out, *, epochs=4, seed=0, model_seed=0, loss_fn=None, identity=None, extra=None, **cfg):
    torch.manual_seed(model_seed)
    model = TinyNet()
    config = TrainConfig(epochs=epochs, lr=0.05, warmup_epochs=1, seed=seed, **cfg)
    state = extra if extra is not None else {}
    gates = [model.gates]
    weights = [p for n, p in model.named_parameters() if n != "gates"]
    return Trainer(model, config, make_bundle(seed=seed), out, loss_fn=loss_fn, identity=identity, progress=False,
                   param_groups=[{"params": weights}, {"params": gates, "lr": 0.01, "weight_decay": 0.0}],
                   on_epoch_end=lambda epoch, row: {"gates": model.gates.detach(), "epoch_seen": epoch},
                   extra_state=lambda: {"lam": torch.tensor([state.get("lam", 0.0)], dtype=torch.float64),
                                        "calls": state.get("calls", 0)},
                   load_extra_state=lambda d: state.update(lam=float(d["lam"][0]), calls=d["calls"], loaded=True))


def _counting_loss(state, stop_at=None, nan_at=None):
    def loss_fn(model, x, y):
        state["calls"] = state.get("calls", 0) + 1
        if stop_at is not None and state["calls"] == stop_at:
            raise KeyboardInterrupt  # a killed process: the step never happened
        loss = F.cross_entropy(model(x), y)
        state["lam"] = state.get("lam", 0.0) + 0.5 * float(loss.detach())
        if nan_at is not None and state["calls"] == nan_at:
            loss = loss * float("nan")
        return loss, {"lam": state["lam"]}
    return loss_fn


def _untimed(history):
    return [{k: v for k, v in row.items() if k not in TIMING_FIELDS} for row in history]


def test_fit_writes_checkpoint_and_history(tmp_path):
    trainer = _trainer(tmp_path, epochs=2)
    metrics = trainer.fit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "history.jsonl"]  # no temp files left
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 2 and set(ckpt) >= {"model", "optimizer", "schedule", "rng", "history", "identity", "extra"}
    assert ckpt["extra"]["lam"].shape == (1,)
    rows = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "images_per_s", "seconds",
                "gates", "epoch_seen"):
        assert key in rows[0], key
    assert len(rows[1]["gates"]) == 8 and rows[1]["epoch_seen"] == 2
    assert metrics["epochs"] == 2 and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert metrics["val_accuracy"] == rows[-1]["val_accuracy"] and metrics["seconds"] > 0
    assert trainer.evaluate(trainer.data.val)["accuracy"] == pytest.approx(rows[-1]["val_accuracy"])


def test_training_learns(tmp_path):
    torch.manual_seed(0)
    data = make_bundle(n_train=256, batch_size=32)
    trainer = Trainer(TinyNet(), TrainConfig(epochs=8, lr=0.1, weight_decay=0.0), data, None, progress=False)
    metrics = trainer.fit()
    assert trainer.history[-1]["train_loss"] < 0.8 * trainer.history[0]["train_loss"]
    assert metrics["val_accuracy"] > 0.4  # 4 classes: chance is 0.25


def test_resume_is_bit_identical(tmp_path):
    full_state: dict = {}
    full = _trainer(tmp_path / "full", loss_fn=_counting_loss(full_state), extra=full_state)
    full.fit()

    part_state: dict = {}
    interrupted = _trainer(tmp_path / "part", loss_fn=_counting_loss(part_state, stop_at=2 * STEPS + 1),
                           extra=part_state)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    assert torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["epoch"] == 2

    new_state: dict = {}  # a fresh process: other init weights, other RNG state, empty strategy state
    torch.manual_seed(123)
    resumed = _trainer(tmp_path / "part", model_seed=99, loss_fn=_counting_loss(new_state), extra=new_state)
    resumed.fit(resume=True)
    assert new_state["loaded"] and new_state["calls"] == full_state["calls"] == 4 * STEPS
    assert new_state["lam"] == full_state["lam"]
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert _untimed(resumed.history) == _untimed(full.history)
    lines = (tmp_path / "part" / "history.jsonl").read_text().splitlines()
    assert _untimed([json.loads(x) for x in lines]) == _untimed(full.history)


def test_resume_refuses_other_identity_and_config(tmp_path):
    _trainer(tmp_path, epochs=1, identity={"spec_hash": "abc"}).fit()
    with pytest.raises(ResumeError, match="spec_hash: checkpoint 'abc', now 'def'"):
        _trainer(tmp_path, epochs=1, identity={"spec_hash": "def"}).fit(resume=True)
    with pytest.raises(ResumeError, match="label_smoothing"):
        _trainer(tmp_path, epochs=1, identity={"spec_hash": "abc"}, label_smoothing=0.1).fit(resume=True)
    # a run that is already complete resumes to its final metrics
    metrics = _trainer(tmp_path, epochs=1, identity={"spec_hash": "abc"}, workers=2).fit(resume=True)
    assert metrics["epochs"] == 1


def test_resume_missing_or_corrupt_checkpoint(tmp_path):
    # a run killed before its first checkpoint starts from the beginning, as an uninterrupted run (issue 11)
    fresh, resumed = _trainer(tmp_path / "a", epochs=1), _trainer(tmp_path / "b", epochs=1)
    fresh.fit()
    assert resumed.fit(resume=True)["epochs"] == 1
    assert _untimed(resumed.history) == _untimed(fresh.history)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ResumeError, match="corrupt"):
        _trainer(tmp_path, epochs=1).fit(resume=True)
    with pytest.raises(ResumeError, match="output directory"):
        _trainer(None, epochs=1).fit(resume=True)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    state: dict = {}
    trainer = _trainer(tmp_path, epochs=3, loss_fn=_counting_loss(state, nan_at=STEPS + 3), extra=state)
    with pytest.raises(TrainingDiverged, match=r"loss is nan at epoch 2, step 3/6 .*epoch 1\) is kept"):
        trainer.fit()
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 1


def test_param_groups_keep_their_own_lr_and_weight_decay(tmp_path):
    trainer = _trainer(None, epochs=2)
    trainer.fit()
    weights, gates = trainer.optimizer.param_groups
    factor = lr_factor(2 * STEPS - 1, STEPS, trainer.config)
    assert weights["lr"] == pytest.approx(0.05 * factor) and gates["lr"] == pytest.approx(0.01 * factor)
    assert weights["weight_decay"] == 5e-4 and gates["weight_decay"] == 0.0
    assert gates["params"][0] is trainer.model.gates
    assert trainer.history[0]["lr_groups"][1] == pytest.approx(0.2 * trainer.history[0]["lr_groups"][0])


def test_build_optimizer_checks_groups():
    model, other = TinyNet(), TinyNet()
    cfg = TrainConfig(optimizer="adamw", lr=1e-3)
    opt = build_optimizer(model, cfg, [{"params": [model.gates], "lr": 0.1}])
    assert isinstance(opt, torch.optim.AdamW) and len(opt.param_groups) == 2  # the rest get the defaults
    assert opt.param_groups[1]["lr"] == 1e-3
    with pytest.raises(ValueError, match="not a parameter of the model"):
        build_optimizer(model, cfg, [{"params": [other.gates]}])
    with pytest.raises(ValueError, match="repeats"):
        build_optimizer(model, cfg, [{"params": [model.gates]}, {"params": [model.gates]}])


def test_lr_factor_warmup_cosine_step():
    cfg = TrainConfig(epochs=10, warmup_epochs=2)
    assert lr_factor(0, 10, cfg) == pytest.approx(0.05) and lr_factor(19, 10, cfg) == 1.0
    assert lr_factor(20, 10, cfg) == 1.0 and lr_factor(60, 10, cfg) == pytest.approx(0.5)
    assert lr_factor(99, 10, cfg) < 1e-3
    step = TrainConfig(epochs=10, schedule="step", step_milestones=(3, 6), step_gamma=0.5)
    assert [lr_factor(s, 10, step) for s in (29, 30, 59, 60)] == [1.0, 0.5, 0.5, 0.25]
    assert lr_factor(50, 10, TrainConfig(schedule="constant")) == 1.0


def test_adamw_bf16_channels_last_clip_and_real_model(tmp_path):
    from mgnas.models import adapt_spec, build_model, model_spec

    torch.manual_seed(0)
    spec = adapt_spec(model_spec("resnet20_cifar"), in_channels=1, num_classes=4, input_size=(1, 8, 8))
    config = TrainConfig(epochs=1, optimizer="adamw", lr=1e-3, amp="bf16", channels_last=True, grad_clip=1.0,
                         schedule="step", step_milestones=(1,), label_smoothing=0.1)
    metrics = Trainer(build_model(spec), config, make_bundle(n_train=32), tmp_path, progress=False).fit()
    assert 0.0 <= metrics["val_accuracy"] <= 1.0 and metrics["train_loss"] == metrics["train_loss"]  # not NaN


def test_progress_shows_loss_accuracy_speed_and_logs(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich: draw the live bar although stderr is captured
    torch.manual_seed(0)
    trainer = Trainer(TinyNet(), TrainConfig(epochs=1), make_bundle(n_train=32), None, progress=True,
                      loss_fn=lambda m, x, y: (F.cross_entropy(m(x), y), {"zeta_over_o": 1.25}))
    trainer.fit()
    err = capsys.readouterr().err
    for text in ("epoch 1/1", "loss", "acc", "img/s", "ζ/o 1.25"):
        assert text in err, text


def _torchrun(out: Path, *args: str) -> subprocess.CompletedProcess:
    worker = Path(__file__).with_name("_ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(worker.parent)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "--monitor-interval=0.1", str(worker), str(out), "--epochs", "2", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    return proc


def test_ddp_two_gloo_processes_and_resume(tmp_path):
    # 1st launch: an uninterrupted run, then a run stopped on both ranks before step 9 (6 steps per epoch)
    proc = _torchrun(tmp_path / "part", "--reference", str(tmp_path / "full"), "--interrupt-at-step", "9")
    assert proc.stdout.count("-> OK") == 4, proc.stdout  # params equal on both ranks at every step, no rank-1 writes
    assert proc.stdout.count("finished") == 2 and proc.stdout.count("interrupted") == 2
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["checkpoint.pt", "history.jsonl"]
    full = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    assert full["epoch"] == 2 and full["world_size"] == 2 and len(full["rng"]) == 2
    assert len((tmp_path / "full" / "history.jsonl").read_text().splitlines()) == 2
    assert torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    # 2nd launch: new processes resume and end exactly where the uninterrupted run ended
    proc = _torchrun(tmp_path / "part", "--resume")
    assert proc.stdout.count("-> OK") == 2, proc.stdout
    part = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    for key, value in full["model"].items():
        assert torch.equal(value, part["model"][key]), key
    assert _untimed(part["history"]) == _untimed(full["history"])
