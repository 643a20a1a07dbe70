"""``mgnas.export.export``: ONNX (onnxruntime) parity for one model of each family, ``.pt2`` and TorchScript
round trips, the manifest, the failing check, and safe checkpoint loading (issue 5, deliverable 4)."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from torch import nn

from mgnas.export import _export
from mgnas.export._export import ExportCheckFailed, export, load_state_dict
from mgnas.models import build_model, model_spec

pytestmark = pytest.mark.export

# one model per family: (name, kwargs, input size); DGConv with random gate signs, MGIC, two-level, MgNet,
# MGiaD, multigrid conv, MobileNet
FAMILIES = [
    ("g_resnet20_cifar", {}, None),
    ("resnet20_cifar", {}, None),
    ("mgic_resnet56", {}, None),
    ("wrn28_10", {"conv": "two_level", "groups": 4}, (3, 16, 16)),
    ("mgnet_cifar", {"levels": 3}, None),
    ("mgiad_cifar", {}, None),
    ("mg_cifar", {"depth": 6}, None),
    ("mobilenetv2", {"num_classes": 10}, (3, 64, 64)),
]


@torch.no_grad()
def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine parameters, so outputs have a scale of order 1."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_var is not None:
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
            m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            if m.affine:
                m.weight.copy_(0.5 + torch.rand(n, generator=gen))
                m.bias.copy_(0.1 * torch.randn(n, generator=gen))
    return model.eval()


def _model(name: str, kwargs: dict) -> tuple[nn.Module, object]:
    spec = model_spec(name, **kwargs)
    torch.manual_seed(0)
    return _randomise(build_model(spec)), spec


@pytest.mark.parametrize("name,kwargs,size", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_onnx_onnxruntime_parity(tmp_path, name, kwargs, size):
    ort = pytest.importorskip("onnxruntime")
    model, spec = _model(name, kwargs)
    size = size or tuple(spec.input_size)
    path = tmp_path / f"{name}.onnx"
    manifest = export(model, "onnx", path, check=True, input_size=size)
    check = manifest["check"]
    assert check["passed"] and check["max_abs_diff"] <= 1e-4 and check["batch_sizes"] == [1, 3]
    assert check["output_scale"] > 1e-2, "degenerate outputs make the parity check meaningless"
    # an independent run in onnxruntime at a batch size the check did not use, against the *original* model
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(5, *size, generator=torch.Generator().manual_seed(7))
    got = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
    with torch.no_grad():
        ref = model(x)
    assert (got - ref).abs().max().item() <= 1e-4 * max(1.0, ref.abs().max().item())
    saved = json.loads((tmp_path / f"{name}.onnx.manifest.json").read_text())
    assert saved["format"] == "onnx" and saved["opset"] >= 17 and saved["input_shape"] == ["batch", *size]
    assert saved["versions"]["onnxruntime"] and saved["versions"]["onnx"] and saved["versions"]["torch"]
    assert saved["check"]["max_abs_diff"] == check["max_abs_diff"]


def _round_trip(tmp_path, fmt: str):
    model, spec = _model("g_resnet20_cifar", {})
    path = tmp_path / f"net.{fmt}"
    manifest = export(spec, fmt, path, check=True, checkpoint=model.state_dict())
    assert manifest["check"]["passed"] and manifest["spec_hash"] == spec.content_hash()
    x = torch.randn(7, *spec.input_size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = model(x)
    return path, x, ref


def test_pt2_round_trip(tmp_path):
    path, x, ref = _round_trip(tmp_path, "pt2")
    loaded = torch.export.load(str(path)).module()
    assert torch.allclose(loaded(x), ref, atol=1e-5)
    assert not any("gates" in k for k in loaded.state_dict()), "search machinery left in the program"


def test_torchscript_round_trip(tmp_path):
    path, x, ref = _round_trip(tmp_path, "torchscript")
    loaded = torch.jit.load(str(path))
    assert torch.allclose(loaded(x), ref, atol=1e-5)
    assert not any("gates" in k for k in loaded.state_dict())


def test_spec_path_and_opset(tmp_path):
    from mgnas.spec import save

    spec = model_spec("mgnet_cifar", levels=3)
    save(spec, tmp_path / "spec.json")
    manifest = export(str(tmp_path / "spec.json"), "onnx", tmp_path / "m.onnx", check=False, opset=18)
    assert manifest["opset"] == 18 and manifest["check"] is None and manifest["spec_hash"] == spec.content_hash()


def test_failed_check_raises_and_keeps_manifest(tmp_path, monkeypatch):
    monkeypatch.setattr(_export, "TOLERANCE", -1.0)  # any difference, even 0, now fails
    with pytest.raises(ExportCheckFailed, match="differs from the eager model"):
        export("mgnet_cifar", "pt2", tmp_path / "m.pt2", check=True)
    assert json.loads((tmp_path / "m.pt2.manifest.json").read_text())["check"]["passed"] is False


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown export format 'tflite'; valid formats: onnx, pt2, torchscript"):
        export("mgnet_cifar", "tflite", tmp_path / "m.x")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export("mgnet_cifar", "onnx", tmp_path / "missing" / "m.onnx")
    with pytest.raises(ValueError, match="applies to onnx only"):
        export("mgnet_cifar", "pt2", tmp_path / "m.pt2", opset=18)


def test_checkpoint_mismatch_names_first_tensor(tmp_path):
    spec = model_spec("resnet20_cifar")
    state = build_model(spec).state_dict()
    first = next(iter(state))
    del state[first]
    torch.save(state, tmp_path / "w.pt")
    with pytest.raises(ValueError, match=f"missing tensor '{first}'"):
        export(spec, "onnx", tmp_path / "m.onnx", checkpoint=tmp_path / "w.pt")
    state = build_model(model_spec("resnet20_cifar", num_classes=7)).state_dict()
    torch.save({"format": "mgnas.checkpoint/1", "model": state}, tmp_path / "c.pt")
    with pytest.raises(ValueError, match=r"tensor 'head\.fc\.weight' has shape \[7, 64\]|tensor 'head.*has shape"):
        export(spec, "onnx", tmp_path / "m.onnx", checkpoint=tmp_path / "c.pt")


class _Payload:
    """Unpickling this runs code (creates a marker file): ``weights_only=True`` must refuse it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def test_checkpoint_never_runs_pickle_code(tmp_path):
    marker = tmp_path / "pwned"
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"model": _Payload(str(marker))}, f)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_state_dict(tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="weights_only=True"):
        export("resnet20_cifar", "onnx", tmp_path / "m.onnx", checkpoint=tmp_path / "evil.pt")
    assert not os.path.exists(marker), "pickle code ran while loading a checkpoint"


def test_fuse_bn_export_has_no_batchnorm_and_passes_the_check(tmp_path):
    """--fuse-bn folds BatchNorm into the convs (the ONNX exporter does that on its own in eval mode, so the
    check is made on the torch.export program, where the unfused model keeps its batch_norm ops)."""
    from mgnas.export import export

    def batch_norms(fuse):
        path = tmp_path / f"m{int(fuse)}.pt2"
        manifest = export("resnet20_cifar", "pt2", path, check=True, fuse_bn=fuse)
        assert manifest["check"]["passed"] and manifest["static"]["pass"].endswith(f"fuse_bn={fuse})")
        return sum("batch_norm" in str(n.target) for n in torch.export.load(str(path)).graph.nodes)

    assert batch_norms(False) > 0
    assert batch_norms(True) == 0
