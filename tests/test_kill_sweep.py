"""A kill at ANY moment is resumable (issue 11, class 2).

A tiny digits ``mgnas search`` subprocess is SIGKILLed at moments spread over its whole life: during the
imports, before its output directory exists, before the first checkpoint, between checkpoints, while it writes
its results. Each time ``mgnas search ... --resume`` finishes the run; the final ``spec.json`` must equal an
uninterrupted run's byte for byte (same seed), and no temporary file may remain.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import mgnas.cli as cli

ARGS = ["search", "--space", "resnet20_groups", "--data", "digits", "--epochs", "3", "--batch-size", "256",
        "--budget", "b=4", "--seed", "0", "--no-progress"]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch):
    """The killed part runs with one thread (OMP_NUM_THREADS=1); the resumed part must compute the same
    (MGNAS_THREADS=1: the in-process CLI sizes its threads by mgnas.runtime's policy, which reads it first)."""
    monkeypatch.setenv("MGNAS_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _start(out: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "mgnas", *ARGS, "--out", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _temps(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob("*") if ".tmp" in p.name) if out.exists() else []


def _state(out: Path) -> str:
    if not out.exists():
        return "no directory"
    names = {p.name for p in out.iterdir()}
    if "result.json" in names:
        return "finished"
    if "checkpoint.pt" in names:
        return "checkpointed"
    return "started" if names else "empty"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run (a subprocess, as the killed ones) and how long it took."""
    out = tmp_path_factory.mktemp("kill") / "full"
    t0 = time.monotonic()
    proc = _start(out)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-2000:]
    return out, time.monotonic() - t0


def _kill_and_resume(tmp_path: Path, reference, fraction: float) -> str:
    full, seconds = reference
    out = tmp_path / f"k{fraction:.2f}"
    proc = _start(out)
    time.sleep(max(0.5, fraction * seconds))
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # reaped: a killed writer's temporary files belong to a dead process
    state = _state(out)
    assert cli.main([*ARGS, "--out", str(out), "--resume"]) == 0, f"--resume failed after a kill ({state})"
    assert (out / "spec.json").read_bytes() == (full / "spec.json").read_bytes(), f"spec differs ({state})"
    assert (out / "weights.pt").is_file() and (out / "report.html").is_file()
    assert _temps(out) == [], f"temporary files left ({state})"
    return state


def test_kill_sweep(tmp_path, reference, capsys):
    states = [_kill_and_resume(tmp_path, reference, f) for f in (0.0, 0.3, 0.5, 0.65, 0.8, 0.95)]
    capsys.readouterr()
    # the sweep hit the moments that matter: before any checkpoint and after at least one
    assert any(s in ("no directory", "empty", "started") for s in states), states
    assert any(s in ("checkpointed", "finished") for s in states), states


@pytest.mark.slow
def test_kill_sweep_dense(tmp_path, reference, capsys):
    for i in range(1, 20):
        _kill_and_resume(tmp_path, reference, i / 20)
    capsys.readouterr()


def test_resume_of_a_run_that_never_checkpointed(tmp_path, reference, capsys):
    """The state a kill before the first checkpoint leaves: config.yaml, a marker and a 0-byte temp file."""
    from mgnas._rundir import claim_dir

    full, _ = reference
    out = claim_dir(tmp_path / "early", "search")
    (out / "config.yaml").write_text("train: {epochs: 3}\n")
    (out / ".checkpoint.pt.tmp999999999").write_bytes(b"")
    (out / ".history.jsonl.tmp999999999").write_text("{}")
    assert cli.main([*ARGS, "--out", str(out), "--resume"]) == 0
    assert "starting the run from the beginning" in capsys.readouterr().out
    assert (out / "spec.json").read_bytes() == (full / "spec.json").read_bytes()
    assert _temps(out) == []
    # a rerun without --resume is refused with the reason, --resume on a finished run just re-finishes it
    assert cli.main([*ARGS, "--out", str(out)]) == 2
    assert "pass --resume" in capsys.readouterr().err


def test_export_accepts_the_searchs_supernet_checkpoint(tmp_path, reference, capsys):
    """``export --checkpoint`` takes what ``train --init-from`` takes (issue 11, class 9): one loader for both."""
    full, _ = reference
    assert not __import__("json").loads((full / "result.json").read_text())["projected"]
    outputs = {}
    for name in ("checkpoint.pt", "weights.pt"):
        target = tmp_path / f"{name}.pt2"
        assert cli.main(["export", str(full / "spec.json"), "--checkpoint", str(full / name), "--format", "pt2",
                         "--out", str(target), "--check"]) == 0, capsys.readouterr().err
        with open(target, "rb") as f:
            program = torch.export.load(f).module()
        outputs[name] = program(torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(outputs["checkpoint.pt"], outputs["weights.pt"])
