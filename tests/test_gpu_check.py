"""experiments/benchmarks/gpu_check.py --cpu --tiny: every section runs (so the GPU check never rots), without the
packages the GPU machine lacks (optuna, plotly), and writes its markdown and JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "benchmarks" / "gpu_check.py"

# Imported first in every Python process of the run (PYTHONPATH): the GPU machine has no optuna and no plotly.
BLOCK = '''import sys


class _Missing:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("optuna", "plotly"):
            raise ImportError(f"{name} is not installed on the GPU machine")
        return None


sys.meta_path.insert(0, _Missing())
'''


def test_cpu_tiny_runs_every_section(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCK)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(tmp_path / "site")}
    out = tmp_path / "report" / "gpu_check.md"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--cpu", "--tiny", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    sections = report["sections"]
    assert list(sections) == ["parity", "train", "data", "decode", "nccl", "compile"]
    for name, sec in sections.items():
        if name == "decode":  # torchvision 0.28's compiled image ops do not load on the CPU wheel of torch 2.13
            assert sec["status"] == "ok" or sec["status"].startswith("unavailable: torchvision's compiled image ops")
        else:
            assert sec["status"] == "ok", (name, sec)
    parity = sections["parity"]["rows"]
    assert len(parity) >= 14 and all(r["ok"] for r in parity)
    assert {r["dtype"] for r in parity} == {"fp32", "bf16"}
    assert all(r["out"] <= 1e-4 and r["dg"] <= 1e-4 for r in parity if r["dtype"] == "fp32" and "DGConv" in r["what"])
    for name, last in (("train", "sparse"), ("compile", "masked")):  # compile: the masked row last (time)
        rows = sections[name]["rows"]
        assert [(r["model"], r["impl"]) for r in rows][-1] == ("g_resnet20_cifar", last)
        assert sorted((r["model"], r["impl"]) for r in rows) == [
            ("g_resnet20_cifar", "masked"), ("g_resnet20_cifar", "sparse"), ("resnet20_cifar", "-")]
        assert all(r["images_per_s"] > 0 and r["groups_stable"] for r in rows)
        assert set(sections[name]["ratios"]) == {"masked / resnet20_cifar", "sparse / resnet20_cifar"}
    assert all(r["images_per_s"] > 0 for r in sections["data"]["rows"])
    assert sections["data"]["cores_needed"]
    smoke, search = sections["nccl"]["rows"]
    assert smoke["backend"] == "gloo" and smoke["ok"]
    assert search["ok"] and search["device"] == "cpu" and search["dgconv_impl"] == "sparse"
    text = out.read_text()
    assert text.startswith("### GPU check (cpu tiny)") and "torch " in text and "torchvision " in text
    assert "| model | impl | compile |" in text and "images/s ratios" in text
