"""The data-set-independent parts of ``mgnas.data``: errors, the bundle, samplers and loader construction.

Reproducible shuffling.  Every train order is a function of ``(seed, epoch)`` only: the single-process sampler and
``torch.utils.data.DistributedSampler`` both draw ``torch.randperm`` from a generator seeded with ``seed + epoch``
(the DistributedSampler convention, so a 1-process DDP run sees the same order as a plain run).  Random
augmentations are seeded per sample from ``(seed, epoch, index)`` by :class:`SeededTransform`, so they depend
neither on the global RNG, nor on the number of worker processes, nor on what ran before: a run resumed at
epoch ``e`` sees exactly the batches an uninterrupted run sees at epoch ``e``.

Distributed evaluation.  With ``distributed=True`` only the train loader is sharded (DistributedSampler, which pads
the last shard by repeating samples).  Validation and test loaders are evaluated in full on every rank: the metrics
are then exact (no padded duplicates) and identical on every rank without a collective.  The price is redundant
evaluation work (N× on N ranks), acceptable for ImageNet's 50k validation images.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

__all__ = ["DataBundle", "DataError", "EpochShuffleSampler", "SeededTransform", "make_loader", "dist_info"]


class DataError(ValueError):
    """Bad user input for a data set: unknown name, missing/empty path, no ``train/`` folder, corrupt file, ..."""


@dataclass
class DataBundle:
    """Train / validation / (optional) test loaders of one data set plus what a model needs to know about it."""

    name: str
    train: DataLoader
    val: DataLoader
    test: DataLoader | None
    num_classes: int
    input_size: tuple[int, int, int]  # (C, H, W) of one sample as the model sees it

    def set_epoch(self, epoch: int) -> None:
        """Select the train order and augmentations of ``epoch`` (deterministic in ``(seed, epoch)``).

        Call it before iterating ``train`` in each epoch, with or without DDP.
        """
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        for obj in (self.train.sampler, self.train.dataset):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)


class EpochShuffleSampler(Sampler[int]):
    """Single-process counterpart of ``DistributedSampler(shuffle=True)``: a permutation seeded by ``seed + epoch``."""

    def __init__(self, data_source: Sized, seed: int = 0) -> None:
        self.num_samples = len(data_source)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.num_samples, generator=g).tolist())

    def __len__(self) -> int:
        return self.num_samples


def _sample_seed(seed: int, epoch: int, index: int) -> int:
    """Mix ``(seed, epoch, index)`` into one 63-bit seed (splitmix64 finaliser: nearby inputs -> unrelated seeds)."""
    z = (seed * 0x9E3779B97F4A7C15 + epoch * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


class SeededTransform(Dataset):
    """``(dataset[i][0] -> transform, label)`` with the random transform seeded from ``(seed, epoch, i)``.

    ``indices`` selects a subset of ``dataset`` (used for the CIFAR validation hold-out).  Without a ``seed`` the
    transform is run as is (evaluation transforms are deterministic).  The global torch RNG is forked, not consumed.
    """

    def __init__(self, dataset: Any, transform: Callable[[Any], Any], *, indices: list[int] | None = None,
                 seed: int | None = None) -> None:
        self.dataset = dataset
        self.transform = transform
        self.indices = indices
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        j = self.indices[i] if self.indices is not None else i
        image, label = self.dataset[j]
        if self.seed is None:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_sample_seed(self.seed, self.epoch, j))
            return self.transform(image), label


def dist_info() -> tuple[int, int]:
    """``(rank, world_size)``: from the process group, else torchrun's ``RANK``/``WORLD_SIZE``, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class _Loader(DataLoader):
    """A ``DataLoader`` whose worker-process ``DataError`` surfaces as the original one-line message.

    PyTorch re-raises a worker's exception with a message that starts "Caught DataError in DataLoader worker
    process 0." followed by the worker's traceback; the useful line is the last one.
    """

    def __iter__(self):  # type: ignore[override]
        iterator = super().__iter__()
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except DataError as e:
                text = str(e).strip()
                if "Original Traceback" in text:
                    raise DataError(text.splitlines()[-1].split("DataError: ", 1)[-1]) from None
                raise
            yield batch


def make_loader(dataset: Dataset, *, batch_size: int, train: bool, seed: int, workers: int,
                distributed: bool = False, num_replicas: int | None = None, rank: int | None = None,
                pin_memory: bool = False) -> DataLoader:
    """Build a loader.  Train: reproducible shuffle (DistributedSampler when ``distributed``) and ``drop_last``
    when every rank holds at least one full batch (avoids a trailing 1-sample batch in BatchNorm).  Eval: in order.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    if workers < 0:
        raise DataError(f"workers must be >= 0, got {workers}")
    sampler: Sampler[int] | None = None
    per_rank = len(dataset)
    if train and distributed:
        if num_replicas is None or rank is None:
            rank, num_replicas = dist_info()
        sampler = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        per_rank = len(sampler)
    elif train:
        sampler = EpochShuffleSampler(dataset, seed=seed)
    generator = torch.Generator()
    generator.manual_seed(seed)  # worker base seeds; keeps the global RNG untouched
    return _Loader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                   drop_last=train and per_rank >= batch_size, pin_memory=pin_memory,
                   generator=generator, persistent_workers=False)
