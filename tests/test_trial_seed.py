"""A study trial's initial weights depend on (seed, trial number) only, not on the RNG the trials before it used."""

from __future__ import annotations

import torch
from mgnas.strategies.study._trial import seed_trial, trial_seed

from mgnas.models import build_model, model_spec


def _weights_after(consumed: int, seed: int, number: int) -> torch.Tensor:
    torch.rand(consumed)  # what earlier trials (pruned early or trained long) took from the generator
    seed_trial(seed, number)
    return torch.cat([p.detach().flatten() for p in build_model(model_spec("resnet20_cifar")).parameters()])


def test_a_trial_builds_the_same_model_whatever_came_before():
    assert torch.equal(_weights_after(3, 0, 5), _weights_after(10_000, 0, 5))
    assert not torch.equal(_weights_after(0, 0, 5), _weights_after(0, 0, 6))
    assert not torch.equal(_weights_after(0, 0, 5), _weights_after(0, 1, 5))


def test_trial_seeds_are_distinct_and_in_range():
    seeds = {trial_seed(s, n) for s in range(3) for n in range(1000)}
    assert len(seeds) == 3000 and all(0 <= v < 2**31 for v in seeds)
