"""Retrain an architecture: a discovered spec (or any spec) trained from scratch or from given weights.

This is what ``mgnas train`` runs; a Python user calls it directly::

    from mgnas.spec import load
    from mgnas.train import TrainConfig, retrain

    spec = load("runs/search/spec.json")
    run = retrain(spec, "digits", TrainConfig(epochs=30), "runs/retrain")                 # from scratch
    run = retrain(spec, "digits", TrainConfig(epochs=30), "runs/ft", init_from="runs/search/weights.pt")
    print(run.result["accuracy"], run.result["params"])

``init_from`` is a path to *static* weights of the spec (a search's ``weights.pt``, or the ``checkpoint.pt``
of an earlier retraining) or a state dict. A search's supernet ``checkpoint.pt`` holds DGConv gates, not the
spec's weights: turn it into static weights with :func:`mgnas.strategies.load_weights_for_spec` first
(``retrain(..., init_from=load_weights_for_spec(spec, "runs/search/checkpoint.pt"))``; ``mgnas train
--init-from`` does this for you). Weights only seed a new run: a run is continued with ``resume=True``.

The spec is adapted to the data (input channels, classes, input size; :func:`mgnas.models.adapt_spec`)
before the model is built, so a spec searched on one data set retrains on another from scratch.
Outputs in ``out_dir``: ``config.yaml``, ``checkpoint.pt`` and ``history.jsonl`` (the Trainer's),
``spec.json`` (the trained spec with its measured metrics and the retraining in its provenance) and
``result.json``. Under ``torchrun`` every rank trains and only rank 0 writes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mgnas.train.config import TrainConfig

__all__ = ["RetrainResult", "retrain", "load_static_weights"]


@dataclass
class RetrainResult:
    """What :func:`retrain` produced."""

    spec: Any                  # the trained ArchSpec: metrics (params, MACs, accuracies) and provenance filled in
    result: dict[str, Any]     # what result.json holds
    out_dir: Path | None
    model: nn.Module           # the trained model (on the device it was trained on)


def load_static_weights(model: nn.Module, init_from: str | os.PathLike[str] | Mapping[str, torch.Tensor],
                        *, where: str | None = None) -> None:
    """Load ``init_from`` (a path to a state dict / Trainer checkpoint, or a state dict) into ``model``.

    Every tensor must match by name and shape (``ValueError`` naming the first that does not). A supernet
    checkpoint (DGConv gates in it, none in the model) is a ``ValueError`` that says how to convert it.
    """
    from mgnas.export import load_state_dict, match_state_dict

    if isinstance(init_from, Mapping):
        state, where = dict(init_from), where or "init_from"
    else:
        state, where = load_state_dict(init_from), where or f"init_from {os.fspath(init_from)}"
    own = model.state_dict()
    if any(k.endswith(".gates") for k in state) and not any(k.endswith(".gates") for k in own):
        raise ValueError(f"{where} is a search's supernet checkpoint (it holds DGConv gates): convert it with "
                         "mgnas.strategies.load_weights_for_spec(spec, path), or pass the search's weights.pt")
    match_state_dict(model, state, where=where)
    model.load_state_dict(state)


def retrain(spec: Any, data: Any, config: TrainConfig | None = None, out_dir: str | os.PathLike[str] | None = None,
            *, init_from: str | os.PathLike[str] | Mapping[str, torch.Tensor] | None = None,
            init_from_label: str | None = None, resume: bool = False, progress: bool = True,
            device: str | torch.device | None = None, download: bool = False,
            image_size: int | None = None) -> RetrainResult:
    """Train ``spec`` on ``data`` as ``config`` says and record the result (see the module docstring).

    ``data`` is a data set name as the CLI takes it (``"digits"``, ``"cifar10:PATH"``, ...) or a
    :class:`mgnas.data.DataBundle`. ``init_from_label`` is what the provenance records for a state-dict
    ``init_from`` (a path records itself). ``device``: ``None`` (auto), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    """
    from mgnas.config import dump_config
    from mgnas.data import load_data
    from mgnas.models import adapt_spec, build_model
    from mgnas.train.engine import Trainer

    config = config or TrainConfig()
    if resume and init_from is not None:
        raise ValueError("init_from starts a new run; it cannot be combined with resume")
    data_name = data if isinstance(data, str) else getattr(data, "name", type(data).__name__)
    if isinstance(data, str):
        data = load_data(data, batch_size=config.batch_size, eval_batch_size=config.eval_batch_size,
                         workers=config.workers, seed=config.seed,
                         distributed=int(os.environ.get("WORLD_SIZE", "1")) > 1, download=download,
                         image_size=image_size)
    c, h, w = data.input_size
    spec = adapt_spec(spec, in_channels=c, num_classes=data.num_classes, input_size=(c, h, w))
    torch.manual_seed(config.seed)
    model = build_model(spec)
    label = init_from_label
    if init_from is not None:
        if label is None and not isinstance(init_from, Mapping):
            label = os.fspath(init_from)
        load_static_weights(model, init_from, where=f"init_from {label}" if label else None)
    out = Path(out_dir) if out_dir is not None else None
    main = int(os.environ.get("RANK", "0")) == 0
    if out is not None and main and not resume:
        from mgnas._atomic import write_text_atomic

        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(dump_config(config), out / "config.yaml")
    identity = {"spec_hash": spec.content_hash(), "data": data_name}  # init_from only seeds a new run
    trainer = Trainer(model, config, data, out, identity=identity, progress=progress, device=device)
    metrics = trainer.fit(resume=resume)
    trained, result = _record(spec, metrics, trainer, data_name, label)
    if out is not None and main:
        from mgnas._atomic import write_json_atomic
        from mgnas.spec import save

        save(trained, out / "spec.json")
        write_json_atomic(result, out / "result.json", indent=1)
    return RetrainResult(spec=trained, result=result, out_dir=out, model=trainer.model)


def _record(spec: Any, metrics: dict[str, Any], trainer: Any, data_name: str,
            init_from: str | None) -> tuple[Any, dict[str, Any]]:
    from mgnas.profile import count

    counted = count(trainer.model, spec.input_size, per_layer=False)
    test = metrics.get("test_accuracy")
    accuracy = test if test is not None else metrics.get("val_accuracy")
    result = {"accuracy": accuracy, "val_accuracy": metrics.get("val_accuracy"), "test_accuracy": test,
              "params": counted.params, "macs": counted.macs, "epochs": metrics.get("epochs"),
              "seconds": metrics.get("seconds"), "train_loss": metrics.get("train_loss"),
              "spec_hash": spec.content_hash(), "data": data_name, "init_from": init_from,
              "device": str(trainer.device)}
    trained = spec.with_metrics(params=counted.params, macs=counted.macs, val_accuracy=result["val_accuracy"],
                                test_accuracy=test)
    trained = trained.with_provenance(retrained_on=data_name, retrain_epochs=result["epochs"],
                                      retrain_seed=trainer.config.seed, retrain_init_from=init_from)
    return trained, result
