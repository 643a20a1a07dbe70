"""``mgnas.export.export`` with an input size the model cannot take: a one-line ValueError, nothing written."""

from __future__ import annotations

import pytest

from mgnas.export import export


def test_api_wrong_channels_is_a_value_error_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"does not take input of size 1x32x32: .*3 channels"):
        export("resnet20_cifar", "onnx", tmp_path / "m.onnx", input_size=(1, 32, 32))
    assert list(tmp_path.iterdir()) == []
