"""``mgnas export SPEC``: a spec (and its weights) as ONNX, a ``torch.export`` program or TorchScript."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ._base import EXIT_INTERNAL, EXIT_OK, Command, UsageError, check_input_file, parse_kwargs


def onnx_opsets() -> tuple[int, int]:
    """The ONNX opsets this torch's dynamo exporter writes: its torchlib opset up to the newest it knows
    (torch 2.13: 18..23; below 18 it would down-convert with onnx's version converter, which fails)."""
    try:
        from torch.onnx import _constants as onnx_constants
        from torch.onnx._internal.exporter import _constants as exporter_constants

        return int(exporter_constants.TORCHLIB_OPSET), int(onnx_constants.ONNX_MAX_OPSET)
    except (ImportError, AttributeError):  # a torch that moved them: the range of torch 2.13
        return 18, 23


class ExportCommand(Command):
    name = "export"
    help = "export a spec (and checkpoint) to ONNX, torch.export (.pt2) or TorchScript"
    description = (
        "Build SPEC (a spec.json, e.g. from `mgnas search`, or a registered model name), load --checkpoint "
        "(a Trainer checkpoint.pt or a search's weights.pt, read with torch.load(weights_only=True)), make it "
        "static (no search machinery, permutations folded) and write --out with a dynamic batch dimension. "
        "--check reloads the file (onnxruntime, torch.export.load, torch.jit.load) and fails with exit code 1 "
        "if it differs from the eager model by more than 1e-4. FILE.manifest.json records hashes and versions."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("spec", metavar="SPEC", help="spec JSON file or registered model name")
        parser.add_argument("--arg", "-a", action="append", metavar="KEY=VALUE",
                            help="model argument when SPEC is a registered model name, repeatable, e.g. "
                            "-a group_size=16 (see `mgnas models`)")
        parser.add_argument("--checkpoint", metavar="CKPT",
                            help="checkpoint.pt (Trainer, or a search's supernet) or weights.pt (state dict)")
        parser.add_argument("--format", required=True, metavar="FORMAT", help="onnx | pt2 | torchscript")
        parser.add_argument("--out", required=True, metavar="FILE", help="output file (its directory must exist)")
        parser.add_argument("--check", action="store_true", help="reload the artifact and compare it with eager")
        parser.add_argument("--opset", type=int, metavar="N", help="ONNX opset version (default: the exporter's)")
        parser.add_argument("--input", metavar="CxHxW", help="input size, e.g. 3x224x224 (default: the spec's)")
        parser.add_argument("--fuse-bn", action="store_true",
                            help="fold BatchNorms into the preceding convs (inference-only artifact)")
        parser.add_argument("--random-init", action="store_true",
                            help="export the spec with freshly initialised weights (no --checkpoint; e.g. to "
                            "benchmark a runtime); without it --checkpoint is required")

    def take_action(self, args: argparse.Namespace) -> int:
        from ..export import FORMATS, ExportCheckFailed, export, resolve_spec
        from ..models import model_spec
        from ..profile import check_input_size

        if args.format not in FORMATS:
            raise UsageError(f"unknown format {args.format!r}; valid formats: {', '.join(FORMATS)}")
        if args.opset is not None:
            if args.format != "onnx":
                raise UsageError(f"--opset applies to --format onnx only, not to {args.format}")
            lo, hi = onnx_opsets()
            if not lo <= args.opset <= hi:
                raise UsageError(f"--opset {args.opset} is not supported by this torch's ONNX exporter; "
                                 f"valid opsets: {lo}..{hi}")
        out = Path(args.out)
        if not out.parent.is_dir():
            raise UsageError(f"--out {out}: directory {str(out.parent)!r} does not exist")
        if out.is_dir():
            raise UsageError(f"--out {out} is a directory; give a file name, e.g. {out / 'model'}.{args.format}")
        if args.checkpoint is not None:
            check_input_file(args.checkpoint, "checkpoint")
        if not isinstance(args.spec, str) or args.spec.endswith(".json") or os.sep in args.spec:
            check_input_file(args.spec, "spec file")
        kwargs = parse_kwargs(args.arg)
        if kwargs and Path(args.spec).is_file():
            raise UsageError("--arg applies to a registered model name, not to a spec file")
        # SpecError / unknown model / bad model argument: ValueError -> one line, exit 2
        spec = model_spec(args.spec, **kwargs) if kwargs else resolve_spec(args.spec)
        check_input_size(spec, args.input or spec.input_size)  # the user's shape against the spec's channels
        if args.checkpoint is None and not args.random_init:
            raise UsageError("no --checkpoint given: pass the trained weights (checkpoint.pt or weights.pt), or "
                             "--random-init to export freshly initialised weights on purpose")
        if args.checkpoint is not None and args.random_init:
            raise UsageError("--random-init and --checkpoint exclude each other")
        weights = None
        if args.checkpoint is not None:  # the loader `train --init-from` uses: a search's supernet checkpoint too
            from mgnas.strategies import load_weights_for_spec

            weights = load_weights_for_spec(spec, args.checkpoint, where=f"checkpoint {args.checkpoint}")
        try:
            manifest = export(spec, args.format, out, check=args.check, opset=args.opset, input_size=args.input,
                              checkpoint=weights, checkpoint_label=args.checkpoint, fuse_bn=args.fuse_bn)
        except ExportCheckFailed as err:
            print(f"mgnas export: check failed: {err}", file=sys.stderr)
            return EXIT_INTERNAL
        check = manifest["check"]
        status = (f"check passed: max |Δ| = {check['max_abs_diff']:.2e} at batch sizes "
                  f"{', '.join(map(str, check['batch_sizes']))}" if check else "not checked (pass --check)")
        opset = f", opset {manifest['opset']}" if manifest.get("opset") else ""
        print(f"wrote {out} ({args.format}{opset}, input batch x {'x'.join(map(str, manifest['input_shape'][1:]))}, "
              f"{manifest['params']:,} params); {status}; manifest {out.name}.manifest.json")
        return EXIT_OK
