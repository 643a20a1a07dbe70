"""A full disk (issue 11, class 11): one line, exit code 1, the previous checkpoint intact, and no partial
output that looks complete. ENOSPC is simulated in-process where the bytes reach the disk."""

from __future__ import annotations

import errno
import os

import pytest
import torch

import mgnas.cli as cli
from mgnas.train.checkpoint import load_checkpoint

TRAIN = ["train", "--model", "resnet20_cifar", "--data", "digits", "--batch-size", "256", "--no-progress"]
SEARCH = ["search", "--space", "resnet20_groups", "--data", "digits", "--batch-size", "256", "--budget", "b=4",
          "--no-progress"]


def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _one_line_disk_full(capsys, argv):
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "no space left on device" in err and "--resume" in err, err


def _leftovers(out):
    return sorted(p.name for p in out.rglob("*") if ".tmp" in p.name)


def test_full_disk_while_checkpointing_keeps_the_previous_checkpoint(tmp_path, capsys, monkeypatch):
    real_save = torch.save
    calls = {"n": 0}

    def second_save_fails(obj, f, *args, **kwargs):  # epoch 2: some bytes reach the temporary file, then ENOSPC
        calls["n"] += 1
        real_save(obj, f, *args, **kwargs)
        if calls["n"] >= 2:
            f.truncate(100)
            _enospc()

    monkeypatch.setattr(torch, "save", second_save_fails)
    out = tmp_path / "run"
    _one_line_disk_full(capsys, [*TRAIN, "--epochs", "2", "--out", str(out)])
    ckpt = load_checkpoint(out / "checkpoint.pt")  # the epoch-1 checkpoint, complete and loadable
    assert ckpt["epoch"] == 1 and len(ckpt["history"]) == 1
    assert not (out / "result.json").exists() and not (out / "spec.json").exists()
    assert _leftovers(out) == []
    # once there is space again, --resume continues from that checkpoint
    monkeypatch.setattr(torch, "save", real_save)
    assert cli.main([*TRAIN, "--epochs", "2", "--out", str(out), "--resume"]) == 0
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2 and (out / "result.json").is_file()


def test_full_disk_while_writing_the_report_leaves_no_report(tmp_path, capsys, monkeypatch):
    import mgnas._atomic as atomic

    real_fsync = os.fsync

    def fsync_fails_for_the_report(fd):
        if "report.html" in os.readlink(f"/proc/self/fd/{fd}"):
            _enospc()  # the whole report was written, the file system could not keep it
        return real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync_fails_for_the_report)
    out = tmp_path / "search"
    _one_line_disk_full(capsys, [*SEARCH, "--epochs", "1", "--out", str(out)])
    assert not (out / "report.html").exists(), "a truncated report.html looks complete"
    assert not (out / "result.json").exists()  # written last: its absence says the run did not finish
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    assert _leftovers(out) == []
    monkeypatch.setattr(atomic.os, "fsync", real_fsync)
    assert cli.main([*SEARCH, "--epochs", "1", "--out", str(out), "--resume"]) == 0
    assert (out / "report.html").is_file() and (out / "result.json").is_file()


@pytest.mark.parametrize("wrapped", [False, True])
def test_is_disk_full_sees_through_wrapping(wrapped):
    from mgnas._atomic import is_disk_full

    err = OSError(errno.ENOSPC, "No space left on device")
    if wrapped:
        try:
            try:
                raise err
            except OSError as inner:
                raise RuntimeError("PytorchStreamWriter failed writing file data/0") from inner
        except RuntimeError as outer:
            err = outer
    assert is_disk_full(err)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
