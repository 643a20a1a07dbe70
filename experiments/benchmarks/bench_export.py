"""Benchmark the exported (static, folded) G-ResNeXt-50 against the dense masked supernet and ResNeXt-50 32x4d.

Every DGConv of ``g_resnext50`` gets a b=32-style pattern (G = 32 groups, i.e. group size C/32 as in
ResNeXt 32x4d) with **unsorted** gates, so its groups are not contiguous and ``to_static`` needs channel
permutations, which it folds into the neighbouring 1x1 convs and BatchNorms. Compared, inference only
(eval, ``torch.inference_mode``), 224x224, batch 1 and 16, ``torch.set_num_threads(2)``:

1. exported model vs the dense masked supernet (``DGConv2d``: W ⊙ U, a dense conv): the speedup;
2. exported model vs ``resnext50_32x4d`` (same group counts, contiguous groups): the ratio (target <= 1.10).

Repetitions are interleaved (the order rotates every repetition); times are medians, ratios the medians of
the per-repetition ratios; the last column uses the minimum times instead, which are robust to bursts of
load from other processes (a shared 2-core VM can make one 2-thread forward 10x slower). Prints a
markdown table. Usage::

    python experiments/benchmarks/bench_export.py [--repeats 5] [--batches 1 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

import torch
from torch import nn

from mgnas.export import to_static
from mgnas.models import build_model, model_spec
from mgnas.ops import DGConv2d
from mgnas.profile import count


def unsorted_pattern(n_gates: int, groups: int, rng: random.Random) -> list[int]:
    """A gate pattern with log2(groups) zeros (split factors) that is not the sorted [0, ..., 0, 1, ..., 1]."""
    zeros = groups.bit_length() - 1
    ordered = [0] * zeros + [1] * (n_gates - zeros)
    pattern = ordered[:]
    while pattern == ordered:
        rng.shuffle(pattern)
    return pattern


@torch.no_grad()
def randomise_bn(model: nn.Module, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))


def build(groups: int = 32, seed: int = 0) -> tuple[nn.Module, nn.Module, nn.Module, list[list[int]]]:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    supernet = build_model(model_spec("g_resnext50"))
    patterns = []
    for m in supernet.modules():
        if isinstance(m, DGConv2d):
            pattern = unsorted_pattern(len(m.gates), groups, rng)
            m.set_gates(pattern)
            assert m.num_groups() == groups
            patterns.append(pattern)
    randomise_bn(supernet, seed)
    supernet.eval()
    static = to_static(supernet).eval()
    reference = build_model(model_spec("resnext50_32x4d", groups=groups)).eval()
    randomise_bn(reference, seed)
    return supernet, static, reference, patterns


DEVICE = torch.device("cpu")


def time_once(model: nn.Module, x: torch.Tensor) -> float:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    model(x)
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def bench(models: dict[str, nn.Module], batch: int, repeats: int) -> dict[str, list[float]]:
    x = torch.randn(batch, 3, 224, 224)
    if DEVICE.type == "cuda":  # the GPU variant: bf16, channels_last
        x = x.to(DEVICE, torch.bfloat16).contiguous(memory_format=torch.channels_last)
    times: dict[str, list[float]] = {k: [] for k in models}
    names = list(models)
    with torch.inference_mode():
        for name in names:  # warm-up
            models[name](x)
        for r in range(repeats):
            order = names[r % len(names):] + names[:r % len(names)]
            for name in order:
                times[name].append(time_once(models[name], x))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cuda", action="store_true", help="bf16 + channels_last on the GPU instead of the CPU")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global DEVICE
    DEVICE = torch.device("cuda" if args.cuda else "cpu")

    supernet, static, reference, patterns = build()
    x = torch.randn(2, 3, 224, 224)
    with torch.inference_mode():
        ref = supernet(x)
        diff = (static(x) - ref).abs().max().item() / ref.abs().max().item()
    n_perm = sum(type(m).__name__ == "GroupConv2d" and (m.in_index is not None or m.out_index is not None)
                 for m in static.modules())
    counts = {name: count(m, (3, 224, 224), per_layer=False)
              for name, m in (("supernet", supernet), ("static", static), ("reference", reference))}
    if DEVICE.type == "cuda":
        for m in (supernet, static, reference):
            m.to(DEVICE, torch.bfloat16).to(memory_format=torch.channels_last)
    cpu = platform.processor() or platform.machine()
    print(f"# export benchmark ({DEVICE.type}): torch {torch.__version__}, {cpu}, "
          f"{args.threads} threads, load avg {os.getloadavg()[0]:.2f}, {args.repeats} interleaved repetitions")
    print(f"unsorted gate patterns (first 3 of {len(patterns)}): {patterns[:3]}")
    print(f"to_static parity: max |Δ| / max |y| = {diff:.2e}; explicit permutations left: {n_perm}")
    for name, c in counts.items():
        print(f"{name}: {c.params:,} params, {c.macs / 1e9:.2f} GMACs")
    print()
    print("| batch | masked supernet (ms) | exported (ms) | resnext50_32x4d (ms) | speedup vs supernet "
          "| exported / resnext50_32x4d | same two, from min times |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for batch in args.batches:
        t = bench({"supernet": supernet, "static": static, "reference": reference}, batch, args.repeats)
        speedup = statistics.median(a / b for a, b in zip(t["supernet"], t["static"]))
        ratio = statistics.median(a / b for a, b in zip(t["static"], t["reference"]))
        med = {k: 1e3 * statistics.median(v) for k, v in t.items()}
        best = {k: min(v) for k, v in t.items()}  # robust to bursts of load from other processes
        print(f"| {batch} | {med['supernet']:.1f} | {med['static']:.1f} | {med['reference']:.1f} | "
              f"{speedup:.2f}x | {ratio:.3f} | {best['supernet'] / best['static']:.2f}x, "
              f"{best['static'] / best['reference']:.3f} |", flush=True)
    print(f"\nload avg at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
