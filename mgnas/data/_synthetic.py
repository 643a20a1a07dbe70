"""``synthetic[:HxW[:classes]]``: a learnable 3-channel image classification task generated on the fly.

Each class ``c`` has a smooth prototype: a 3×4×4 standard-normal pattern (seeded from ``c``) upsampled bilinearly to
H×W.  Sample ``i`` of a split has label ``i % classes`` (balanced) and is ``prototype + SYNTHETIC_NOISE * noise``
with standard-normal noise seeded from ``(split, i)``; values are already roughly zero-mean/unit-variance, so no
further normalisation is applied.  Samples are generated in ``__getitem__`` (no memory cost at 224×224) and are the
same for every run and ``seed``.  Split sizes: ``SYNTHETIC_SIZES`` (train 1,024 / val 256 / test 256).
Defaults: 32×32, 10 classes.
"""

from __future__ import annotations

import re

import torch
from torch.utils.data import Dataset

from ._bundle import DataError, _sample_seed

__all__ = ["SyntheticImages", "parse_synthetic"]

SYNTHETIC_SIZES = {"train": 1024, "val": 256, "test": 256}
SYNTHETIC_NOISE = 0.8
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
_SEED = 20240613  # fixed: the data set does not depend on the run's seed
_FORMAT = "expected 'synthetic', 'synthetic:HxW' or 'synthetic:HxW:CLASSES', e.g. 'synthetic:16x16:5'"


def parse_synthetic(arg: str | None) -> tuple[int, int, int]:
    """``"16x16:5"`` -> ``(16, 16, 5)``; ``None`` -> ``(32, 32, 10)``.  Malformed input -> DataError."""
    if arg is None:
        return 32, 32, 10
    m = re.fullmatch(r"(\d+)x(\d+)(?::(\d+))?", arg.strip())
    if m is None:
        raise DataError(f"malformed synthetic spec 'synthetic:{arg}': {_FORMAT}")
    h, w, classes = int(m[1]), int(m[2]), int(m[3] or 10)
    if not (4 <= h <= 1024 and 4 <= w <= 1024):
        raise DataError(f"synthetic image size {h}x{w} out of range: H and W must be between 4 and 1024")
    if classes < 2:
        raise DataError(f"synthetic data needs at least 2 classes, got {classes}")
    return h, w, classes


class SyntheticImages(Dataset):
    """One split of the synthetic task; ``dataset[i] -> (image (3, H, W) float32, label int)``."""

    def __init__(self, split: str, height: int, width: int, num_classes: int) -> None:
        self.split, self.height, self.width, self.num_classes = split, height, width, num_classes
        self.length = SYNTHETIC_SIZES[split]

    def __len__(self) -> int:
        return self.length

    def _prototype(self, c: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(_sample_seed(_SEED, 0, c))
        small = torch.randn(1, 3, 4, 4, generator=g)
        return torch.nn.functional.interpolate(small, size=(self.height, self.width), mode="bilinear",
                                               align_corners=False)[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        label = i % self.num_classes
        g = torch.Generator().manual_seed(_sample_seed(_SEED, 1 + _SPLIT_IDS[self.split], i))
        noise = torch.randn(3, self.height, self.width, generator=g)
        return self._prototype(label) + SYNTHETIC_NOISE * noise, label
