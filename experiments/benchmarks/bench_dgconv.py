"""Benchmark DGConv2d (Zhang et al. Eq. 3-7) on CPU.

1. Training step (forward + backward, gate gradients included) of ``DGConv2d`` vs a dense ``nn.Conv2d``
   of the same shape (256 -> 256, 3x3, 28x28, batch 32; the input also needs its gradient, as in the
   middle of a network).
2. Inference of ``to_static()`` (grouped conv, contiguous groups and strided groups with channel
   permutations) vs the dense masked conv (``DGConv2d`` in eval / no_grad) at G = 4, 8, 32.

Every comparison runs in one process with interleaved repetitions (the order rotates every repetition);
times are medians, ratios the median of the per-repetition (side by side) ratios. Usage::

    python experiments/benchmarks/bench_dgconv.py [--repeats 7] [--quick] [--write-results]
"""

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

from mgnas.ops import DGConv2d

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## DGConv2d"
NOTE = (
    "A load average above the thread count means other jobs shared the cores: such runs are not "
    "representative (the many small mask ops suffer most; loaded runs on the 2-core VM gave training "
    "ratios up to 1.15)."
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, one entry per repetition; calls interleaved, order rotated."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(warmup + repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = time.perf_counter()
            fns[name]()
            if rep >= warmup:
                times[name].append(time.perf_counter() - t0)
    return times


def med(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(num: list[float], den: list[float]) -> float:
    """Median over repetitions of num/den measured side by side (robust to slow load drifts)."""
    return statistics.median(a / b for a, b in zip(num, den))


def bench_training(batch: int, size: int, channels: int, repeats: int) -> list[str]:
    dense = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    dg = DGConv2d(channels, channels, 3)
    x = torch.randn(batch, channels, size, size, requires_grad=True)
    gy = torch.randn(batch, channels, size, size)

    def step(m: nn.Module) -> Callable[[], None]:
        def run() -> None:
            m.zero_grad(set_to_none=True)
            x.grad = None
            m(x).backward(gy)
        return run

    gw = torch.randn_like(dg.weight)

    def mask_only() -> None:  # the work DGConv adds to a dense step: U, W ⊙ U, and their backward
        dg.zero_grad(set_to_none=True)
        (dg.weight * dg.relation()[:, :, None, None]).backward(gw)

    t = interleaved({"dense": step(dense), "dgconv": step(dg), "mask": mask_only}, repeats)
    assert dg.gates.grad is not None and dg.gates.grad.abs().sum() > 0
    with torch.no_grad():
        t_rel = med(interleaved({"relation": dg.relation}, 20)["relation"])
    return [
        "| layer | step (ms) | ratio vs dense |",
        "|---|---:|---:|",
        f"| nn.Conv2d {channels}->{channels} 3x3 | {med(t['dense']) * 1e3:.1f} | 1.00 |",
        f"| DGConv2d {channels}->{channels} 3x3 (weight + gates) | {med(t['dgconv']) * 1e3:.1f} | "
        f"{paired_ratio(t['dgconv'], t['dense']):.3f} |",
        f"| its extra work alone: U, W ⊙ U and their backward | {med(t['mask']) * 1e3:.1f} | "
        f"{paired_ratio(t['mask'], t['dense']):.3f} |",
        "",
        f"Input {batch}x{channels}x{size}x{size}; building U (relation(), no grad) takes {t_rel * 1e3:.2f} ms.",
    ]


def _pattern(k: int, n_zero: int, strided: bool) -> list[int]:
    """All radices are 2 here. Contiguous: zeros first (block diagonal, no permutation);
    strided: zeros last (group id = channel mod G, both sides permuted)."""
    zeros = [0] * n_zero
    ones = [1] * (k - n_zero)
    return ones + zeros if strided else zeros + ones


def bench_inference(batch: int, size: int, channels: int, groups: list[int], repeats: int) -> list[str]:
    x = torch.randn(batch, channels, size, size)
    rows = [
        "| G | masked dense (ms) | static contiguous (ms) | speedup | static strided + perms (ms) | speedup "
        "| max rel. error |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for g in groups:
        n_zero = g.bit_length() - 1
        dg = DGConv2d(channels, channels, 3).eval()
        dg.set_gates(_pattern(len(dg.factors), n_zero, strided=False))
        contiguous = dg.to_static().eval()
        dg.set_gates(_pattern(len(dg.factors), n_zero, strided=True))
        strided = dg.to_static().eval()
        assert dg.num_groups() == g
        with torch.no_grad():
            err = float((strided(x) - dg(x)).abs().max() / dg(x).abs().max())
            t = interleaved({"masked": partial(dg, x), "contiguous": partial(contiguous, x),
                             "strided": partial(strided, x)}, repeats)
        m, c, s = (med(t[k]) * 1e3 for k in ("masked", "contiguous", "strided"))
        rows.append(
            f"| {g} | {m:.1f} | {c:.1f} | {paired_ratio(t['masked'], t['contiguous']):.2f}x "
            f"| {s:.1f} | {paired_ratio(t['masked'], t['strided']):.2f}x | {err:.1e} |"
        )
    rows += ["", f"Input {batch}x{channels}x{size}x{size}, 3x3, eval mode, no_grad; the contiguous static conv is a "
             "plain `nn.Conv2d(groups=G)`, the strided one a `GroupConv2d` with input and output permutations."]
    return rows


def update_results(section: str, path: Path = RESULTS) -> None:
    """Replace (or append) the ``## DGConv2d`` section of RESULTS.md, leaving other sections alone."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    if SECTION in lines:
        start = lines.index(SECTION)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = section.rstrip("\n").splitlines() + [""]
    else:
        lines += ["", *section.rstrip("\n").splitlines()]
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions per variant (median)")
    parser.add_argument("--quick", action="store_true", help="small batch and 3 repeats (smoke test)")
    parser.add_argument("--write-results", action="store_true", help=f"update the DGConv2d section of {RESULTS}")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    torch.manual_seed(0)
    batch, repeats = (4, 3) if args.quick else (32, args.repeats)
    command = "python experiments/benchmarks/bench_dgconv.py " + " ".join(sys.argv[1:] if argv is None else argv)
    env = f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU: {cpu_model()}"
    load0 = os.getloadavg()[0]
    train = bench_training(batch, 28, 256, repeats)
    infer = bench_inference(batch, 28, 256, [4, 8, 32], repeats)
    env += f", 1-min load average {load0:.2f} at start / {os.getloadavg()[0]:.2f} at end"
    section = "\n".join([
        SECTION, "",
        f"Command: `{command.strip()}` ({repeats} interleaved repetitions; medians, ratios are medians of "
        f"side-by-side ratios). {env}.", "", NOTE, "",
        "### Training step (forward + backward)", "", *train, "",
        "### Inference: `to_static()` vs the dense masked conv", "", *infer, "",
    ])
    print(section)
    if args.write_results:
        update_results(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
