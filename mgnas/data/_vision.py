"""CIFAR-10/100 (python-pickle batches) and ImageNet-style ImageFolder trees, through torchvision.

torchvision is imported here only, through :func:`import_torchvision` (see ``_torchvision_compat`` for why).

CIFAR (``cifar10:PATH`` / ``cifar100:PATH``): PATH is the extracted ``cifar-10-batches-py`` /
``cifar-100-python`` folder or its parent.  The batches are pickles, and ``pickle.load`` runs whatever code a
crafted file names, so torchvision's CIFAR10/CIFAR100 classes never read them: :mod:`._safe_pickle`'s restricted
unpickler does (only dicts, lists, strings, numbers and NumPy arrays; anything else is a one-line DataError naming
the file), and :class:`CifarBatches` serves ``(PIL image, label)`` pairs as torchvision would.  Files are checked
for presence and shape (md5 sums are not checked), except with ``download=True`` where torchvision downloads and
verifies the official archive.  Splits: ``train`` = the training batches minus a
fixed stratified hold-out of ``CIFAR_VAL_FRACTION`` (10 %, at least one image per class; independent of ``seed``),
``val`` = that hold-out (eval transform), ``test`` = the official test batch.
Train transform: RandomCrop(32, padding=4) + RandomHorizontalFlip; both: ToImage, ToDtype(float32, scale=True),
Normalize with ``CIFAR10_MEAN/STD`` or ``CIFAR100_MEAN/STD`` (per-channel pixel statistics of the training set).

ImageNet (``imagenet:PATH``): ``PATH/train/<class>/*`` and ``PATH/val/<class>/*`` read by ImageFolder (val must have
the same class folders).  Train: RandomResizedCrop(image_size) + RandomHorizontalFlip; eval: Resize(image_size /
0.875) (256 for 224) + CenterCrop(image_size); Normalize with ``IMAGENET_MEAN/STD``.  ``test`` is None.
A corrupt or unreadable image is a **clear error**, not a skip: reading it raises DataError naming the file
("corrupt image file PATH (...): remove or replace it, then resume").  Skipping silently changes the data set a
run was trained on and cannot be counted reliably across worker processes; the end-of-epoch checkpoint makes
"fix and ``--resume``" cheap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ._bundle import DataBundle, DataError, SeededTransform, make_loader
from ._safe_pickle import load_cifar_pickle
from ._torchvision_compat import import_torchvision

__all__ = ["CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD", "IMAGENET_MEAN", "IMAGENET_STD",
           "CifarBatches", "load_cifar", "load_imagenet"]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR_VAL_FRACTION = 0.1
_CIFAR_SPLIT_SEED = 0


def _tv() -> Any:
    try:
        return import_torchvision()
    except ImportError as e:
        raise DataError(f"{e}") from None


def _v2() -> Any:
    _tv()
    import torchvision.transforms.v2 as v2  # not imported by ``import torchvision``

    return v2


#: name -> (base folder, train files, test files, meta file, label key, class-names key)
_CIFAR = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta",
                "labels", "label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}


class CifarBatches(Dataset):
    """CIFAR images (N×32×32×3 uint8) and labels read by the restricted unpickler; items are ``(PIL image, label)``
    exactly as torchvision's CIFAR10/CIFAR100 return them, so the transforms are unchanged."""

    def __init__(self, data: np.ndarray, targets: list[int], classes: list[str]) -> None:
        self.data, self.targets, self.classes = data, targets, classes

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[Any, int]:
        from PIL import Image

        return Image.fromarray(self.data[i]), self.targets[i]


def _download(name: str, root: Path) -> Path:
    """Download and md5-verify the official archive with torchvision (no batch is unpickled by torchvision)."""
    datasets = _tv().datasets
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    ds = cls.__new__(cls)
    ds.root = os.fspath(root)
    try:
        ds.download()
    except Exception as e:  # network errors come in many types
        raise DataError(f"could not download {name} to {root}: {e}") from None
    return root / cls.base_folder


def _read_batch(path: Path, label_key: str) -> tuple[np.ndarray, list[int]]:
    entry = load_cifar_pickle(path)
    if not isinstance(entry, dict) or "data" not in entry or label_key not in entry:
        raise DataError(f"corrupt CIFAR batch file {path}: expected a dict with 'data' and '{label_key}'")
    data, labels = entry["data"], entry[label_key]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.size % 3072 or data.size == 0:
        raise DataError(f"corrupt CIFAR batch file {path}: 'data' is not an N x 3072 uint8 array")
    if not isinstance(labels, list) or len(labels) != data.size // 3072 or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in labels):
        raise DataError(f"corrupt CIFAR batch file {path}: '{label_key}' is not a list of one int per image")
    return data.reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1)), labels


def _cifar_dataset(name: str, folder: Path, train: bool) -> CifarBatches:
    _, train_files, test_files, meta_file, label_key, names_key = _CIFAR[name]
    meta = load_cifar_pickle(folder / meta_file)
    classes = meta.get(names_key) if isinstance(meta, dict) else None
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise DataError(f"corrupt CIFAR meta file {folder / meta_file}: no list of class names '{names_key}'")
    parts = [_read_batch(folder / f, label_key) for f in (train_files if train else test_files)]
    data = np.concatenate([d for d, _ in parts])
    targets = [v for _, labels in parts for v in labels]
    bad = next((v for v in targets if not 0 <= v < len(classes)), None)
    if bad is not None:
        raise DataError(f"corrupt CIFAR batches in {folder}: label {bad} is outside 0..{len(classes) - 1}")
    return CifarBatches(data, targets, classes)


def _cifar_folder(name: str, path: Path) -> Path:
    base, train_files, test_files, meta_file = _CIFAR[name][:4]
    if not path.exists():
        raise DataError(f"{name} path does not exist: {path}")
    if not path.is_dir():
        raise DataError(f"{name} path is not a folder: {path}")
    if not any(path.iterdir()):
        raise DataError(f"{name} path is empty: {path} (expected the extracted '{base}' batches)")
    folder = path / base if (path / base).is_dir() else path
    needed = [*train_files, *test_files, meta_file]
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise DataError(f"{name} files missing in {folder}: {', '.join(missing)} "
                        f"(expected the python-pickle batches of '{base}')")
    return folder


def _holdout(labels: np.ndarray, fraction: float) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(_CIFAR_SPLIT_SEED)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = max(1, round(fraction * len(idx))) if len(idx) > 1 else 0
        val.extend(idx[:n_val].tolist())
        train.extend(idx[n_val:].tolist())
    return sorted(train), sorted(val)


def load_cifar(name: str, path: str, *, batch_size: int, eval_batch_size: int, workers: int, seed: int,
               distributed: bool, download: bool, image_size: int | None) -> DataBundle:
    """``cifar10:PATH`` / ``cifar100:PATH`` -> DataBundle (see the module docstring for splits and transforms)."""
    if image_size not in (None, 32):
        raise DataError(f"{name} images are 32x32; image_size={image_size} is not supported (leave it unset)")
    v2 = _v2()
    root = Path(path).expanduser()
    if download:
        root = _download(name, root)
    folder = _cifar_folder(name, root)
    train_raw, test_raw = _cifar_dataset(name, folder, True), _cifar_dataset(name, folder, False)
    mean, std = (CIFAR10_MEAN, CIFAR10_STD) if name == "cifar10" else (CIFAR100_MEAN, CIFAR100_STD)
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    train_tf = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), *tail])
    eval_tf = v2.Compose(tail)
    train_idx, val_idx = _holdout(np.asarray(train_raw.targets), CIFAR_VAL_FRACTION)
    pin = torch.cuda.is_available()
    common = {"seed": seed, "workers": workers, "pin_memory": pin}
    return DataBundle(
        name=name,
        train=make_loader(SeededTransform(train_raw, train_tf, indices=train_idx, seed=seed),
                          batch_size=batch_size, train=True, distributed=distributed, **common),
        val=make_loader(SeededTransform(train_raw, eval_tf, indices=val_idx), batch_size=eval_batch_size,
                        train=False, **common),
        test=make_loader(SeededTransform(test_raw, eval_tf), batch_size=eval_batch_size, train=False, **common),
        num_classes=len(train_raw.classes),
        input_size=(3, 32, 32),
    )


def _read_image(path: str) -> Any:
    """ImageFolder loader: an RGB PIL image, or DataError naming a corrupt/unreadable file."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"corrupt image file {path} ({type(e).__name__}: {e}): remove or replace it, then resume") \
            from None


def _image_folder(split_dir: Path) -> Any:
    try:
        return _tv().datasets.ImageFolder(os.fspath(split_dir), loader=_read_image)
    except FileNotFoundError as e:
        raise DataError(f"no images in {split_dir}: {e}") from None


def load_imagenet(path: str, *, batch_size: int, eval_batch_size: int, workers: int, seed: int,
                  distributed: bool, image_size: int | None) -> DataBundle:
    """``imagenet:PATH`` -> DataBundle with ``test=None`` (see the module docstring)."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"imagenet path does not exist: {root}")
    if not root.is_dir() or not any(root.iterdir()):
        raise DataError(f"imagenet path is empty or not a folder: {root} (expected train/ and val/ class folders)")
    for split in ("train", "val"):
        if not (root / split).is_dir():
            raise DataError(f"imagenet path {root} has no {split}/ folder "
                            f"(expected {root}/train/<class>/<image> and {root}/val/<class>/<image>)")
    size = 224 if image_size is None else image_size
    if size < 8:
        raise DataError(f"image_size must be >= 8, got {size}")
    v2 = _v2()
    train_raw, val_raw = _image_folder(root / "train"), _image_folder(root / "val")
    if train_raw.classes != val_raw.classes:
        only_train = sorted(set(train_raw.classes) - set(val_raw.classes))[:5]
        only_val = sorted(set(val_raw.classes) - set(train_raw.classes))[:5]
        raise DataError(f"imagenet train/ and val/ class folders differ (only in train: {only_train}, "
                        f"only in val: {only_val})")
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    train_tf = v2.Compose([v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(), *tail])
    eval_tf = v2.Compose([v2.Resize(int(size / 0.875), antialias=True), v2.CenterCrop(size), *tail])
    common = {"seed": seed, "workers": workers, "pin_memory": torch.cuda.is_available()}
    return DataBundle(
        name="imagenet",
        train=make_loader(SeededTransform(train_raw, train_tf, seed=seed), batch_size=batch_size, train=True,
                          distributed=distributed, **common),
        val=make_loader(SeededTransform(val_raw, eval_tf), batch_size=eval_batch_size, train=False, **common),
        test=None,
        num_classes=len(train_raw.classes),
        input_size=(3, size, size),
    )
