"""``mgnas export SPEC``: a spec (and its weights) as ONNX, a ``torch.export`` program or TorchScript."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._base import EXIT_INTERNAL, EXIT_OK, Command, UsageError


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
        parser.add_argument("--checkpoint", metavar="CKPT", help="checkpoint.pt (Trainer) or weights.pt (state dict)")
        parser.add_argument("--format", required=True, metavar="FORMAT", help="onnx | pt2 | torchscript")
        parser.add_argument("--out", required=True, metavar="FILE", help="output file (its directory must exist)")
        parser.add_argument("--check", action="store_true", help="reload the artifact and compare it with eager")
        parser.add_argument("--opset", type=int, metavar="N", help="ONNX opset version (default: the exporter's)")
        parser.add_argument("--input", metavar="CxHxW", help="input size, e.g. 3x224x224 (default: the spec's)")
        parser.add_argument("--fuse-bn", action="store_true",
                            help="fold BatchNorms into the preceding convs (inference-only artifact)")

    def take_action(self, args: argparse.Namespace) -> int:
        from ..export._export import FORMATS, ExportCheckFailed, export, resolve_spec

        if args.format not in FORMATS:
            raise UsageError(f"unknown format {args.format!r}; valid formats: {', '.join(FORMATS)}")
        out = Path(args.out)
        if not out.parent.is_dir():
            raise UsageError(f"--out {out}: directory {str(out.parent)!r} does not exist")
        if out.is_dir():
            raise UsageError(f"--out {out} is a directory; give a file name, e.g. {out / 'model'}.{args.format}")
        if args.checkpoint is not None and not Path(args.checkpoint).is_file():
            raise UsageError(f"checkpoint {args.checkpoint!r} does not exist")
        spec = resolve_spec(args.spec)  # SpecError / unknown model: ValueError -> one line, exit 2
        try:
            manifest = export(spec, args.format, out, check=args.check, opset=args.opset, input_size=args.input,
                              checkpoint=args.checkpoint, fuse_bn=args.fuse_bn)
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
