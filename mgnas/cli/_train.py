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

from ._base import EXIT_OK, Command, UsageError, add_training_flags, parse_kwargs
from ._search import check_out_dir

_FLAGS = {"epochs": "epochs", "lr": "lr", "batch_size": "batch_size", "seed": "seed", "weight_decay": "weight_decay",
          "optimizer": "optimizer", "workers": "workers", "amp": "amp"}


def _resolve_config(args: argparse.Namespace) -> Any:
    from mgnas.config import load_config
    from mgnas.train import TrainConfig

    overrides: dict[str, Any] = dict(parse_kwargs(args.sets))
    overrides.update({key: getattr(args, flag) for flag, key in _FLAGS.items() if getattr(args, flag) is not None})
    if args.config is not None and not Path(args.config).is_file():
        raise UsageError(f"config file {args.config!r} does not exist")
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
        if not Path(args.spec).is_file():
            raise UsageError(f"spec file {args.spec!r} does not exist")
        return load(args.spec)
    if args.model not in list_models():
        model_spec(args.model)  # ValueError with close matches
    return model_spec(args.model, **kwargs)


def _supernet_state(spec: Any, state: dict[str, Any], path: str) -> dict[str, Any]:
    """Static weights of ``spec`` from a supernet state dict: rebuild the supernet, load it, freeze it."""
    import torch

    from mgnas.export._export import match_state_dict
    from mgnas.models import adapt_spec, build_model
    from mgnas.search_spaces import get_space
    from mgnas.strategies._freeze import freeze

    space, want = spec.provenance.get("space"), spec.provenance.get("supernet_hash")
    if not space or not want:
        raise UsageError(f"--init-from {path} holds a supernet, but the spec records no search space / supernet "
                         "hash in its provenance; use the search's weights.pt")
    c, h, w = spec.input_size
    supernet = adapt_spec(get_space(space).supernet_spec(), in_channels=c, num_classes=spec.num_classes,
                          input_size=(c, h, w))
    if supernet.content_hash() != want:
        raise UsageError(f"--init-from {path}: the supernet of space {space!r} rebuilt for this data "
                         f"({supernet.content_hash()}) is not the one searched ({want})")
    model = build_model(supernet)
    match_state_dict(model, state, where=f"--init-from {path}")
    model.load_state_dict(state)
    model.eval()
    frozen, static = freeze(supernet, model)
    ref = {p: c.to_dict() for p, c in spec.convs()}
    for p, conv in frozen.convs():
        if ref.get(p) != conv.to_dict():
            raise UsageError(f"--init-from {path}: its gates give {p} = {conv.groups} groups, the spec has "
                             f"{ref.get(p, {}).get('groups')} (the search projected the gates after its last "
                             "checkpoint); use the search's weights.pt")
    return {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in static.items()}


def _init_from(model: Any, spec: Any, path: str) -> None:
    from mgnas.export._export import load_state_dict, match_state_dict

    if not Path(path).is_file():
        raise UsageError(f"--init-from {path!r} does not exist")
    state = load_state_dict(path)
    if any(k.endswith(".gates") for k in state) and not any(k.endswith(".gates") for k in model.state_dict()):
        state = _supernet_state(spec, state, path)
    match_state_dict(model, state, where=f"--init-from {path}")
    model.load_state_dict(state)


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
        add_training_flags(parser, image_size_help="imagenet crop / digits and synthetic side",
                           set_help="any training config key, e.g. --set label_smoothing=0.1")

    def take_action(self, args: argparse.Namespace) -> int:
        import torch

        from mgnas.config import dump_config
        from mgnas.data import load_data
        from mgnas.models import adapt_spec, build_model
        from mgnas.train import Trainer

        config = _resolve_config(args)
        spec = _resolve_spec(args)
        out = Path(args.out)
        check_out_dir(out, args.resume)
        if args.resume and args.init_from:
            raise UsageError("--init-from starts a new run; it cannot be combined with --resume")
        distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        data = load_data(args.data, batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
                         workers=config.workers, seed=config.seed, distributed=distributed, download=args.download,
                         image_size=args.image_size)
        c, h, w = data.input_size
        spec = adapt_spec(spec, in_channels=c, num_classes=data.num_classes, input_size=(c, h, w))
        torch.manual_seed(config.seed)
        model = build_model(spec)
        if args.init_from:
            _init_from(model, spec, args.init_from)
        main = int(os.environ.get("RANK", "0")) == 0
        if main and not args.resume:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.yaml").write_text(dump_config(config))
        identity = {"spec_hash": spec.content_hash(), "data": args.data}  # --init-from only seeds a new run
        trainer = Trainer(model, config, data, out, identity=identity, progress=not args.no_progress)
        metrics = trainer.fit(resume=args.resume)
        if main:
            self._write(out, spec, metrics, trainer, args)
        return EXIT_OK

    @staticmethod
    def _write(out: Path, spec: Any, metrics: dict[str, Any], trainer: Any, args: argparse.Namespace) -> None:
        import json

        from mgnas.profile import count
        from mgnas.spec import save

        counted = count(trainer.model, spec.input_size, per_layer=False)
        test = metrics.get("test_accuracy")
        accuracy = test if test is not None else metrics.get("val_accuracy")
        result = {"accuracy": accuracy, "val_accuracy": metrics.get("val_accuracy"), "test_accuracy": test,
                  "params": counted.params, "macs": counted.macs, "epochs": metrics.get("epochs"),
                  "seconds": metrics.get("seconds"), "train_loss": metrics.get("train_loss"),
                  "spec_hash": spec.content_hash(), "data": args.data, "init_from": args.init_from}
        trained = spec.with_metrics(params=counted.params, macs=counted.macs, val_accuracy=result["val_accuracy"],
                                    test_accuracy=test)
        trained = trained.with_provenance(retrained_on=args.data, retrain_epochs=result["epochs"],
                                          retrain_seed=trainer.config.seed, retrain_init_from=args.init_from)
        save(trained, out / "spec.json")
        (out / "result.json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"accuracy {100 * accuracy:.2f}% ({'test' if test is not None else 'val'}); {counted.params:,} params, "
              f"{counted.macs:,} MACs; {result['epochs']} epochs in {result['seconds']:.1f} s; outputs in {out}")
