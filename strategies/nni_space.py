"""NNI 3.0 adapter for group-structure spaces: search a :class:`ConvGroupsSpace` with NNI's strategies.

:func:`to_nni_space` turns a space such as ``resnet20_groups`` into an NNI ``ModelSpace``: the space's base network
(adapted to the data set) with every searchable conv replaced by a ``LayerChoice`` over one conv per allowed group
count. NNI's DARTS rejects a mutable ``groups`` argument of a ``MutableConv2d`` (its differentiable mixed conv
cannot weigh convs of different group counts), so each candidate is a separate, complete conv module. The
``LayerChoice`` label is the mgnas dimension label (``stages.1.0.conv2.groups``) and the candidate names are the
group counts as strings (NNI requires string keys), so an NNI sample *is* an mgnas sample up to ``int()``:
:func:`to_mgnas_spec` converts it with ``space.freeze``.

:func:`run_nni_nas` runs one NNI experiment over such a space (``darts``, ``random_oneshot`` or multi-trial
``random``), in-process and on the sequential execution engine, with NNI's Lightning ``Classification`` evaluator,
and returns the discovered spec adapted to the data set (what ``mgnas train --spec`` trains next).

Workarounds for NNI 3.0 on this stack (pytorch-lightning 2.6, torch 2.13), each local to this module:

- NNI's ``Lightning`` evaluator keeps one ``pl.Trainer`` for every trial of a multi-trial experiment; a finished
  Trainer (``max_epochs`` reached) does not train or validate again, so the second trial reports no ``val_acc``
  and fails with ``KeyError``. The ``random`` strategy therefore wraps a fresh ``Classification`` per trial in a
  ``FunctionalEvaluator``.
- ``NasExperimentConfig.default`` sets a local training service even for the sequential engine, and then warns
  about it at every config check; the config is built explicitly (sequential engine, raw model format: no
  serialisation, so the space object itself can be a constructor argument).
- RandomOneShot's own export is an arbitrary sample (NNI warns so). Here the trained supernet instead scores
  ``oneshot_samples`` uniformly sampled subnets (inherited weights) on the validation split and the best is
  exported.
- NNI and Lightning log banners, tips and deprecation warnings at INFO/WARNING level; they are silenced for the
  duration of a run. NNI still records each experiment in ``~/nni-experiments/.experiment`` (its manifest);
  logs and checkpoints go to ``OUT/nni`` (or a temporary directory).

The two-level switch of spaces that have one (``wrn*_groups``, ``mobilenetv2_groups``) is not searched: it is
fixed by the ``two_level`` argument (default False), which sets the kind of every grouped candidate.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ._experimental import experimental
from ._nni_common import NNI_REASON, import_nni

__all__ = ["STRATEGIES", "to_nni_space", "to_mgnas_spec", "run_nni_nas"]

STRATEGIES = ("darts", "random_oneshot", "random")
_QUIET_LOGGERS = ("nni", "pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric")


# --------------------------------------------------------------------------- space -> NNI model space
def _check_space(space: Any) -> Any:
    from mgnas.search_spaces import ConvGroupsSpace, get_space, list_spaces

    if isinstance(space, str):
        space = get_space(space)
    if not isinstance(space, ConvGroupsSpace):
        supported = [n for n in list_spaces() if isinstance(get_space(n), ConvGroupsSpace)]
        raise ValueError(f"the NNI adapter supports group-count spaces (ConvGroupsSpace) only, not "
                         f"{getattr(space, 'name', space)!r}; supported: {', '.join(supported)}")
    return space


def _module_name(path: str) -> str:
    """Spec field path -> module name: ``stages[1].blocks[0].conv2`` -> ``stages.1.0.conv2`` (``build_stages``)."""
    from mgnas.spec._path import split_path

    keys = split_path(path)
    out = [str(k) for i, k in enumerate(keys) if not (k == "blocks" and i >= 2 and keys[i - 2] == "stages")]
    return ".".join(out)


def _locate(net: Any, path: str, conv: Any) -> tuple[Any, str]:
    """(parent module, attribute) holding the conv built from ``conv`` at spec ``path``; checked, not guessed."""
    from mgnas.models._common import conv_from_spec

    name = _module_name(path)
    try:
        module = net.get_submodule(name)
        if hasattr(module, "conv") and not hasattr(module, "weight"):  # ConvBNAct: the conv is its child
            name, module = name + ".conv", module.conv
    except AttributeError:
        module = None
    expected = conv_from_spec(conv)
    if module is None or type(module) is not type(expected) or _nparams(module) != _nparams(expected):
        raise NotImplementedError(f"cannot find the module of conv {path} (looked at {name!r}) in this model family")
    parent, _, attr = name.rpartition(".")
    return net.get_submodule(parent), attr


def _nparams(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def _candidate(conv: Any, groups: int, two_level: bool) -> Any:
    from mgnas.models._common import conv_from_spec, init_weights

    kind = "dense" if groups == 1 else ("two_level" if two_level else "group")
    module = conv_from_spec(conv.replace(kind=kind, groups=groups, in_perm=None, out_perm=None, shuffle=0))
    init_weights(module)  # the same init as build_model gives a conv
    return module


@functools.lru_cache(maxsize=1)
def _space_class() -> type:
    import_nni(nas=True)
    from nni.nas.nn.pytorch import LayerChoice, ModelSpace

    class GroupsModelSpace(ModelSpace):
        """The base network of a ConvGroupsSpace with a LayerChoice (label = mgnas label) per searchable conv."""

        def __init__(self, space: Any, in_channels: int, num_classes: int, input_size: tuple[int, int, int],
                     two_level: bool = False) -> None:
            super().__init__()
            from mgnas.models import adapt_spec, build_model

            base = adapt_spec(space.base, in_channels=in_channels, num_classes=num_classes,
                              input_size=tuple(input_size))
            convs = dict(base.convs())  # adapted: a searchable first conv has the data's in_channels
            self.space_name, self.two_level = space.name, bool(two_level)
            self.net = build_model(base)
            for dim in space.dimensions():
                if dim.label == "two_level":
                    continue
                path, _ = space._paths[dim.label]
                parent, attr = _locate(self.net, path, convs[path])
                choices = {str(g): _candidate(convs[path], g, self.two_level) for g in dim.choices}
                setattr(parent, attr, LayerChoice(choices, label=dim.label))

        def forward(self, x: Any) -> Any:
            return self.net(x)

    return GroupsModelSpace


def to_nni_space(space: Any, *, in_channels: int = 3, num_classes: int = 10,
                 input_size: tuple[int, int, int] | None = None, two_level: bool = False) -> Any:
    """An NNI 3.0 ``ModelSpace`` over the group counts of ``space`` (a ConvGroupsSpace or its name).

    The network is the space's base spec adapted to ``in_channels`` / ``num_classes`` / ``input_size``
    (default: the base's size with ``in_channels``). One ``LayerChoice`` per searchable conv, labelled with the mgnas
    label, candidates keyed ``"1"``, ``"2"``, ... (group counts). ``model_space.freeze(sample)`` gives the network
    of ``mgnas.build_model(adapted space.freeze(sample))`` (same modules, same parameter count). ``two_level``
    fixes the space's two-level switch (not searched). Raises ValueError for other kinds of space.
    """
    space = _check_space(space)
    if two_level and "two_level" not in space.labels():
        raise ValueError(f"{space.name} has no two-level switch; two_level=True is not available")
    size = tuple(input_size) if input_size is not None else (in_channels, *space.base.input_size[1:])
    if size[0] != in_channels:
        raise ValueError(f"input_size {size} does not start with in_channels={in_channels}")
    return _space_class()(space, in_channels, num_classes, size, two_level)


# --------------------------------------------------------------------------- NNI sample -> mgnas spec
def to_mgnas_spec(space: Any, nni_sample: Mapping[str, Any], *, two_level: bool | None = None) -> Any:
    """The :class:`~mgnas.spec.ArchSpec` of an architecture exported by NNI (``{label: value}``).

    Values may be the candidate names NNI uses (``"4"``) or the choices themselves (``4``). Every searchable label
    must be present; ``two_level`` (when the space has the switch and the sample does not) fixes it.
    Unknown labels, missing labels and values outside a label's choices raise ValueError.
    """
    space = _check_space(space)
    dims = {d.label: d for d in space.dimensions()}
    choices: dict[str, Any] = {}
    for label, value in nni_sample.items():
        if label not in dims:
            raise ValueError(f"{space.name}: the NNI sample has unknown label {label!r}")
        match = [c for c in dims[label].choices if c == value or str(c) == str(value)]
        if not match:
            raise ValueError(f"{space.name}: {label}={value!r} is not one of {list(dims[label].choices)}")
        choices[label] = match[0]
    if "two_level" in dims and "two_level" not in choices:
        choices["two_level"] = bool(two_level)
    missing = [label for label in dims if label not in choices]
    if missing:
        raise ValueError(f"{space.name}: the NNI sample lacks {len(missing)} label(s), e.g. {missing[0]!r}")
    return space.freeze(choices)


# --------------------------------------------------------------------------- running an NNI experiment
@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence NNI's and Lightning's banners, tips and deprecation warnings for the duration of a run."""
    loggers = [logging.getLogger(name) for name in _QUIET_LOGGERS]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"(nni|pytorch_lightning|lightning|torchmetrics)(\..*)?")
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message=".*(does not have many workers|LeafSpec|litlogger).*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _evaluator_factory(data: Any, *, epochs: int, batch_size: int, lr: float, seed: int, workdir: Path,
                       accelerator: str, progress: bool) -> Any:
    """A function returning a fresh NNI ``Classification`` evaluator (traced DataLoaders over ``data``'s splits)."""
    import torch
    from nni.nas.evaluator.pytorch import Classification, DataLoader

    def make() -> Any:
        train = DataLoader(data.train.dataset, batch_size=batch_size, shuffle=True,
                           generator=torch.Generator().manual_seed(seed))
        val = DataLoader(data.val.dataset, batch_size=batch_size)
        return Classification(
            learning_rate=lr, train_dataloaders=train, val_dataloaders=val, num_classes=data.num_classes,
            max_epochs=epochs, accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=progress, enable_model_summary=False, default_root_dir=str(workdir),
        )

    return make


def _fresh_trial(model: Any, make: Any) -> None:
    """FunctionalEvaluator body for multi-trial strategies: a new Lightning evaluator (and Trainer) per trial."""
    make().evaluate(model)


def _strategy(name: str, seed: int) -> Any:
    import nni.nas.strategy as strategy

    if name == "darts":
        return strategy.DARTS()
    if name == "random_oneshot":
        return strategy.RandomOneShot()
    return strategy.Random(seed=seed)


def _accuracy(model: Any, loader: Any) -> float:
    import torch

    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / max(total, 1)


def _best_subnet(space: Any, supernet: Any, loader: Any, samples: int, seed: int) -> dict[str, str]:
    """RandomOneShot: the best of ``samples`` random subnets of the trained supernet on ``loader``.

    ``supernet.freeze`` keeps the trained weights (NNI: weight-preserving for one-shot supernets); BatchNorm uses
    the running statistics shared by all paths (no per-subnet recalibration, as in plain SPOS evaluation).
    """
    import random

    rng = random.Random(seed)
    best: tuple[float, dict[str, str]] | None = None
    for _ in range(max(samples, 1)):
        sample = {k: str(v) for k, v in space.sample_choices(rng).items() if k != "two_level"}
        acc = _accuracy(supernet.freeze(sample), loader)
        if best is None or acc > best[0]:
            best = (acc, sample)
    assert best is not None
    return best[1]


@experimental(NNI_REASON)
def run_nni_nas(space: Any, data: str | Any = "digits", strategy: str = "random_oneshot", *, epochs: int = 1,
                batch_size: int = 64, lr: float = 3e-3, trials: int = 4, oneshot_samples: int = 8,
                two_level: bool = False, out_dir: str | Path | None = None, seed: int = 0,
                accelerator: str = "cpu", progress: bool = False) -> Any:
    """Search ``space`` (a ConvGroupsSpace or its name) with an NNI strategy on ``data``; return the found spec.

    ``strategy``: ``darts`` / ``random_oneshot`` (one supernet training of ``epochs`` epochs) or ``random``
    (``trials`` sampled networks, each trained ``epochs`` epochs, sequentially in this process). ``data`` is a
    ``load_data`` spec or a DataBundle. The result is the spec adapted to the data set, with provenance
    ``strategy="nni:<name>"``, ``choices`` and ``data``, and metrics ``params`` / ``macs``; with ``out_dir`` it is
    also written to ``OUT/spec.json``, NNI's exported dict to ``OUT/nni_sample.json``, and NNI's logs and checkpoint
    go to ``OUT/nni``. Bad input raises ValueError.
    """
    name = strategy.replace("-", "_").lower()
    if name not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r} is not supported; valid: {', '.join(STRATEGIES)}")
    for key, value in (("epochs", epochs), ("batch_size", batch_size), ("trials", trials),
                       ("oneshot_samples", oneshot_samples)):
        if value < 1:
            raise ValueError(f"{key} must be >= 1, got {value}")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    space = _check_space(space)
    import_nni(nas=True)
    import torch

    from mgnas.data import load_data

    bundle = load_data(data, batch_size=batch_size, seed=seed) if isinstance(data, str) else data
    torch.manual_seed(seed)
    c = bundle.input_size[0]
    model_space = to_nni_space(space, in_channels=c, num_classes=bundle.num_classes, input_size=bundle.input_size,
                               two_level=two_level)
    with contextlib.ExitStack() as stack:
        if out_dir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mgnas-nni-")))
        else:
            workdir = Path(out_dir) / "nni"
            workdir.mkdir(parents=True, exist_ok=True)
        stack.enter_context(_quiet())
        sample = _search(space, model_space, bundle, name, workdir, epochs=epochs, batch_size=batch_size, lr=lr,
                         trials=trials, oneshot_samples=oneshot_samples, seed=seed, accelerator=accelerator,
                         progress=progress)
    return _finish(space, sample, bundle, name, two_level=two_level, out_dir=out_dir,
                   data_name=data if isinstance(data, str) else bundle.name)


def _search(space: Any, model_space: Any, bundle: Any, name: str, workdir: Path, *, trials: int,
            oneshot_samples: int, seed: int, **train: Any) -> dict[str, Any]:
    """Run the NNI experiment; the exported ``{label: candidate name}`` dict."""
    from nni.nas.evaluator import FunctionalEvaluator
    from nni.nas.experiment import NasExperiment, NasExperimentConfig

    make = _evaluator_factory(bundle, seed=seed, workdir=workdir, **train)
    evaluator = FunctionalEvaluator(_fresh_trial, make=make) if name == "random" else make()
    config = NasExperimentConfig("sequential", "raw")
    config.experiment_working_directory = str(workdir)
    if name == "random":
        config.max_trial_number = trials
    exp = NasExperiment(model_space, evaluator, _strategy(name, seed), config)
    try:
        exp.run()
        if name == "random_oneshot":
            return _best_subnet(space, exp.strategy.supernet, bundle.val, oneshot_samples, seed)
        top = exp.export_top_models(top_k=1, formatter="dict")
    finally:
        exp.stop()
    if not top:
        raise RuntimeError(f"NNI's {name} strategy finished without a model")
    return dict(top[0])


def _finish(space: Any, sample: Mapping[str, Any], bundle: Any, name: str, *, two_level: bool,
            out_dir: str | Path | None, data_name: str) -> Any:
    """The exported sample as a spec adapted to the data, with provenance and params/MACs; saved when asked."""
    from mgnas.models import adapt_spec, build_model
    from mgnas.profile import count
    from mgnas.spec import save

    frozen = to_mgnas_spec(space, sample, two_level=two_level)
    choices = dict(frozen.provenance["choices"])
    c, h, w = bundle.input_size
    spec = adapt_spec(frozen, in_channels=c, num_classes=bundle.num_classes, input_size=(c, h, w))
    counted = count(build_model(spec), (c, h, w), per_layer=False)
    spec = spec.with_provenance(strategy=f"nni:{name}", space=space.name, choices=choices, data=data_name)
    spec = spec.with_metrics(params=int(counted.params), macs=int(counted.macs))
    if out_dir is not None:
        save(spec, Path(out_dir) / "spec.json")
        from mgnas._atomic import write_json_atomic

        write_json_atomic(dict(sample), Path(out_dir) / "nni_sample.json", indent=1)
    return spec
