"""Tiny in-memory data bundle and model for the training-engine tests, and the DDP worker script.

Run under torchrun (2 gloo processes on CPU)::

    torchrun --nproc_per_node=2 tests/_ddp_worker.py OUT_DIR [--epochs 2] [--resume] [--interrupt-at-step N]
        [--reference DIR]
    torchrun --nproc_per_node=2 tests/_ddp_worker.py OUT_DIR --search sparse|masked [--epochs 1]

Every rank checks, before every optimiser step (i.e. after the previous one) and at the end, that all
parameters are bit-identical across ranks, and that it wrote no file unless it is rank 0. Exit code 0
when all checks pass, 3 otherwise. ``--search IMPL`` runs a DGConv search (resnet20_groups on digits, b=8,
DGConv2d impl IMPL) instead of TinyNet, and checks the raw gates and all parameters the same way.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Sampler, TensorDataset


class EpochSampler(Sampler[int]):
    """Shuffles from (seed, epoch); rank r takes every world-th index (same length on every rank)."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.rank, self.world, self.epoch = n, seed, rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g).tolist()
        return iter(perm[self.rank:self.n - self.n % self.world:self.world])

    def __len__(self) -> int:
        return self.n // self.world


@dataclass
class TinyBundle:
    """The DataBundle attributes the Trainer relies on."""

    train: DataLoader
    val: DataLoader
    test: DataLoader | None
    num_classes: int = 4
    input_size: tuple[int, int, int] = (1, 8, 8)
    name: str = "tiny"
    sampler: EpochSampler | None = field(default=None, repr=False)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)


def _make_split(n: int, gen: torch.Generator) -> TensorDataset:
    y = torch.randint(0, 4, (n,), generator=gen)
    x = torch.randn(n, 1, 8, 8, generator=gen) + 0.7 * (y.float() - 1.5).view(-1, 1, 1, 1)  # class = brightness
    return TensorDataset(x, y)


def make_bundle(n_train: int = 96, batch_size: int = 16, seed: int = 0, rank: int = 0, world: int = 1,
                with_test: bool = True) -> TinyBundle:
    gen = torch.Generator().manual_seed(1234)  # the data never depend on the run's seed
    train, val, test = _make_split(n_train, gen), _make_split(64, gen), _make_split(64, gen)
    sampler = EpochSampler(n_train, seed, rank, world)
    return TinyBundle(train=DataLoader(train, batch_size=batch_size, sampler=sampler),
                      val=DataLoader(val, batch_size=32), test=DataLoader(test, batch_size=32) if with_test else None,
                      sampler=sampler)


class TinyNet(nn.Module):
    """conv-bn-relu, grouped conv scaled by per-channel ``gates``, dropout, linear."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=2, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.gates = nn.Parameter(torch.zeros(8))
        self.drop = nn.Dropout(0.2)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x))) * (1 + self.gates).view(1, -1, 1, 1)
        return self.fc(self.drop(x.mean((2, 3))))


class Interrupted(Exception):
    """Stands for a killed process: raised on every rank before the same step, before any collective."""


def run_one(out_dir: str, epochs: int, resume: bool = False, interrupt_at: int | None = None) -> bool:
    """Train TinyNet on this rank's shard; True when every cross-rank check passed."""
    import mgnas.train.engine as engine
    from mgnas.train import TrainConfig, Trainer
    from mgnas.train.distributed import all_equal, init_distributed

    rank, world, _ = init_distributed()
    writes: list[str] = []
    saved = engine.save_atomic, engine.write_text_atomic
    if rank != 0:  # any write from another rank is a failure
        engine.save_atomic = lambda obj, path: writes.append(str(path))
        engine.write_text_atomic = lambda text, path: writes.append(str(path))
    torch.manual_seed(rank)  # different init per rank: DDP must broadcast rank 0's weights
    model = TinyNet()
    data = make_bundle(n_train=96, batch_size=8, seed=0, rank=rank, world=world)
    mismatches: list[int] = []
    steps = [0]

    def same_everywhere() -> bool:
        return all_equal(torch.cat([p.detach().reshape(-1) for p in model.parameters()]))

    def loss_fn(fwd, x, y):
        if interrupt_at is not None and steps[0] + 1 == interrupt_at:
            raise Interrupted
        if not same_everywhere():
            mismatches.append(steps[0])
        steps[0] += 1
        return F.cross_entropy(fwd(x), y), {"gate_mean": float(model.gates.detach().mean())}

    config = TrainConfig(epochs=epochs, lr=0.05, warmup_epochs=0.5, seed=0)
    gates = [model.gates]
    weights = [p for n, p in model.named_parameters() if n != "gates"]
    trainer = Trainer(model, config, data, out_dir, loss_fn=loss_fn, progress=False,
                      param_groups=[{"params": weights}, {"params": gates, "lr": 0.01, "weight_decay": 0.0}])
    try:
        trainer.fit(resume=resume)
        status = "finished"
    except Interrupted:
        status = "interrupted"
    finally:
        engine.save_atomic, engine.write_text_atomic = saved
    final_ok = same_everywhere()
    # BN statistics are synchronised after every epoch (mid-epoch each rank keeps its own)
    buffers_ok = all_equal(torch.cat([b.detach().float().reshape(-1) for b in model.buffers()]))
    buffers_ok = buffers_ok or status == "interrupted"
    ok = not mismatches and final_ok and buffers_ok and not writes and trainer.world_size == world
    print(f"{out_dir} rank {rank}/{world} {status}: steps {steps[0]} mismatches {mismatches} final {final_ok} "
          f"buffers {buffers_ok} writes {writes} -> {'OK' if ok else 'FAIL'}", flush=True)
    return ok


def run_search(out_dir: str, epochs: int, impl: str) -> bool:
    """A DGConv search with ``impl`` on this rank's shard of digits; True when the gates (and every other
    parameter) were bit-identical on every rank before every step and at the end, and the gates moved."""
    from mgnas.strategies.differentiable import DifferentiableSearch, SearchConfig

    from mgnas.config import load_config
    from mgnas.train.distributed import all_equal, get_rank, get_world_size

    cfg = load_config(SearchConfig, None, {"space": "resnet20_groups", "data": "digits", "budget": "b=8",
                                           "dgconv_impl": impl, "device": "cpu", "train.epochs": epochs,
                                           "train.batch_size": 32})
    search = DifferentiableSearch(cfg, out_dir, progress=False)
    layers = search.budget.layers
    impls = {m.impl for m in layers}
    start = [m.gate_pattern() for m in layers]
    mismatches: list[int] = []
    steps = [0]
    inner = search.loss_fn

    def gates() -> torch.Tensor:
        return torch.cat([m.gates.detach().reshape(-1) for m in layers])

    def checked_loss(fwd, x, y):
        same = all_equal(gates()) and all_equal(torch.cat([p.detach().reshape(-1) for p in search.model.parameters()]))
        if not same:
            mismatches.append(steps[0])
        steps[0] += 1
        return inner(fwd, x, y)

    search.loss_fn = checked_loss
    result = search.run()
    final_ok = all_equal(gates())
    moved = [m.gate_pattern() for m in layers] != start
    ok = not mismatches and final_ok and moved and impls == {impl} and result.result["dgconv_impl"] == impl
    print(f"{out_dir} search rank {get_rank()}/{get_world_size()} impl {sorted(impls)}: steps {steps[0]} "
          f"mismatches {mismatches} final {final_ok} patterns moved {moved} -> {'OK' if ok else 'FAIL'}", flush=True)
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out_dir")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--interrupt-at-step", type=int, default=None, help="stop before this step (1-based)")
    parser.add_argument("--reference", default=None, help="first train uninterrupted into this folder")
    parser.add_argument("--search", choices=("sparse", "masked"), default=None, help="a DGConv search instead")
    args = parser.parse_args(argv)
    from mgnas.train.distributed import cleanup

    if args.search is not None:
        ok = run_search(args.out_dir, args.epochs, args.search)
        cleanup()
        return 0 if ok else 3
    ok = True
    if args.reference:
        ok = run_one(args.reference, args.epochs)
    ok = run_one(args.out_dir, args.epochs, args.resume, args.interrupt_at_step) and ok
    cleanup()
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
