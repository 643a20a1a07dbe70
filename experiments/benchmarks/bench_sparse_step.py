"""Benchmark one search training step of G-ResNeXt-50 with the sparse and the masked DGConv vs ResNeXt-50.

Issue 9's goal: the ``g_resnext50`` training step with ``impl="sparse"`` costs at most 1.3x the
``resnext50_32x4d`` step (CPU, 2 threads, 112x112, batch 8). Every DGConv gets a b=32-like pattern (G = 32
groups) with **unsorted** gates, so the groups are not contiguous (as ``bench_export.py`` builds them); the
gates are set to ±1 and the learning rate is small, so no hard gate flips during the benchmark (checked).

A step is forward + cross-entropy + backward + the optimizer step of mgnas's trainer
(:func:`mgnas.train.engine.build_optimizer`: SGD, momentum 0.9, weight decay 5e-4, torch's fused kernel; learning
rate 1e-4), after ``zero_grad(set_to_none=True)``. The three models run interleaved (the order rotates every
repetition); times are medians and ratios the medians of the per-repetition ratios, which cancels most of the
drift of a shared machine.

Peak memory: each model and size is also stepped in a fresh child process, which reports its peak resident
set size (Linux ``VmHWM``, reset after the model is built) during two steps minus its resident set before
them: activations, gradients, optimizer state and workspace on top of the built model. (``tracemalloc``
does not see torch's allocations; ``ru_maxrss`` is inherited from the parent on Linux.) Usage::

    python experiments/benchmarks/bench_sparse_step.py [--repeats 7] [--sizes 112 64 224] [--batch 8]
        [--threads 2] [--clock wall|cpu] [--channels-last 112] [--no-memory] [--write-results]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from mgnas.models import build_model, model_spec
from mgnas.ops import DGConv2d, set_dgconv_impl
from mgnas.train.config import TrainConfig
from mgnas.train.engine import build_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dgconv import cpu_model, interleaved  # noqa: E402  (the benchmarks' one timer and CPU name)
from bench_export import unsorted_pattern  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## DGConv2d"
SUBSECTION = "### Search step: sparse vs masked DGConv (G-ResNeXt-50) vs ResNeXt-50 32x4d"
MODELS = ("resnext50_32x4d", "g_resnext50 sparse", "g_resnext50 masked")
NOTE = (
    "Where the sparse step's extra time goes (torch.profiler, 2 threads, 112x112, operator time per step: ResNeXt-50 "
    "389 ms, sparse G-ResNeXt-50 489 ms): the convolutions +31 ms (the grouped weight gradients and forward "
    "convolutions of the gate gradients, M = 5 shifts per layer here); channel gathers of activations +24 ms (the "
    "(1 + M)-fold gather of the output gradient for the gates at 0: 17 ms; sorting and unsorting x, y, dy and dx: "
    "7 ms); the fused SGD update over the 45M dense supernet weights +19 ms (momentum and weight decay move the "
    "weights off the blocks too, as in the masked form); gathers of the weight blocks +12 ms; writing the block "
    "gradients into the dense weight gradient +4 ms. Two changes took the 112x112 ratio from 1.35x to 1.27x: the "
    "dense weight gradient is reused from step to step (`DenseGradBuffer`: no allocation and zero-fill of 180 MB "
    "per step; 1.35x -> 1.32x), and channel gathers copy whole H*W planes (`ChannelIndex`, about 2x faster than "
    "`index_select` along dim 1; -> 1.27x). Tried and measured no better: transparent huge pages for the gradients "
    "(`THP_MEM_ALLOC_ENABLE=1`), glibc malloc tunables, and NCHW permutations as a digit-axis transpose. With "
    "model and input in channels_last (`train.channels_last`) the ratio is 1.40x: gathers along the channel axis "
    "of NHWC tensors go element by element. Before DGConv2d kept its weight NCHW-contiguous under "
    "`.to(memory_format=torch.channels_last)`, the whole weight was copied on every step there: 1.96x."
)


def build(name: str, groups: int = 32, seed: int = 0) -> nn.Module:
    """One of :data:`MODELS`, seeded, in train mode, gates of the supernet set to an unsorted pattern."""
    torch.manual_seed(seed)
    if name == "resnext50_32x4d":
        return build_model(model_spec("resnext50_32x4d")).train()
    model = build_model(model_spec("g_resnext50")).train()
    rng = random.Random(seed)
    for m in model.modules():
        if isinstance(m, DGConv2d):
            m.set_gates(unsorted_pattern(len(m.gates), groups, rng), magnitude=1.0)
            assert m.num_groups() == groups
    set_dgconv_impl(model, name.split()[-1])
    return model


def patterns(model: nn.Module) -> list[tuple[int, ...]]:
    return [m.gate_pattern() for m in model.modules() if isinstance(m, DGConv2d)]


def make_step(model: nn.Module, batch: int, size: int, channels_last: bool = False) -> Callable[[], None]:
    """A closure running one training step on fixed random data (model and input converted to channels_last
    if asked, as the trainer's ``channels_last`` does)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, size, size, generator=gen)
    if channels_last:
        model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), generator=gen)
    opt = build_optimizer(model, TrainConfig(optimizer="sgd", lr=1e-4, momentum=0.9, weight_decay=5e-4), None)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
    return step


def paired_ratio(num: list[float], den: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(num, den))


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def memory_child(name: str, batch: int, size: int, threads: int, channels_last: bool = False) -> int:
    """(In a fresh process) peak-RSS increase in bytes over two training steps of ``name``: the peak
    (``VmHWM``, reset after the model is built by writing 5 to ``/proc/self/clear_refs``) minus the
    resident set before the first step. (``ru_maxrss`` would not do: Linux carries it over from the
    parent across fork and exec.)"""
    torch.set_num_threads(threads)
    model = build(name)
    step = make_step(model, batch, size, channels_last)
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    step()
    step()
    return (_status_kib("VmHWM") - before) * 1024


def measure_memory(name: str, batch: int, size: int, threads: int, channels_last: bool = False) -> float:
    cmd = [sys.executable, __file__, "--_memory-child", name, str(batch), str(size), str(threads),
           str(int(channels_last))]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1]) / 2**20


def bench_size(size: int, batch: int, repeats: int, memory: bool, threads: int,
               clock: Callable[[], float] = time.perf_counter,
               channels_last: bool = False) -> tuple[str, dict[str, float]]:
    models = {name: build(name) for name in MODELS}
    before = {n: patterns(m) for n, m in models.items()}
    steps = {n: make_step(m, batch, size, channels_last) for n, m in models.items()}
    times = interleaved(steps, repeats, clock=clock)
    for n, m in models.items():
        assert patterns(m) == before[n], f"a hard gate flipped in {n}: the benchmark would rebuild layouts"
    ref = times["resnext50_32x4d"]
    mem = {n: measure_memory(n, batch, size, threads, channels_last) for n in MODELS} if memory else {}
    label = f"{size}x{size}" + (", channels_last" if channels_last else "")
    rows = []
    ratios = {}
    for n in MODELS:
        ratios[n] = paired_ratio(times[n], ref)
        m = f"{mem[n]:.0f}" if memory else "-"
        rows.append(f"| {label} | {n} | {statistics.median(times[n]) * 1e3:.0f} | {ratios[n]:.2f} | {m} |")
    return "\n".join(rows), ratios


def update_results(block: str, path: Path = RESULTS) -> None:
    """Replace (or add) this benchmark's subsection inside the ``## DGConv2d`` section of RESULTS.md."""
    lines = path.read_text().splitlines() if path.exists() else ["# Benchmark results"]
    new = block.rstrip("\n").splitlines()
    if SUBSECTION in lines:
        start = lines.index(SUBSECTION)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(("## ", "### "))), len(lines))
        lines[start:end] = new + [""]
    elif SECTION in lines:
        start = lines.index(SECTION)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[end:end] = new + [""]
    else:
        lines += ["", SECTION, "", *new]
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions at 112x112 (fewer at other sizes)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[112, 64, 224], help="input sizes (square)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time, or process CPU time (robust to a loaded machine; use with --threads 1)")
    parser.add_argument("--channels-last", type=int, nargs="*", default=[112], metavar="SIZE",
                        help="input sizes also run with model and input in channels_last (as train.channels_last)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    parser.add_argument("--write-results", action="store_true", help=f"update its subsection of {RESULTS}")
    parser.add_argument("--_memory-child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._memory_child:
        name, batch, size, threads, channels_last = args._memory_child
        print(json.dumps(memory_child(name, int(batch), int(size), int(threads), channels_last == "1")))
        return 0
    torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    rows = []
    runs = [(size, False) for size in args.sizes] + [(size, True) for size in args.channels_last]
    for size, channels_last in runs:
        repeats = args.repeats if size <= 112 else max(2, args.repeats // 2)
        clock = time.process_time if args.clock == "cpu" else time.perf_counter
        table, ratios = bench_size(size, args.batch, repeats, not args.no_memory, args.threads, clock, channels_last)
        rows.append(table)
        print(table, flush=True)
    command = "python experiments/benchmarks/bench_sparse_step.py " + " ".join(sys.argv[1:] if argv is None else argv)
    env = (f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, CPU: {cpu_model()}, "
           f"1-min load average {load0:.2f} at start / {os.getloadavg()[0]:.2f} at end")
    block = "\n".join([
        SUBSECTION, "",
        f"Command: `{command.strip()}` (batch {args.batch}; {args.repeats} interleaved repetitions at <= 112x112, "
        f"half as many above; medians, ratios are medians of side-by-side ratios). {env}.", "",
        "A step: forward, cross-entropy, backward, the trainer's optimizer step (SGD, momentum 0.9, weight decay "
        "5e-4, fused). Every DGConv has 32 groups with unsorted gates (not contiguous). Peak memory: peak RSS "
        "(`VmHWM`) during two steps minus the RSS before them, in a fresh child process. Goal (issue 9): sparse "
        "<= 1.3x ResNeXt-50 at 112x112.", "",
        NOTE, "",
        "| input | model | step (ms) | ratio vs resnext50_32x4d | peak memory (MiB) |",
        "|---|---|---:|---:|---:|",
        *rows, "",
    ])
    print()
    print(block)
    if args.write_results:
        update_results(block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
