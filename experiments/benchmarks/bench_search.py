"""Search epoch vs plain training epoch of the same network with dense convs (issue: at most 1.2x on CPU).

    python experiments/benchmarks/bench_search.py [--repeats 5] [--data digits:32] [--write-results]

Timing: one process, the two kinds interleaved (search, plain, search, plain, ...), each repetition a
fresh 1-epoch run (train + eval) on the same data; the reported ratio is the median of the per-pair ratios
(these machines are shared and noisy). Memory: each kind once more in a child process, peak RSS
(ru_maxrss) of the whole process, so the Python/torch baseline is included in both.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _search_epoch(data: str, batch: int, seed: int) -> float:
    from mgnas.strategies.differentiable import DifferentiableSearch, SearchConfig

    from mgnas.train import TrainConfig

    cfg = SearchConfig(space="resnet20_groups", data=data, budget="b=4", penalty="hinge",
                       train=TrainConfig(epochs=1, batch_size=batch, lr=0.05, seed=seed))
    search = DifferentiableSearch(cfg, None, progress=False)
    start = time.perf_counter()
    search.run()
    return time.perf_counter() - start


def _plain_epoch(data: str, batch: int, seed: int) -> float:
    from mgnas.data import load_data
    from mgnas.models import adapt_spec, build_model, model_spec
    from mgnas.train import TrainConfig, Trainer

    bundle = load_data(data, batch_size=batch, seed=seed)
    spec = adapt_spec(model_spec("resnet20_cifar"), in_channels=bundle.input_size[0], num_classes=bundle.num_classes,
                      input_size=bundle.input_size)
    trainer = Trainer(build_model(spec), TrainConfig(epochs=1, batch_size=batch, lr=0.05, seed=seed), bundle, None,
                      progress=False)
    start = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - start


KINDS = {"search": _search_epoch, "plain": _plain_epoch}


def _child(kind: str, data: str, batch: int) -> None:
    KINDS[kind](data, batch, 0)
    print(json.dumps({"kind": kind, "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def _peak_rss(kind: str, data: str, batch: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--data", data, "--batch-size", str(batch)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["max_rss_mb"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data", default="digits:32")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write-results", action="store_true", help="rewrite the search section of RESULTS.md")
    parser.add_argument("--child", choices=sorted(KINDS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        _child(args.child, args.data, args.batch_size)
        return 0
    _search_epoch(args.data, args.batch_size, 0)  # warm-up: imports, data loading, allocator
    _plain_epoch(args.data, args.batch_size, 0)
    pairs = []
    for r in range(args.repeats):
        s, p = _search_epoch(args.data, args.batch_size, r), _plain_epoch(args.data, args.batch_size, r)
        pairs.append((s, p))
        print(f"repeat {r + 1}/{args.repeats}: search {s:.2f} s, plain {p:.2f} s, ratio {s / p:.3f}", flush=True)
    ratio = statistics.median(s / p for s, p in pairs)
    rss = {kind: _peak_rss(kind, args.data, args.batch_size) for kind in KINDS}
    load = os.getloadavg()[0]
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    table = "\n".join([
        "| run (1 epoch, train + eval) | median time (s) | ratio vs plain | peak RSS (MB) |",
        "|---|---:|---:|---:|",
        f"| plain training, `resnet20_cifar` (dense convs) | {statistics.median(p for _, p in pairs):.2f} | 1.00 | "
        f"{rss['plain']:.0f} |",
        f"| DGConv search, `resnet20_groups` supernet, b=4 hinge | {statistics.median(s for s, _ in pairs):.2f} | "
        f"**{ratio:.3f}** | {rss['search']:.0f} |",
    ])
    section = (
        "## Differentiable search vs plain training\n\n"
        f"Command: `python experiments/benchmarks/bench_search.py --repeats {args.repeats} --data {args.data} "
        f"--write-results`. {args.repeats} interleaved pairs, ratio = median of per-pair ratios; data `{args.data}`, "
        f"batch {args.batch_size}; torch {torch.__version__}, {args.threads} threads, CPU: {cpu}, 1-min load "
        f"average {load:.2f} at the end. Peak RSS is the whole process (Python and torch included).\n\n{table}\n"
    )
    print("\n" + section)
    if args.write_results:
        path = HERE / "RESULTS.md"
        text = path.read_text()
        head = "## Differentiable search vs plain training"
        if head in text:
            start = text.index(head)
            nxt = text.find("\n## ", start + len(head))
            text = text[:start] + section + (text[nxt + 1:] if nxt != -1 else "")
        else:
            text = text.rstrip() + "\n\n" + section
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
