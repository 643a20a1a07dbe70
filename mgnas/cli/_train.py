"""``mgnas train``: retrain an architecture (a discovered spec or a registered model) with the training engine.

The spec is adapted to the data (input channels, classes, input size) and trained from scratch, or from
``--init-from``: a search's ``weights.pt`` (static weights of the frozen spec) or the search's supernet
``checkpoint.pt`` (the supernet is rebuilt from the spec's provenance, loaded, and frozen with its gates,
which applies the permutations and grouping to the weights). Writes ``result.json``, ``checkpoint.pt``,
``history.jsonl``, ``config.yaml`` and ``spec.json`` (the trained spec with its metrics) into ``--out``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ._base import EXIT_OK, Command, UsageError, add_training_flags, check_input_file, parse_kwargs
from ._search import add_device_flag, check_device, check_out_dir

_FLAGS = {"epochs": "epochs", "lr": "lr", "batch_size": "batch_size", "seed": "seed", "weight_decay": "weight_decay",
          "optimizer": "optimizer", "workers": "workers", "amp": "amp"}


def _resolve_config(args: argparse.Namespace) -> Any:
    from mgnas.config import load_config
    from mgnas.train import TrainConfig

    # `--set train.label_smoothing=0.1` (as `mgnas search` spells the training keys) and `--set label_smoothing=0.1`
    # are the same setting
    overrides: dict[str, Any] = {k.removeprefix("train."): v for k, v in parse_kwargs(args.sets, "--set").items()}
    overrides.update({key: getattr(args, flag) for flag, key in _FLAGS.items() if getattr(args, flag) is not None})
    if args.config is not None:
        check_input_file(args.config, "config file")
    return load_config(TrainConfig, args.config, overrides)


def _resolve_spec(args: argparse.Namespace) -> Any:
    from mgnas.models import list_models, model_spec
    from mgnas.spec import load

    if (args.spec is None) == (args.model is None):
        raise UsageError("give exactly one of --spec FILE or --model NAME")
    kwargs = parse_kwargs(args.arg)
    if args.spec is not None:
        if kwargs:
            raise UsageError("--arg applies to --model, not to --spec")
        check_input_file(args.spec, "spec file")
        return load(args.spec)
    if args.model not in list_models():
        model_spec(args.model)  # ValueError with close matches
    return model_spec(args.model, **kwargs)


def _init_from(model: Any, spec: Any, path: str) -> None:
    """Load ``--init-from PATH`` into ``model`` (a supernet checkpoint is frozen into ``spec``'s weights first)."""
    from mgnas.strategies import load_weights_for_spec
    from mgnas.train import load_static_weights

    check_input_file(path, "--init-from")
    where = f"--init-from {path}"
    load_static_weights(model, load_weights_for_spec(spec, path, where=where), where=where)


class TrainCommand(Command):
    name = "train"
    help = "retrain a discovered spec or a registered model with the training engine"
    description = (
        "Train (--spec FILE | --model NAME) on --data from scratch, or from --init-from (a search's weights.pt "
        "or its supernet checkpoint.pt). Writes result.json, checkpoint.pt, history.jsonl, config.yaml and "
        "spec.json (with the measured metrics) into --out; --resume continues a run from its checkpoint."
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--spec", metavar="FILE", help="spec JSON file, e.g. the spec.json of `mgnas search`")
        parser.add_argument("--model", metavar="NAME", help="registered model name (see `mgnas models`)")
        parser.add_argument("--arg", "-a", action="append", metavar="KEY=VALUE", help="model argument (--model)")
        parser.add_argument("--data", required=True, help="digits | synthetic[:HxW[:classes]] | cifar10:PATH | "
                            "cifar100:PATH | imagenet:PATH")
        parser.add_argument("--epochs", type=int)
        parser.add_argument("--out", required=True, metavar="DIR", help="output directory")
        parser.add_argument("--resume", action="store_true", help="continue the run in DIR from its checkpoint")
        parser.add_argument("--init-from", metavar="CKPT", help="start from weights.pt or a supernet checkpoint.pt")
        parser.add_argument("--config", metavar="YAML", help="training config file; flags override it")
        add_device_flag(parser)
        add_training_flags(parser, image_size_help="imagenet crop / digits and synthetic side",
                           set_help="any training config key, with or without search's train. prefix: --set "
                           "train.label_smoothing=0.1 is --set label_smoothing=0.1")

    def take_action(self, args: argparse.Namespace) -> int:
        import contextlib

        from mgnas._rundir import claimed, sweep_all_temps
        from mgnas.strategies import load_weights_for_spec
        from mgnas.train import retrain

        device = check_device(args.device)
        config = _resolve_config(args)
        spec = _resolve_spec(args)
        out = Path(args.out)
        check_out_dir(out, args.resume, "train")
        if args.resume and args.init_from:
            raise UsageError("--init-from starts a new run; it cannot be combined with --resume")
        init = None
        if args.init_from:
            check_input_file(args.init_from, "--init-from")
            init = load_weights_for_spec(spec, args.init_from, where=f"--init-from {args.init_from}")
        main = int(os.environ.get("RANK", "0")) == 0
        with claimed(out, "train", resume=args.resume) if main else contextlib.nullcontext(out):
            fresh = not (out / "checkpoint.pt").is_file()  # a run killed before its first checkpoint restarts
            if main:
                sweep_all_temps(out)  # leftovers of a killed run (this directory is ours alone)
                if args.resume and fresh:
                    print(f"no checkpoint in {out} yet: starting the run from the beginning")
            run = retrain(spec, args.data, config, out, init_from=init, init_from_label=args.init_from,
                          resume=args.resume and not fresh, progress=args.progress, device=device,
                          download=args.download, image_size=args.image_size)
        if int(os.environ.get("RANK", "0")) == 0:
            r = run.result
            print(f"accuracy {100 * r['accuracy']:.2f}% ({'test' if r['test_accuracy'] is not None else 'val'}); "
                  f"{r['params']:,} params, {r['macs']:,} MACs; {r['epochs']} epochs in {r['seconds']:.1f} s on "
                  f"{r['device']}; outputs in {out}")
        return EXIT_OK
