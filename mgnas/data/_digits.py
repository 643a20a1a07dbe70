"""``digits``: scikit-learn's bundled 8×8 handwritten digits (1,797 images, 10 classes; no download).

Split (fixed, independent of the run's ``seed``): per class, the sample indices are permuted with
``numpy.random.default_rng(DIGITS_SPLIT_SEED)`` and cut 70 / 15 / 15 % (``round`` for train and val, the rest
test), giving 1,258 train, 269 validation and 270 test images with every class in every split in proportion.

Pixels: the raw 0..16 intensities are scaled to [0, 1], optionally upscaled (``digits:16`` -> 16×16, bilinear,
``antialias=False``), then normalised with ``DIGITS_MEAN`` / ``DIGITS_STD``: the mean and standard deviation of the
[0, 1]-scaled 8×8 training split (computed once; a test recomputes them).  The same constants are used for every
size, so an upscaled image is not exactly zero-mean/unit-variance.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ._bundle import DataError

__all__ = ["DIGITS_MEAN", "DIGITS_SPLIT_SEED", "DIGITS_STD", "digits_split", "digits_tensors"]

DIGITS_SPLIT_SEED = 0
DIGITS_FRACTIONS = (0.70, 0.15)  # train, val; test is the remainder
DIGITS_MEAN = 0.30559
DIGITS_STD = 0.37660


def _load_sklearn() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise DataError("the digits data set needs scikit-learn: pip install 'mgnas[data]'") from e
    d = load_digits()
    return d.images.astype(np.float32) / 16.0, d.target.astype(np.int64)


def digits_split(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Stratified fixed split of the sample indices: ``{"train": idx, "val": idx, "test": idx}`` (each sorted)."""
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_train = round(DIGITS_FRACTIONS[0] * len(idx))
        n_val = round(DIGITS_FRACTIONS[1] * len(idx))
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train:n_train + n_val])
        parts["test"].append(idx[n_train + n_val:])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def digits_tensors(size: int = 8) -> dict[str, TensorDataset]:
    """The three splits as ``TensorDataset(images (N, 1, size, size) normalised, labels (N,))``."""
    if not 8 <= size <= 512:
        raise DataError(f"digits size must be between 8 and 512 (e.g. 'digits:16'), got {size}")
    images, labels = _load_sklearn()
    x = torch.from_numpy(images).unsqueeze(1)
    if size != 8:
        x = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = (x - DIGITS_MEAN) / DIGITS_STD
    y = torch.from_numpy(labels)
    return {k: TensorDataset(x[idx], y[idx]) for k, idx in digits_split(labels).items()}
