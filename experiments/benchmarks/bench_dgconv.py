"""Benchmark DGConv2d (Zhang et al. Eq. 3-7) on CPU.

1. Training step (forward + backward, gate gradients included) of ``DGConv2d`` (``impl="masked"`` and
   ``"sparse"``, G = 32) vs a dense ``nn.Conv2d`` and the grouped ``nn.Conv2d(groups=32)`` of the same
   shape (256 -> 256, 3x3, 28x28, batch 32; the input also needs its gradient, as in the middle of a
   network); also the two forms of the sparse gate-0 sums and the two ways of permuting channels.
2. Inference of ``to_static()`` (grouped conv, contiguous groups and strided groups with channel
   permutations) vs the dense masked conv (``DGConv2d`` in eval / no_grad) at G = 4, 8, 32.

Every comparison runs in one process with interleaved repetitions (the order rotates every repetition);
times are medians, ratios the median of the per-repetition (side by side) ratios. Usage::

    python experiments/benchmarks/bench_dgconv.py [--repeats 7] [--quick] [--threads 2] [--clock wall|cpu]
        [--write-results]
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

import mgnas.ops._dgconv_sparse as sparse
from mgnas.ops import DGConv2d

RESULTS = Path(__file__).with_name("RESULTS.md")
SECTION = "## DGConv2d"
NOTE = (
    "A load average above the thread count means other jobs shared the cores: such runs are not "
    "representative (memory-bound work such as channel gathers suffers most); `--threads 1 --clock cpu` "
    "(process CPU time) is the more robust comparison on a shared machine."
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


CLOCK: Callable[[], float] = time.perf_counter  # --clock cpu: time.process_time (robust to a loaded machine)


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                clock: Callable[[], float] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each function, one entry per repetition; calls interleaved, order rotated.
    ``clock``: default :data:`CLOCK` (``--clock``)."""
    clock = clock or CLOCK
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for rep in range(warmup + repeats):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            t0 = clock()
            fns[name]()
            if rep >= warmup:
                times[name].append(clock() - t0)
    return times


def med(values: list[float]) -> float:
    return statistics.median(values)


def paired_ratio(num: list[float], den: list[float]) -> float:
    """Median over repetitions of num/den measured side by side (robust to slow load drifts)."""
    return statistics.median(a / b for a, b in zip(num, den))


def bench_training(batch: int, size: int, channels: int, repeats: int, groups: int = 32) -> list[str]:
    """One training step (forward + backward, input gradient too) of the dense conv, ``nn.Conv2d(groups=G)``,
    and ``DGConv2d`` masked and sparse with G groups: unsorted gates (non-contiguous groups, permutations),
    sorted gates (contiguous, no permutation), and the two forms of the gate-0 sums (weight-gradient /
    forward conv, ``mgnas.ops._dgconv_sparse.SHIFT_FORM``)."""
    n_zero = groups.bit_length() - 1
    dense = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
    grouped = nn.Conv2d(channels, channels, 3, padding=1, bias=False, groups=groups)
    k = len(DGConv2d(channels, channels, 3).factors)
    unsorted = _pattern(k, n_zero, strided=False)
    unsorted[0], unsorted[-1] = unsorted[-1], unsorted[0]  # [1, 0, ..., 0, 1, ..., 0]: not contiguous
    dg = {}
    for name, impl, pattern in (("masked", "masked", unsorted), ("sparse", "sparse", unsorted),
                                ("sparse_contiguous", "sparse", _pattern(k, n_zero, strided=False))):
        dg[name] = DGConv2d(channels, channels, 3, impl=impl)
        dg[name].set_gates(pattern, magnitude=1.0)
        assert dg[name].num_groups() == groups
    assert dg["sparse"].sparse_layout().in_perm is not None and dg["sparse_contiguous"].sparse_layout().in_perm is None
    x = torch.randn(batch, channels, size, size, requires_grad=True)
    gy = torch.randn(batch, channels, size, size)

    def step(m: nn.Module, form: str = "auto") -> Callable[[], None]:
        def run() -> None:
            sparse.SHIFT_FORM = form
            m.zero_grad(set_to_none=True)
            x.grad = None
            m(x).backward(gy)
            sparse.SHIFT_FORM = "auto"
        return run

    fns = {"dense": step(dense), "grouped": step(grouped), **{n: step(m) for n, m in dg.items()},
           "sparse_weight_form": step(dg["sparse"], "weight"), "sparse_forward_form": step(dg["sparse"], "forward")}
    t = interleaved(fns, repeats)
    assert dg["sparse"].gates.grad is not None and dg["sparse"].gates.grad.abs().sum() > 0
    labels = {
        "dense": f"nn.Conv2d {channels}->{channels} 3x3 (dense)",
        "grouped": f"nn.Conv2d groups={groups} (no gates: the conv it becomes)",
        "masked": f"DGConv2d masked, G={groups} (W ⊙ U, dense conv)",
        "sparse": f"DGConv2d sparse, G={groups}, unsorted gates (permutations)",
        "sparse_contiguous": f"DGConv2d sparse, G={groups}, sorted gates (contiguous)",
        "sparse_weight_form": "DGConv2d sparse, unsorted, gate-0 sums in the weight-gradient form",
        "sparse_forward_form": "DGConv2d sparse, unsorted, gate-0 sums in the forward form",
    }
    rows = ["| layer (weight + gates + input gradients) | step (ms) | ratio vs dense | ratio vs grouped |",
            "|---|---:|---:|---:|"]
    for name, label in labels.items():
        rows.append(f"| {label} | {med(t[name]) * 1e3:.1f} | {paired_ratio(t[name], t['dense']):.3f} | "
                    f"{paired_ratio(t[name], t['grouped']):.2f} |")
    perm = dg["sparse"].sparse_layout().in_perm
    xd = x.detach()
    tp = interleaved({"planes": partial(perm.apply, xd), "index_select": partial(xd.index_select, 1, perm.gather.index),
                      "transpose": partial(digit_transpose, xd, perm.sizes, perm.dims)}, 20)
    rows += ["", f"Input {batch}x{channels}x{size}x{size}. Permuting the input channels (sparse, unsorted): "
             f"gather of H*W planes (`ChannelIndex`, used) {med(tp['planes']) * 1e3:.2f} ms, `index_select` along "
             f"dim 1 {med(tp['index_select']) * 1e3:.2f} ms, mixed-radix reshape/transpose "
             f"{med(tp['transpose']) * 1e3:.2f} ms."]
    return rows


def digit_transpose(x: torch.Tensor, sizes: tuple[int, ...], dims: tuple[int, ...]) -> torch.Tensor:
    """``ChannelPerm.apply`` of an NCHW tensor as a reshape/transpose of the mixed-radix digit axes of its
    channels (the alternative to a gather that this benchmark times)."""
    n, c, h, w = x.shape
    t = x.reshape(n, *sizes, h * w).permute(0, *(1 + d for d in dims), len(sizes) + 1)
    return t.reshape(n, c, h, w)


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
        dg = DGConv2d(channels, channels, 3, impl="masked").eval()
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


KEEP = "### Search step"  # bench_sparse_step.py's subsection of the same section: left alone


def update_results(section: str, path: Path = RESULTS) -> None:
    """Replace (or append) the ``## DGConv2d`` section of RESULTS.md, leaving other sections and the
    subsection written by ``bench_sparse_step.py`` alone."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    if SECTION in lines:
        start = lines.index(SECTION)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(("## ", KEEP))), len(lines))
        lines[start:end] = section.rstrip("\n").splitlines() + [""]
    else:
        lines += ["", *section.rstrip("\n").splitlines()]
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions per variant (median)")
    parser.add_argument("--quick", action="store_true", help="small batch and 3 repeats (smoke test)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time, or process CPU time (robust to a loaded machine; use with --threads 1)")
    parser.add_argument("--write-results", action="store_true", help=f"update the DGConv2d section of {RESULTS}")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(0)
    batch, repeats = (4, 3) if args.quick else (32, args.repeats)
    command = "python experiments/benchmarks/bench_dgconv.py " + " ".join(sys.argv[1:] if argv is None else argv)
    env = f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock, CPU: {cpu_model()}"
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
