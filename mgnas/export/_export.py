"""``export``: a discovered architecture as an ONNX model, a ``torch.export`` program (``.pt2``) or TorchScript.

Every format starts from :func:`~mgnas.export.to_static` (no gates, no masks, permutations folded), in eval
mode, with a dynamic batch dimension. ``check=True`` reloads the artifact the way a user would (ONNX in
onnxruntime, ``.pt2`` with ``torch.export.load``, TorchScript with ``torch.jit.load``), runs random inputs at
batch sizes 1 and 3 and raises :class:`ExportCheckFailed` when the largest absolute difference from the eager
model *as given* (before ``to_static``, so the freezing/folding pass is checked too) exceeds ``1e-4``. A
manifest ``FILE.manifest.json`` next to the artifact records the spec hash, format, opset, library
versions, input shape and the measured differences (see :mod:`._manifest`).

Weights come from a checkpoint read with ``torch.load(weights_only=True)`` only: a Trainer ``checkpoint.pt``
(weights under ``"model"``) or a plain state dict such as a search's ``weights.pt``. A checkpoint that does
not fit the model is a ``ValueError`` naming the first mismatching tensor.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mgnas._atomic import atomic_path

from ._manifest import manifest_path, versions, write_manifest

__all__ = ["FORMATS", "TOLERANCE", "CHECK_BATCH_SIZES", "ExportCheckFailed", "export", "load_state_dict",
           "match_state_dict", "resolve_spec"]

FORMATS = ("onnx", "pt2", "torchscript")
TOLERANCE = 1e-4
CHECK_BATCH_SIZES = (1, 3)
_TRAINER_FORMAT = "mgnas.checkpoint/1"


class ExportCheckFailed(RuntimeError):
    """The reloaded artifact does not reproduce the eager model within :data:`TOLERANCE` (CLI exit code 1)."""


# --------------------------------------------------------------------------- inputs
def resolve_spec(target: Any) -> Any:
    """An ``ArchSpec`` from an ``ArchSpec``, a spec JSON path or a registered model name."""
    from mgnas.models import list_models, model_spec
    from mgnas.spec import ArchSpec, load

    if isinstance(target, ArchSpec):
        return target
    text = os.fspath(target)
    if text.endswith(".json") or os.sep in text or Path(text).is_file():
        if not Path(text).is_file():
            raise FileNotFoundError(f"spec file {text!r} does not exist")
        return load(text)
    if text not in list_models():
        model_spec(text)  # raises ValueError with close matches
    return model_spec(text)


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The model weights of a Trainer checkpoint or a plain state dict, read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"checkpoint {path} cannot be read with torch.load(weights_only=True): {first}") from None
    if isinstance(obj, Mapping) and obj.get("format") == _TRAINER_FORMAT:
        obj = obj.get("model")
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise ValueError(f"checkpoint {path} is neither an mgnas training checkpoint nor a state dict of tensors")
    return dict(obj)


def match_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], where: str = "checkpoint") -> None:
    """Raise ``ValueError`` naming the first tensor (in model order) that is missing, unexpected or misshaped."""
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            raise ValueError(f"{where} does not match the spec: missing tensor {key!r} "
                             f"(shape {list(value.shape)})")
        if tuple(state[key].shape) != tuple(value.shape):
            raise ValueError(f"{where} does not match the spec: tensor {key!r} has shape {list(state[key].shape)}, "
                             f"the model expects {list(value.shape)}")
    for key in state:
        if key not in own:
            raise ValueError(f"{where} does not match the spec: unexpected tensor {key!r} "
                             f"(shape {list(state[key].shape)})")


def _parse_input_size(input_size: Any, spec: Any) -> tuple[int, int, int]:
    if input_size is None:
        if spec is None:
            raise ValueError("input_size is needed to export a module without a spec, e.g. input_size=(3, 32, 32)")
        input_size = spec.input_size
    if isinstance(input_size, str):
        try:
            input_size = [int(v) for v in input_size.lower().split("x")]
        except ValueError:
            raise ValueError(f"input size {input_size!r} is not CxHxW, e.g. 3x224x224") from None
    size = tuple(int(v) for v in input_size)
    if len(size) != 3 or min(size) < 1:
        raise ValueError(f"input size {list(size)} is not CxHxW with positive sizes, e.g. 3x224x224")
    return size  # type: ignore[return-value]


# --------------------------------------------------------------------------- writers
def _example(size: tuple[int, int, int], batch: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *size, generator=gen)


def _write_onnx(model: nn.Module, x: torch.Tensor, path: Path, opset: int | None) -> dict[str, Any]:
    batch = torch.export.Dim("batch", min=1, max=4096)
    kwargs: dict[str, Any] = {} if opset is None else {"opset_version": opset}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=({0: batch},), input_names=["input"],
                                    output_names=["output"], verbose=False, **kwargs)
        program.save(str(path))
    info: dict[str, Any] = {}
    try:
        import onnx

        proto = onnx.load(str(path))
        info["opset"] = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        ops = [n.op_type for n in proto.graph.node]
        info["nodes"] = len(ops)
        info["gather_nodes"] = sum(op in ("Gather", "GatherElements", "GatherND") for op in ops)
    except ImportError:
        info["opset"] = opset
    return info


def _write_pt2(model: nn.Module, x: torch.Tensor, path: Path) -> dict[str, Any]:
    batch = torch.export.Dim("batch", min=1, max=4096)
    program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    with open(path, "wb") as f:  # a file object: the temporary name (see export) does not end in .pt2
        torch.export.save(program, f)
    return {"method": "torch.export"}


def _write_torchscript(model: nn.Module, x: torch.Tensor, path: Path) -> dict[str, Any]:
    with warnings.catch_warnings():  # TorchScript is deprecated upstream; still asked for (issue 5)
        warnings.simplefilter("ignore", DeprecationWarning)
        return _script_or_trace(model, x, path)


def _script_or_trace(model: nn.Module, x: torch.Tensor, path: Path) -> dict[str, Any]:
    try:
        module, method = torch.jit.script(model), "script"
    except Exception:  # noqa: BLE001 - scripting fails on many Python constructs: tracing is the fallback
        with torch.no_grad():
            module, method = torch.jit.trace(model, x, check_trace=False), "trace"
    torch.jit.save(module, str(path))
    return {"method": method}


# --------------------------------------------------------------------------- check
def _runner(format: str, path: Path) -> Any:
    if format == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])
    if format == "pt2":
        with open(path, "rb") as f:
            module = torch.export.load(f).module()
        return lambda x: module(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(path), map_location="cpu")
    module.eval()
    return lambda x: module(x)


@torch.no_grad()
def _check(format: str, path: Path, eager: nn.Module, size: tuple[int, int, int]) -> dict[str, Any]:
    run = _runner(format, path)
    diffs: dict[str, float] = {}
    scale = 0.0
    for i, batch in enumerate(CHECK_BATCH_SIZES):
        x = _example(size, batch, seed=1234 + i)
        ref = _first(eager(x)).float()
        out = _first(run(x)).float()
        if tuple(out.shape) != tuple(ref.shape):
            raise ExportCheckFailed(f"{format} artifact {path}: output shape {list(out.shape)} at batch {batch}, "
                                    f"eager gives {list(ref.shape)}")
        diffs[str(batch)] = float((out - ref).abs().max())
        scale = max(scale, float(ref.abs().max()))
    worst = max(diffs.values())
    return {"batch_sizes": list(CHECK_BATCH_SIZES), "max_abs_diff": worst, "max_abs_diff_per_batch": diffs,
            "output_scale": scale, "tolerance": TOLERANCE, "passed": bool(worst <= TOLERANCE)}


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


# --------------------------------------------------------------------------- export
def _static_model(model: nn.Module, fuse_bn: bool = False) -> tuple[nn.Module, str]:
    from ._static import to_static

    return to_static(model, fold=True, fuse_bn=fuse_bn), f"to_static(fold=True, fuse_bn={fuse_bn})"


def export(model_or_spec: Any, format: str, path: str | os.PathLike[str], check: bool = True,
           opset: int | None = None, input_size: Sequence[int] | str | None = None,
           checkpoint: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None = None,
           fuse_bn: bool = False, checkpoint_label: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Write ``model_or_spec`` (an ``nn.Module``, an ``ArchSpec``, a spec JSON path or a model name) as ``format``.

    ``checkpoint``: weights to load first (a path read with ``weights_only=True``, or a state dict;
    ``checkpoint_label`` names a state dict's source in errors and the manifest).
    ``input_size``: ``(C, H, W)`` or ``"CxHxW"`` (default: the spec's). ``opset``: ONNX opset (default:
    the exporter's). Returns the manifest (also written to ``FILE.manifest.json``); raises
    :class:`ExportCheckFailed` when ``check`` finds a difference above :data:`TOLERANCE` (the artifact and
    its manifest, with ``"passed": false``, are kept for inspection). ``fuse_bn``: fold every BatchNorm that
    follows a conv into it (deployment; the check still compares with the unfused eager model).
    """
    from mgnas.models import build_model

    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; valid formats: {', '.join(FORMATS)}")
    if opset is not None and format != "onnx":
        raise ValueError(f"--opset applies to onnx only, not to {format}")
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output directory {str(path.parent)!r} does not exist; create it first")
    spec = None
    if isinstance(model_or_spec, nn.Module):
        model = model_or_spec
    else:
        spec = resolve_spec(model_or_spec)
        model = build_model(spec)
    size = _parse_input_size(input_size, spec)
    source = None
    if checkpoint is not None:
        state = checkpoint if isinstance(checkpoint, Mapping) else load_state_dict(checkpoint)
        source = None if isinstance(checkpoint, Mapping) else str(checkpoint)
        source = os.fspath(checkpoint_label) if checkpoint_label is not None else source
        match_state_dict(model, state, where=f"checkpoint {source}" if source else "checkpoint")
        model.load_state_dict(state)
    was_training = model.training
    model.eval()
    try:
        static, how = _static_model(model, fuse_bn)
        static.eval()
        x = _example(size, 2, seed=0)  # batch 2: a batch of 1 would be specialised by torch.export
        with torch.no_grad():
            try:
                reference = _first(model(x))
            except RuntimeError as err:  # e.g. a 1-channel input_size for an RGB model: say so, in one line
                reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
                raise ValueError(f"the model does not take input of size {'x'.join(map(str, size))}: "
                                 f"{reason}") from None
            static_diff = float((_first(static(x)) - reference).abs().max())
        writer = {"onnx": lambda p: _write_onnx(static, x, p, opset), "pt2": lambda p: _write_pt2(static, x, p),
                  "torchscript": lambda p: _write_torchscript(static, x, p)}[format]
        with atomic_path(path) as tmp:  # written under a temporary name: a failing exporter never replaces a file
            info = writer(tmp)
            result = _check(format, tmp, model, size) if check else None  # vs the model as given, not the copy
    finally:
        model.train(was_training)
    manifest = {
        "format": format, "file": path.name, "spec_hash": spec.content_hash() if spec is not None else None,
        "spec_name": getattr(spec, "name", None), "family": getattr(spec, "family", None),
        "opset": info.pop("opset", None) if format == "onnx" else None,
        "input_shape": ["batch", *size], "dynamic_batch": True, "checkpoint": source,
        "static": {"pass": how, "max_abs_diff_vs_model": static_diff},
        "params": sum(p.numel() for p in static.parameters()), "artifact": info,
        "versions": versions(format), "check": result,
    }
    write_manifest(manifest, path)
    if result is not None and not result["passed"]:
        raise ExportCheckFailed(f"{format} artifact {path} differs from the eager model by {result['max_abs_diff']:.3g}"
                                f" > {TOLERANCE:g} (see {manifest_path(path)})")
    return manifest
