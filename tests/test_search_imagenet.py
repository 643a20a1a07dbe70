"""The ImageNet path of a search: a generated ImageFolder tree of real JPEGs runs one search epoch through
torchvision's ImageFolder and transforms; bad trees are one-line errors (exit 2) that write nothing."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


def _tree(root, classes=2, per_class=4, size=64, seed=0):
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
                pixels[..., c % 3] = 255 - 40 * c  # a class-dependent colour cast
                Image.fromarray(pixels).save(folder / f"img{i}.jpg", quality=90)
    return root


def _search(data, out, *extra):
    cmd = [sys.executable, "-m", "mgnas", "search", "--space", "resnet20_groups", "--data", data, "--budget", "b=4",
           "--epochs", "1", "--batch-size", "4", "--image-size", "32", "--out", str(out), "--no-progress", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_one_search_epoch_on_an_imagefolder_tree(tmp_path):
    root = _tree(tmp_path / "imagenet")
    res = _search(f"imagenet:{root}", tmp_path / "run")
    assert res.returncode == 0, res.stderr[-2000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["epochs"] == 1 and result["within_budget"]
    spec = json.loads((tmp_path / "run" / "spec.json").read_text())
    assert spec["input_size"] == [3, 32, 32] and spec["num_classes"] == 2
    assert {c["kind"] for c in _convs(spec)} <= {"dense", "group"}  # no DGConv survives in the result


def _convs(node):
    if isinstance(node, dict):
        if "kind" in node:
            yield node
        else:
            for v in node.values():
                yield from _convs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _convs(v)


@pytest.mark.parametrize("case", ["no_train", "corrupt", "missing"])
def test_bad_imagefolder_is_one_line_exit_2(tmp_path, case):
    root = tmp_path / "imagenet"
    if case == "no_train":
        (root / "val" / "a").mkdir(parents=True)
    elif case == "corrupt":
        _tree(root)
        (root / "train" / "class0" / "img0.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    res = _search(f"imagenet:{root}", tmp_path / "run")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, res.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in res.stderr
    assert {"no_train": "train", "corrupt": "img0.jpg", "missing": "does not exist"}[case] in lines[0]
    assert not (tmp_path / "run" / "spec.json").exists()
