"""mgnas.data: splits, reproducible shuffling, DDP sharding, and the real torchvision CIFAR / ImageFolder paths."""

from __future__ import annotations

import io
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from mgnas.data import DataBundle, DataError, load_data
from mgnas.data._bundle import EpochShuffleSampler, make_loader
from mgnas.data._digits import DIGITS_MEAN, DIGITS_STD, _load_sklearn, digits_split


def _order(bundle: DataBundle, epoch: int) -> list[int]:
    bundle.set_epoch(epoch)
    return list(bundle.train.sampler)


# ---------------------------------------------------------------- digits / synthetic

def test_digits_split_sizes_balance_and_constants():
    images, labels = _load_sklearn()
    split = digits_split(labels)
    assert {k: len(v) for k, v in split.items()} == {"train": 1258, "val": 269, "test": 270}
    everything = np.concatenate(list(split.values()))
    assert len(np.unique(everything)) == len(labels) == 1797  # disjoint and complete
    for c in range(10):
        n = int((labels == c).sum())
        assert abs(int((labels[split["train"]] == c).sum()) - 0.70 * n) <= 1
        assert abs(int((labels[split["val"]] == c).sum()) - 0.15 * n) <= 1
    train = images[split["train"]]
    assert train.mean() == pytest.approx(DIGITS_MEAN, abs=1e-4)
    assert train.std() == pytest.approx(DIGITS_STD, abs=1e-4)


def test_digits_split_does_not_depend_on_seed():
    a, b = load_data("digits", seed=0), load_data("digits", seed=123)
    assert a.num_classes == 10 and a.input_size == (1, 8, 8)
    for part in ("train", "val", "test"):
        ta, tb = getattr(a, part).dataset.tensors, getattr(b, part).dataset.tensors
        assert torch.equal(ta[0], tb[0]) and torch.equal(ta[1], tb[1])
    x, y = next(iter(a.val))
    assert x.shape == (64, 1, 8, 8) and y.dtype == torch.int64


def test_digits_upscaled():
    b = load_data("digits:16", batch_size=8)
    x, _ = next(iter(b.test))
    assert b.input_size == (1, 16, 16) and x.shape == (8, 1, 16, 16)


def test_set_epoch_is_reproducible():
    a, b = load_data("digits", seed=3), load_data("digits", seed=3)
    assert _order(a, 1) == _order(b, 1)
    assert _order(a, 1) != _order(a, 2)
    assert _order(a, 1) != _order(load_data("digits", seed=4), 1)
    # the batches, not only the sampler: epoch 5 after epochs 0..4 equals epoch 5 straight away (resume)
    for e in range(5):
        a.set_epoch(e)
        next(iter(a.train))
    a.set_epoch(5)
    b.set_epoch(5)
    xa, ya = next(iter(a.train))
    xb, yb = next(iter(b.train))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_synthetic_shapes():
    b = load_data("synthetic:16x16:5", batch_size=32)
    assert b.num_classes == 5 and b.input_size == (3, 16, 16)
    x, y = next(iter(b.train))
    assert x.shape == (32, 3, 16, 16) and x.dtype == torch.float32
    assert int(y.min()) >= 0 and int(y.max()) <= 4
    again = load_data("synthetic:16x16:5", seed=9)
    assert torch.equal(b.val.dataset[7][0], again.val.dataset[7][0])  # data do not depend on the seed
    assert load_data("synthetic").input_size == (3, 32, 32)


def test_epoch_sampler_matches_distributed_sampler_on_one_rank():
    ds = list(range(50))
    single = EpochShuffleSampler(ds, seed=7)
    ddp = torch.utils.data.DistributedSampler(ds, num_replicas=1, rank=0, shuffle=True, seed=7)
    single.set_epoch(3)
    ddp.set_epoch(3)
    assert list(single) == list(ddp)


# ---------------------------------------------------------------- distributed

def test_distributed_partition_explicit_ranks():
    ds = torch.utils.data.TensorDataset(torch.arange(40).float(), torch.arange(40))
    loaders = [make_loader(ds, batch_size=4, train=True, seed=1, workers=0, distributed=True, num_replicas=2,
                           rank=r) for r in range(2)]
    for loader in loaders:
        loader.sampler.set_epoch(2)
    shards = [list(loader.sampler) for loader in loaders]
    assert len(shards[0]) == len(shards[1]) == 20
    assert not set(shards[0]) & set(shards[1]) and set(shards[0]) | set(shards[1]) == set(range(40))


def test_distributed_load_data_uses_torchrun_env(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    b = load_data("digits", distributed=True, seed=0)
    assert isinstance(b.train.sampler, torch.utils.data.DistributedSampler)
    assert b.train.sampler.rank == 1 and b.train.sampler.num_replicas == 3
    assert len(b.train.sampler) == 420  # ceil(1258 / 3)
    assert len(b.val.dataset) == 269 and len(list(b.val.sampler)) == 269  # eval is not sharded
    assert _order(b, 1) != _order(b, 2)


# ---------------------------------------------------------------- torchvision paths

def test_import_mgnas_data_does_not_import_torchvision():
    code = "import sys, mgnas.data; mgnas.data.load_data('digits'); assert 'torchvision' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


class _Py2Pickler(pickle._Pickler):
    """Writes ``str`` and ``bytes`` as Python-2 byte strings (BINSTRING), as in the official CIFAR files: loaded with
    ``encoding="bytes"`` the keys are ``b"data"``, with ``encoding="latin1"`` (torchvision) ``"data"``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        self.write(pickle.BINSTRING + len(raw).to_bytes(4, "little") + raw)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str  # numpy's raw array buffer, a Python-2 str too


def _py2_pickle(obj, path):
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    path.write_bytes(buf.getvalue())


def _write_cifar10(folder, per_batch=20):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in files:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [i % 10 for i in range(per_batch)]
        _py2_pickle({"batch_label": f"{name} of 5", "labels": labels, "data": data,
                     "filenames": [f"img_{i}.png" for i in range(per_batch)]}, folder / name)
    _py2_pickle({"num_cases_per_batch": per_batch, "label_names": [f"class{i}" for i in range(10)],
                 "num_vis": 3072}, folder / "batches.meta")


def test_cifar10_pickle_batches(tmp_path):
    _write_cifar10(tmp_path / "cifar-10-batches-py")
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        assert b"data" in pickle.load(f, encoding="bytes")  # the real file layout
    b = load_data(f"cifar10:{tmp_path}", batch_size=8, seed=1)  # the parent folder works
    assert b.num_classes == 10 and b.input_size == (3, 32, 32)
    assert (len(b.train.dataset), len(b.val.dataset), len(b.test.dataset)) == (90, 10, 20)
    from mgnas.data._vision import CifarBatches  # read by the restricted unpickler, never torchvision's pickle.load

    assert isinstance(b.train.dataset.dataset, CifarBatches)
    x, y = next(iter(b.train))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    again = load_data(f"cifar10:{tmp_path / 'cifar-10-batches-py'}", batch_size=8, seed=1)  # the folder itself
    b.set_epoch(4)
    again.set_epoch(4)
    assert torch.equal(next(iter(b.train))[0], next(iter(again.train))[0])  # order + augmentation reproducible
    b.set_epoch(5)
    assert not torch.equal(next(iter(b.train))[0], next(iter(again.train))[0])


def test_cifar_bad_input(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(f"cifar10:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        load_data(f"cifar10:{tmp_path / 'empty'}")
    folder = tmp_path / "c"
    _write_cifar10(folder, per_batch=4)
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="missing.*test_batch"):
        load_data(f"cifar10:{folder}")
    (folder / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="corrupt CIFAR"):
        load_data(f"cifar10:{folder}")


def _write_image_tree(root, classes=("cat", "dog", "fox"), per_class=4):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(root / split / c / f"{i}.jpg", format="JPEG")


def test_imagefolder_jpegs_through_torchvision(tmp_path):
    _write_image_tree(tmp_path)
    b = load_data(f"imagenet:{tmp_path}", batch_size=4, image_size=32, seed=2)
    assert b.num_classes == 3 and b.input_size == (3, 32, 32) and b.test is None
    assert len(b.train.dataset) == len(b.val.dataset) == 12
    b.set_epoch(1)
    x, y = next(iter(b.train))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert int(y.max()) <= 2
    v1, v2 = next(iter(b.val))[0], next(iter(b.val))[0]
    assert torch.equal(v1, v2)  # eval transform is deterministic
    # one worker process gives the same batches as the main process (augmentation seeded per sample)
    w = load_data(f"imagenet:{tmp_path}", batch_size=4, image_size=32, seed=2, workers=1)
    w.set_epoch(1)
    xw, yw = next(iter(w.train))
    assert torch.equal(x, xw) and torch.equal(y, yw)


def test_imagefolder_corrupt_image_is_a_clear_error(tmp_path):
    _write_image_tree(tmp_path, classes=("a", "b"), per_class=2)
    bad = tmp_path / "val" / "b" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[:200])  # truncated JPEG
    b = load_data(f"imagenet:{tmp_path}", batch_size=4, image_size=16)
    with pytest.raises(DataError, match=r"corrupt image file .*1\.jpg") as info:
        list(b.val)
    assert "\n" not in str(info.value)
    w = load_data(f"imagenet:{tmp_path}", batch_size=4, image_size=16, workers=1)
    with pytest.raises(DataError, match=r"corrupt image file .*1\.jpg") as info:
        list(w.val)
    assert "\n" not in str(info.value) and "worker" not in str(info.value)


def test_imagenet_bad_input(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(f"imagenet:{tmp_path / 'missing'}")
    with pytest.raises(DataError, match="empty"):
        load_data(f"imagenet:{tmp_path}")
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError, match="no train/ folder"):
        load_data(f"imagenet:{tmp_path}")
    other = tmp_path / "other"
    _write_image_tree(other, per_class=2)
    (other / "val" / "extra").mkdir()
    (other / "val" / "cat" / "0.jpg").rename(other / "val" / "extra" / "0.jpg")
    with pytest.raises(DataError, match=r"class folders differ \(only in train: \[\], only in val: \['extra'\]\)"):
        load_data(f"imagenet:{other}")
    (other / "val" / "cat" / "1.jpg").unlink()
    with pytest.raises(DataError, match="no images in .*val: Found no valid file for the classes cat"):
        load_data(f"imagenet:{other}")


@pytest.mark.parametrize("spec, message", [
    ("mnist", "unknown data set 'mnist'; valid data sets: digits, synthetic, cifar10, cifar100, imagenet"),
    ("", "empty data set spec"),
    ("imagenet:", "imagenet needs a path"),
    ("synthetic:16", "malformed synthetic spec"),
    ("synthetic:16x16:1", "at least 2 classes"),
    ("synthetic:axb", "malformed synthetic spec"),
    ("digits:big", "malformed digits spec"),
])
def test_bad_specs(spec, message):
    with pytest.raises(DataError, match=message):
        load_data(spec)


def test_torchvision_compat_import():
    from mgnas.data._torchvision_compat import import_torchvision

    tv = import_torchvision()
    assert hasattr(torch.ops.torchvision, "nms")  # real op, or the schema the shim defined
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    assert tv.datasets.ImageFolder is ImageFolder and callable(v2.RandomResizedCrop(8))


def test_distributed_one_process_gloo_group(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        b = load_data("digits", distributed=True, seed=5)
        sampler = b.train.sampler
        assert isinstance(sampler, torch.utils.data.DistributedSampler)
        assert (sampler.rank, sampler.num_replicas, len(sampler)) == (0, 1, 1258)
        plain = load_data("digits", seed=5)
        assert _order(b, 2) == _order(plain, 2)  # 1-rank DDP sees the plain run's order
    finally:
        dist.destroy_process_group()
