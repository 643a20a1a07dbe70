"""Data sets for search and training: ``load_data(spec) -> DataBundle`` (train / val / test loaders).

Specs (``NAME`` or ``NAME:ARG``):

=======================  ==============================================================================
``digits``               scikit-learn's bundled 8×8 digits, 1 channel, fixed 70/15/15 split (``_digits``)
``digits:16``            the same, upscaled to 16×16 (any size 8..512)
``synthetic[:HxW[:K]]``  learnable 3-channel synthetic images, default 32×32 and 10 classes (``_synthetic``)
``cifar10:PATH``         CIFAR-10 python-pickle batches; ``cifar100:PATH`` likewise (``_vision``)
``imagenet:PATH``        ImageFolder tree with ``train/`` and ``val/`` (``_vision``)
=======================  ==============================================================================

Reproducibility: call ``bundle.set_epoch(e)`` before each epoch; the train order and the random augmentations are
then a function of ``(seed, epoch)`` only, so a resumed run sees the same batches as an uninterrupted one.
Distributed (``distributed=True``): the train loader uses a ``DistributedSampler`` (rank and world size from the
process group, else torchrun's ``RANK``/``WORLD_SIZE``); val and test are evaluated in full on every rank.
See ``_bundle`` for both decisions.  Bad input raises :class:`DataError` (a ``ValueError``) with one clear line.

torchvision is imported only for ``cifar*`` and ``imagenet`` (``import mgnas.data`` needs only torch).
"""

from __future__ import annotations

from torch.utils.data import Dataset

from ._bundle import DataBundle, DataError, make_loader

__all__ = ["DATASETS", "DataBundle", "DataError", "load_data"]

DATASETS = ("digits", "synthetic", "cifar10", "cifar100", "imagenet")
_NEEDS_PATH = ("cifar10", "cifar100", "imagenet")


def _split_spec(spec: str) -> tuple[str, str | None]:
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"empty data set spec; valid data sets: {', '.join(DATASETS)}")
    name, sep, arg = spec.strip().partition(":")
    name = name.lower()
    if name not in DATASETS:
        raise DataError(f"unknown data set {name!r}; valid data sets: {', '.join(DATASETS)} "
                        "(e.g. 'digits', 'synthetic:16x16:5', 'cifar10:/data/cifar', 'imagenet:/data/imagenet')")
    if name in _NEEDS_PATH and not arg.strip():
        raise DataError(f"{name} needs a path: '{name}:PATH'")
    return name, (arg if sep else None)


def _in_memory(name: str, splits: dict[str, Dataset], num_classes: int, input_size: tuple[int, int, int], *,
               batch_size: int, eval_batch_size: int, workers: int, seed: int, distributed: bool) -> DataBundle:
    common = {"seed": seed, "workers": workers}
    return DataBundle(
        name=name,
        train=make_loader(splits["train"], batch_size=batch_size, train=True, distributed=distributed, **common),
        val=make_loader(splits["val"], batch_size=eval_batch_size, train=False, **common),
        test=make_loader(splits["test"], batch_size=eval_batch_size, train=False, **common),
        num_classes=num_classes, input_size=input_size)


def _size_arg(name: str, arg: str | None, image_size: int | None, default: int) -> int:
    if arg is not None:
        if not arg.strip().isdigit():
            raise DataError(f"malformed {name} spec '{name}:{arg}': expected '{name}' or '{name}:SIZE', e.g. "
                            f"'{name}:16'")
        size = int(arg)
        if image_size is not None and image_size != size:
            raise DataError(f"'{name}:{arg}' conflicts with image_size={image_size}")
        return size
    return default if image_size is None else image_size


def load_data(spec: str, *, batch_size: int = 64, eval_batch_size: int | None = None, workers: int = 0,
              seed: int = 0, distributed: bool = False, download: bool = False,
              image_size: int | None = None) -> DataBundle:
    """Build the loaders of the data set named by ``spec`` (see the module docstring for the specs).

    ``eval_batch_size`` defaults to ``batch_size``.  ``seed`` drives the train order and augmentations (never the
    splits, which are fixed).  ``download`` fetches CIFAR into PATH (network needed).  ``image_size`` is the crop
    size for ``imagenet`` (default 224), the side for ``digits``/``synthetic`` when the spec gives none; CIFAR is
    always 32×32.  Raises :class:`DataError` on bad input.
    """
    name, arg = _split_spec(spec)
    eval_bs = batch_size if eval_batch_size is None else eval_batch_size
    if batch_size < 1 or eval_bs < 1:
        raise DataError(f"batch sizes must be >= 1, got batch_size={batch_size}, eval_batch_size={eval_bs}")
    common = {"batch_size": batch_size, "eval_batch_size": eval_bs, "workers": workers, "seed": seed,
              "distributed": distributed}
    if name == "digits":
        from ._digits import digits_tensors

        size = _size_arg(name, arg, image_size, 8)
        return _in_memory("digits", digits_tensors(size), 10, (1, size, size), **common)
    if name == "synthetic":
        from ._synthetic import SyntheticImages, parse_synthetic

        if arg is None and image_size is not None:
            arg = f"{image_size}x{image_size}"
        h, w, k = parse_synthetic(arg)
        splits = {s: SyntheticImages(s, h, w, k) for s in ("train", "val", "test")}
        return _in_memory("synthetic", splits, k, (3, h, w), **common)
    from ._vision import load_cifar, load_imagenet

    if name == "imagenet":
        return load_imagenet(arg, image_size=image_size, **common)
    return load_cifar(name, arg, download=download, image_size=image_size, **common)
