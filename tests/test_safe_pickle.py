"""No code runs from data (issue 11, class 1): a pickle payload in a CIFAR batch, a checkpoint or a YAML file.

CIFAR batches are read by a restricted unpickler (``mgnas.data._safe_pickle``) that admits only what a batch
holds; checkpoints by ``torch.load(weights_only=True)``; YAML by ``yaml.safe_load``.  Every payload here writes
a marker file when it runs: the tests assert the marker never appears and the CLI answers in one line, exit 2.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

import mgnas.cli as cli
from mgnas.data import DataError, load_data
from mgnas.data._safe_pickle import CifarUnpickler, UnsafePickleError, load_cifar_pickle


class _Payload:
    """Unpickling this runs ``os.system("touch MARKER")``."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _write_cifar10(folder, per_batch=4, protocol=2, evil=None, marker=None):
    """A tiny CIFAR-10 folder pickled by Python 3 (``protocol`` 2 spells bytes as ``_codecs.encode``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"batch_label": f"{name}", "labels": [i % 10 for i in range(per_batch)],
                 "data": rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8),
                 "filenames": [f"img_{i}.png".encode() for i in range(per_batch)]}
        if name == evil:
            batch["labels"] = _Payload(marker)
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    meta = {"num_cases_per_batch": per_batch, "label_names": [f"class{i}" for i in range(10)], "num_vis": 3072}
    if evil == "batches.meta":
        meta["label_names"] = _Payload(marker)
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return folder


def _one_line(capsys, code, argv, *expect):
    assert cli.main(argv) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    for text in expect:
        assert text in err, err
    return err


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_valid_cifar_folder_loads_with_every_protocol(tmp_path, protocol):
    folder = _write_cifar10(tmp_path / "cifar-10-batches-py", protocol=protocol)
    b = load_data(f"cifar10:{tmp_path}", batch_size=4, seed=0)
    assert b.num_classes == 10 and (len(b.train.dataset) + len(b.val.dataset), len(b.test.dataset)) == (20, 4)
    x, y = next(iter(b.test))
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [0, 1, 2, 3]
    with open(folder / "test_batch", "rb") as f:  # same pixels as pickle.load (on our own, harmless file)
        ref = pickle.load(f)
    assert np.array_equal(load_cifar_pickle(folder / "test_batch")["data"], ref["data"])


def test_numpy_scalars_and_dtypes_are_admitted(tmp_path):
    path = tmp_path / "b"
    obj = {"x": np.float32(1.5), "i": np.int64(3), "d": np.dtype("uint8"), "a": np.arange(6).reshape(2, 3)}
    for protocol in (2, 5):
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
        out = load_cifar_pickle(path)
        assert out["x"] == np.float32(1.5) and out["i"] == 3 and out["d"] == np.uint8
        assert np.array_equal(out["a"], obj["a"])


@pytest.mark.parametrize("evil", ["data_batch_1", "test_batch", "batches.meta"])
def test_payload_in_a_batch_never_runs_under_the_loader(tmp_path, evil):
    marker = tmp_path / "pwned"
    folder = _write_cifar10(tmp_path / "c", evil=evil, marker=marker)
    with pytest.raises(DataError) as info:
        load_data(f"cifar10:{folder}", batch_size=4)
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and str(folder / evil) in msg
    assert "refuses to unpickle posix.system" in msg or "refuses to unpickle nt.system" in msg
    assert not marker.exists(), "pickle code ran while loading a CIFAR batch"


def test_unpickler_refuses_every_other_global(tmp_path):
    import io

    for obj in (eval, print, _Payload("x"), torch.nn.Linear):
        payload = pickle.dumps(obj)
        with pytest.raises(UnsafePickleError):
            CifarUnpickler(io.BytesIO(payload), encoding="latin1").load()
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"\x80\x02cbuiltins\nexec\nq\x00X\x07\x00\x00\x00print()q\x01\x85q\x02Rq\x03.")
    with pytest.raises(DataError, match=r"refuses to unpickle builtins\.exec: a CIFAR batch holds only"):
        load_cifar_pickle(path)
    path.write_bytes(b"\x80\x02")  # truncated
    with pytest.raises(DataError, match="corrupt CIFAR batch file"):
        load_cifar_pickle(path)


@pytest.mark.parametrize("command", ["search", "train"])
def test_payload_never_runs_under_the_cli(tmp_path, capsys, command):
    marker = tmp_path / "pwned"
    folder = _write_cifar10(tmp_path / "c", evil="data_batch_1", marker=marker)
    out = tmp_path / "out"
    args = (["search", "--space", "resnet20_groups"] if command == "search" else ["train", "--model", "resnet20_cifar"])
    _one_line(capsys, 2, [*args, "--data", f"cifar10:{folder}", "--epochs", "1", "--out", str(out), "--no-progress"],
              str(folder / "data_batch_1"), "refuses to unpickle")
    assert not marker.exists(), "pickle code ran under the CLI"
    assert not out.exists() or not any(out.iterdir()), "a refused run left files behind"


def test_valid_cifar_folder_trains_through_the_cli(tmp_path, capsys):
    folder = _write_cifar10(tmp_path / "c")
    out = tmp_path / "out"
    assert cli.main(["train", "--model", "resnet20_cifar", "--data", f"cifar10:{folder}", "--epochs", "1",
                     "--batch-size", "8", "--out", str(out), "--no-progress"]) == 0
    assert (out / "result.json").is_file() and (out / "spec.json").is_file()


def test_checkpoint_payload_never_runs(tmp_path, capsys):
    """torch.load(weights_only=True) refuses the payload: --init-from, export --checkpoint and --resume."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker)}, evil)  # torch's own zip format, with the payload inside
    raw = tmp_path / "raw.pt"
    with open(raw, "wb") as f:
        pickle.dump({"model": _Payload(marker)}, f)  # a raw (legacy) pickle
    for path in (evil, raw):
        _one_line(capsys, 2, ["train", "--model", "resnet20_cifar", "--data", "digits", "--epochs", "1",
                              "--init-from", str(path), "--out", str(tmp_path / "t"), "--no-progress"], str(path))
        _one_line(capsys, 2, ["export", "resnet20_cifar", "--checkpoint", str(path), "--format", "pt2",
                              "--out", str(tmp_path / "m.pt2")], str(path))
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(evil.read_bytes())
    _one_line(capsys, 2, ["train", "--model", "resnet20_cifar", "--data", "digits", "--epochs", "1", "--resume",
                          "--out", str(run), "--no-progress"], "checkpoint.pt")
    assert not marker.exists(), "pickle code ran while loading a checkpoint"


def test_yaml_payload_never_runs(tmp_path, capsys):
    marker = tmp_path / "pwned"
    config = tmp_path / "evil.yaml"
    config.write_text(f'train: !!python/object/apply:os.system ["touch {marker}"]\n')
    for command in (["search", "--space", "resnet20_groups"], ["train", "--model", "resnet20_cifar"]):
        _one_line(capsys, 2, [*command, "--data", "digits", "--config", str(config), "--out", str(tmp_path / "o"),
                              "--no-progress"], str(config))
    import yaml

    with pytest.raises(yaml.YAMLError):
        yaml.safe_load(config.read_text())
    assert not marker.exists(), "YAML code ran while loading a config"
