"""docs/guide.md cannot rot: every ```bash block in it runs here at tiny sizes (issue 12 §1).

Each block is preceded by a machine-readable comment, ``<!-- test: [MODE:] "old" -> "new"; ... -->``: the
substitutions that shrink it (ImageNet -> digits, 90 epochs -> 1, 8 GPUs -> CPU), every one of which must
apply, so the guide and this test cannot drift apart. Modes:

- (none) / ``run in one process``: every command runs; ``mgnas ...`` in this process (``cli.main``), ``python
  ...`` as a subprocess; a ``torchrun ... -m mgnas`` line must have been rewritten to ``mgnas`` by a substitution;
- ``torchrun 2 processes on CPU (slow test)``: the real ``torchrun`` with two gloo processes (marked slow);
- ``server``: the command must start a server that answers HTTP (optuna-dashboard), then it is stopped;
- ``install``: checked against pyproject.toml and constraints.txt (a test cannot download CUDA wheels).

The blocks run in order in one directory (``experiments/`` linked in), so later blocks use earlier outputs.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

import mgnas.cli as cli

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide.md"
_BLOCK = re.compile(r"(?:<!-- test:(?P<directive>.*?)-->[ \t]*\n)?```bash\n(?P<body>.*?)```", re.S)
_SUB = re.compile(r'"((?:[^"\\]|\\.)*)"\s*->\s*"((?:[^"\\]|\\.)*)"')
_MODES = ("run in one process", "torchrun 2 processes on CPU (slow test)", "server", "install")


class Block:
    def __init__(self, index: int, directive: str | None, body: str) -> None:
        self.index, self.body = index, body
        self.directive = directive
        text = (directive or "").strip()
        self.mode = ""
        for mode in _MODES:
            if text.startswith(mode):
                self.mode, text = mode, text[len(mode):].lstrip(":").strip()
        self.subs = [(a, b) for a, b in _SUB.findall(text)]

    def commands(self) -> list[str]:
        """The block's commands after the substitutions, continuation lines joined, comments dropped."""
        text = self.body
        for old, new in self.subs:
            assert old in text, f"guide block {self.index}: substitution {old!r} does not apply to:\n{self.body}"
            text = text.replace(old, new)
        joined = re.sub(r"\\\n\s*", "", text)
        return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]

    def __repr__(self) -> str:
        return f"block {self.index}: {self.body.splitlines()[0][:60]}"


def _blocks() -> list[Block]:
    text = GUIDE.read_text(encoding="utf-8")
    return [Block(i, m.group("directive"), m.group("body")) for i, m in enumerate(_BLOCK.finditer(text))]


BLOCKS = _blocks()


def test_the_guide_is_linked_and_every_block_is_tested():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/guide.md" in readme and "## From the demo to the real job" in readme
    assert len(BLOCKS) >= 12
    assert GUIDE.read_text(encoding="utf-8").count("```bash") == len(BLOCKS)
    for block in BLOCKS:
        assert block.directive is not None, f"{block} has no <!-- test: ... --> comment"
        block.commands()  # every substitution applies
        for cmd in block.commands():
            if block.mode in ("install", "torchrun 2 processes on CPU (slow test)"):
                continue
            assert not cmd.startswith("torchrun"), f"{block}: a torchrun line must be rewritten: {cmd}"
    covered = " ".join(b.body for b in BLOCKS)
    for needle in ("--rdzv_backend=c10d", "--resume", "--jobs", "--devices", "--per-device", "journal:",
                   "postgresql://", "optuna-dashboard", "--init-from", "--check", "manifest.json",
                   "experiments/configs/"):
        assert needle in covered, needle


def test_install_block_matches_the_pins_and_the_extras():
    block = next(b for b in BLOCKS if b.mode == "install")
    pins = dict(line.split("==", 1) for line in (ROOT / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    extras = _extras()
    text = " ".join(block.commands())
    assert f"torch=={pins['torch']}" in text and f"torchvision=={pins['torchvision']}" in text
    assert "--index-url https://download.pytorch.org/whl/cu" in text
    install = next(c for c in block.commands() if c.startswith("pip install -c constraints.txt -e"))
    named = re.search(r'"\.\[([a-z,]+)\]"', install).group(1).split(",")
    assert named and all(extra in extras for extra in named), named
    assert "nni" not in named  # the experimental backend is opt-in
    assert {"optuna", "plotly"} <= {re.split(r"[<>=]", d)[0] for d in extras["demo"]}


def _extras() -> dict[str, list[str]]:
    """``[project.optional-dependencies]`` of pyproject.toml (one ``name = [...]`` line each; 3.10 has no tomllib)."""
    text = (ROOT / "pyproject.toml").read_text().split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    return {m.group(1): re.findall(r'"([^"]+)"', m.group(2)) for m in re.finditer(r"^([a-z]+) = \[(.*)\]$", text, re.M)}


def _run_python(cmd: str, cwd: Path) -> None:
    argv = shlex.split(cmd)
    proc = subprocess.run([sys.executable, *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{cmd}\n{proc.stderr[-2000:]}"


def _serve(cmd: str, cwd: Path) -> None:
    argv = shlex.split(cmd)
    port = int(argv[argv.index("--port") + 1])
    exe = Path(sys.executable).with_name(argv[0])
    proc = subprocess.Popen([str(exe), *argv[1:]], cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline, body = time.monotonic() + 60, None
        while time.monotonic() < deadline and body is None:
            assert proc.poll() is None, f"{cmd} exited: {proc.stderr.read().decode()[-1000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as resp:
                    body = json.loads(resp.read())
            except OSError:
                time.sleep(0.5)
        assert body is not None, f"{cmd}: no answer on port {port}"
        assert any("mgic_resnet56" in s.get("study_name", "") for s in body.get("study_summaries", [])), body
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path


def test_every_guide_block_runs_at_tiny_size(workdir, capsys):
    ran = 0
    for block in BLOCKS:
        if block.mode in ("install", "torchrun 2 processes on CPU (slow test)"):
            continue
        for cmd in block.commands():
            if block.mode == "server":
                _serve(cmd, workdir)
            elif cmd.startswith("mgnas "):
                code = cli.main(shlex.split(cmd)[1:])
                captured = capsys.readouterr()
                assert code == 0, f"{block}: {cmd}\n{captured.err[-2000:]}"
            elif cmd.startswith("python "):
                _run_python(cmd, workdir)
            else:
                pytest.fail(f"{block}: no runner for {cmd!r}")
            ran += 1
    assert ran >= 12
    # what the guide says each job produces
    for name in ("spec.json", "weights.pt", "result.json", "report.html", "checkpoint.pt", "config.yaml"):
        assert (workdir / "runs/g50_b32" / name).is_file(), name
        assert (workdir / "runs/r20" / name).is_file(), name
    assert json.loads((workdir / "runs/r20-finetune/result.json").read_text())["init_from"] == "runs/r20/weights.pt"
    manifest = json.loads((workdir / "runs/r20.onnx.manifest.json").read_text())
    assert manifest["check"] and manifest["spec_hash"]
    assert (workdir / "runs/mgic56/study.db").is_file() and (workdir / "runs/mgic56.journal").is_file()
    assert list((workdir / "runs/mgic56-front/front").glob("*.json"))
    assert (workdir / "runs/mgic56-front/trials.csv").is_file()


@pytest.mark.slow
def test_the_multi_node_torchrun_block_runs_with_two_processes(workdir):
    block = next(b for b in BLOCKS if b.mode == "torchrun 2 processes on CPU (slow test)")
    (cmd,) = block.commands()
    argv = shlex.split(cmd)
    assert argv[0] == "torchrun" and "--rdzv_backend=c10d" in argv
    exe = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([str(exe), *argv[1:]], cwd=workdir, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = argv[argv.index("--out") + 1]
    result = json.loads((workdir / out / "result.json").read_text())
    assert result["within_budget"] in (True, False) and (workdir / out / "spec.json").is_file()


def test_every_repository_path_the_guide_names_exists():
    text = GUIDE.read_text(encoding="utf-8")
    paths = set(re.findall(r"(?<![\w/])((?:experiments|docs|tests)/[\w./-]+\.(?:py|yaml|md))", text))
    outputs = {"config.yaml"}  # a file a run writes, not a shipped config
    paths |= {f"experiments/configs/{n}" for n in re.findall(r"`(\w+\.yaml)`", text) if n not in outputs}
    paths |= {f"experiments/benchmarks/{name}" for name in re.findall(r"`(\w+\.py)`", text)}
    assert len(paths) >= 12
    missing = sorted(p for p in paths if not (ROOT / p).is_file())
    assert not missing, missing
