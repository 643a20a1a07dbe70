"""Differentiable group search with DGConv gates (Zhang et al. 2019, §3.3 and §4).

The supernet is ``build_model`` of a space's ``supernet_spec()`` (its searchable convs are DGConvs);
gates g̃ and weights are trained jointly by one optimiser with two parameter groups (gates: their own
learning rate ``gate_lr``, no weight decay by default, optionally frozen for ``gate_warmup_epochs``).
A complexity budget (see :mod:`._budget`) gives the differentiable ζ and the target o. Penalties:

- ``paper``  loss = CE · (o/ζ)^a, a = α = −0.02 when ζ > o else 0 (the paper's weighted product,
  faithful). As DESIGN.md records, all-dense gates at ζ/o = 32 raise the loss by only 32^0.02 ≈ ×1.07,
  so this alone often does not reach the budget; the final ζ/o is reported honestly, never projected.
- ``hinge``  (default) loss = CE + λ·relu(log(ζ/o)), with λ raised by dual ascent while over budget
  (λ ← max(0, λ + η_λ·log(ζ_hard/o)) every step), PLUS a final projection: if the hard ζ still exceeds
  o after training, the least-confident coupled gates (smallest |g̃| among gates at 1) are set to 0
  one at a time until ζ ≤ o. Every layer at its largest group count is within budget (checked before
  training), so the projection always terminates: "within budget" is a guarantee. ``projected`` in
  ``result.json`` records whether it was needed (accuracy is then re-measured on the projected net).

The DGConvs compute with ``dgconv_impl``: ``"sparse"`` (default: grouped convolutions only, the same values
and straight-through gradients as the paper's form) or ``"masked"`` (the paper's dense W ⊙ U, the
reference); see :class:`mgnas.ops.DGConv2d`. Both give the same search, so the choice is recorded
(``dgconv_impl`` in ``result.json``, ``supernet_impl`` in the spec's provenance, next to ``supernet_hash``:
the frozen spec holds no DGConv) but not part of the run's identity: a run may resume with the
other one. ``device`` ("auto", "cpu", "cuda", "cuda:N") is where a single process trains; under torchrun
every process uses cuda:LOCAL_RANK (see :func:`mgnas.train.distributed.resolve_device`).

Departures from the paper: the hinge penalty, dual ascent and projection are ours (the paper has only
the weighted product); ``params=`` / ``macs=`` budgets generalise o = Σ C²/b to whole-network totals.
"""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mgnas.ops import set_dgconv_impl
from mgnas.train.config import TrainConfig
from mgnas.train.distributed import resolve_device

from ._budget import Budget, make_budget, parse_budget
from ._freeze import freeze, gate_values, groups_per_layer

__all__ = ["SearchConfig", "SearchResult", "DifferentiableSearch", "paper_penalty", "hinge_penalty", "project"]

PENALTIES = ("hinge", "paper")
DGCONV_IMPLS = ("sparse", "masked")
#: SearchConfig keys that change how fast a run goes, not what it computes (left out of the run's identity).
_RUNTIME_KEYS = ("dgconv_impl", "device")


@dataclass(frozen=True)
class SearchConfig:
    """A DGConv search: space, data, budget, penalty, gate optimisation, and the training config."""

    space: str = "resnet20_groups"
    data: str = "digits"
    budget: str = "b=32"
    penalty: str = "hinge"
    alpha: float = -0.02                 # paper: a = α when ζ > o
    lambda_init: float = 1.0             # hinge: initial multiplier
    lambda_lr: float = 0.05              # hinge: dual-ascent step per training step
    gate_lr: float | None = None         # None: the weights' lr
    gate_weight_decay: float = 0.0
    gate_warmup_epochs: int = 0
    image_size: int | None = None        # imagenet: training crop size
    verify_ranks_every_step: bool = False  # DDP: assert identical hard gates on every rank at every step
    download: bool = False
    dgconv_impl: str = "sparse"          # "sparse" (grouped convs only) | "masked" (W ⊙ U, the reference)
    device: str = "auto"                 # auto | cpu | cuda | cuda:N (torchrun: cuda:LOCAL_RANK)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        if self.penalty not in PENALTIES:
            raise ValueError(f"penalty: {self.penalty!r} is not supported; valid values: {', '.join(PENALTIES)}")
        parse_budget(self.budget)
        if self.dgconv_impl not in DGCONV_IMPLS:
            raise ValueError(f"dgconv_impl: {self.dgconv_impl!r} is not supported; valid values: "
                             f"{', '.join(DGCONV_IMPLS)}")
        _check_device_name(self.device)
        if self.alpha > 0:
            raise ValueError(f"alpha: must be <= 0 (the paper uses -0.02), got {self.alpha}")
        if self.lambda_init < 0 or self.lambda_lr < 0:
            raise ValueError("lambda_init and lambda_lr must be >= 0")
        if self.gate_lr is not None and self.gate_lr <= 0:
            raise ValueError(f"gate_lr: must be > 0, got {self.gate_lr}")
        if not 0 <= self.gate_warmup_epochs < self.train.epochs:
            raise ValueError(
                f"gate_warmup_epochs: {self.gate_warmup_epochs} must be in [0, epochs={self.train.epochs})")


@dataclass
class SearchResult:
    spec: Any                      # the frozen ArchSpec
    result: dict[str, Any]         # what result.json holds
    out_dir: Path | None


# --------------------------------------------------------------------------- penalties
def paper_penalty(ce: Tensor, zeta: Tensor, target: float, alpha: float = -0.02) -> Tensor:
    """CE · (o/ζ)^a with a = α if ζ > o else 0 (Zhang et al. §3.3)."""
    if float(zeta.detach()) <= target:
        return ce
    return ce * (target / zeta) ** alpha


def hinge_penalty(ce: Tensor, zeta: Tensor, target: float, lam: float) -> Tensor:
    """CE + λ·relu(log(ζ/o))."""
    return ce + lam * F.relu(torch.log(zeta / target))


@torch.no_grad()
def project(budget: Budget) -> int:
    """Set the least-confident coupled gates to 0 until the hard ζ ≤ o; returns the number of flips."""
    flips = 0
    while budget.hard_zeta() > budget.target * (1 + 1e-12):
        best: tuple[float, nn.Module, int] | None = None
        for m in budget.layers:
            for k, v in enumerate(m.gates.detach().tolist()):
                if v >= 0 and (best is None or abs(v) < best[0]):
                    best = (abs(v), m, k)
        if best is None:  # unreachable: the minimum is checked before training
            raise RuntimeError("projection ran out of gates above the budget")
        _, m, k = best
        m.gates[k] = -max(abs(float(m.gates[k])), 1e-8)
        flips += 1
    return flips


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


# --------------------------------------------------------------------------- the search
class DifferentiableSearch:
    """Build (and check) everything in ``__init__``: bad space/data/budget fail here, before training."""

    def __init__(self, config: SearchConfig, out_dir: str | Path | None = None, *, progress: bool = True,
                 data: Any = None, supernet: Any = None) -> None:
        from mgnas.search_spaces import get_space

        from mgnas.models import adapt_spec, build_model
        from mgnas.profile import count

        self.config, self.progress = config, progress
        self.out_dir = Path(out_dir) if out_dir is not None else None
        tc = config.train
        self.space = get_space(config.space)
        self.device = resolve_device(config.device)  # an unknown or unavailable device fails here
        self.data = data if data is not None else _load_data(
            config.data, batch_size=tc.batch_size, eval_batch_size=tc.eval_batch_size, workers=tc.workers,
            seed=tc.seed, distributed=_distributed(), download=config.download, image_size=config.image_size)
        c, h, w = self.data.input_size
        supernet = supernet if supernet is not None else self.space.supernet_spec()  # given: a nested study trial
        self.supernet_spec = adapt_spec(supernet, in_channels=c, num_classes=self.data.num_classes,
                                        input_size=(c, h, w))
        torch.manual_seed(tc.seed)  # gate signs and weight init depend only on the seed
        self.model = build_model(self.supernet_spec)
        set_dgconv_impl(self.model, config.dgconv_impl)
        dgconvs = [(p, conv) for p, conv in self.supernet_spec.convs() if conv.kind == "dgconv"]
        dense_spec = self.supernet_spec.with_values({p: conv.replace(kind="dense").to_dict() for p, conv in dgconvs})
        dense = count(build_model(dense_spec), (c, h, w), per_layer=False)
        self.budget = make_budget(config.budget, self.model, input_size=(c, h, w),
                                  static_params=dense.params, static_macs=dense.macs)
        self.lam = config.lambda_init if config.penalty == "hinge" else 0.0
        self.epochs_done = 0
        self._gate_scale = 0.0 if config.gate_warmup_epochs > 0 else 1.0
        for m in self.budget.layers:
            m.gates.register_hook(lambda g: g * self._gate_scale)

    def layer_info(self) -> list[dict[str, Any]]:
        """Layer name (``stages.0.0.conv1``, as in labels and counts) and shape of every DGConv, in the order of
        ``budget.layers`` (the order of ``groups`` and ``gates`` in results and history; MGIC builds its modules
        level by level, so this is not always the spec's order)."""
        from mgnas.spec import layer_name

        from ._freeze import supernet_paths

        names = {id(m): layer_name(p) for p, _, m in supernet_paths(self.supernet_spec, self.model)}
        return [{"name": names[id(m)], "in_channels": m.in_channels, "out_channels": m.out_channels,
                 "kernel_size": m.kernel_size, "max_groups": math.gcd(m.in_channels, m.out_channels)}
                for m in self.budget.layers]

    # ------------------------------------------------------------------ trainer hooks
    def identity(self) -> dict[str, Any]:
        cfg = self.config
        train = {k: v for k, v in _plain(cfg.train).items() if k not in ("workers", "eval_batch_size", "compile")}
        search = {k: v for k, v in _plain(cfg).items() if k != "train" and k not in _RUNTIME_KEYS}
        key = json.dumps({"search": search, "train": train},
                         sort_keys=True, default=str)
        return {"spec_hash": self.supernet_spec.content_hash(), "space": cfg.space, "data": cfg.data,
                "budget": cfg.budget, "penalty": cfg.penalty,
                "config_hash": hashlib.sha256(key.encode()).hexdigest()[:16]}

    def param_groups(self) -> list[dict[str, Any]]:
        gates = [m.gates for m in self.budget.layers]
        ids = {id(g) for g in gates}
        weights = [p for p in self.model.parameters() if id(p) not in ids]
        lr = self.config.gate_lr if self.config.gate_lr is not None else self.config.train.lr
        return [{"params": weights}, {"params": gates, "lr": lr, "weight_decay": self.config.gate_weight_decay}]

    def loss_fn(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        checked = self._verify_ranks() if model.training and self.config.verify_ranks_every_step else None
        logits = model(x)
        ce = F.cross_entropy(logits, y, label_smoothing=self.config.train.label_smoothing)
        zeta = self.budget.zeta().float()
        ratio = float(zeta.detach()) / self.budget.target
        if self._gate_scale == 0.0:
            loss = ce
        elif self.config.penalty == "paper":
            loss = paper_penalty(ce, zeta, self.budget.target, self.config.alpha)
        else:
            loss = hinge_penalty(ce, zeta, self.budget.target, self.lam)
            if model.training:  # dual ascent on the hard ζ (identical on every rank)
                self.lam = max(0.0, self.lam + self.config.lambda_lr * math.log(ratio))
        logs = {"ce": float(ce.detach()), "zeta_over_o": ratio, "lambda": self.lam}
        if checked is not None:
            logs["ranks_verified"] = checked
        return loss, logs

    def _verify_ranks(self) -> float:
        """1.0 after checking that every rank holds the same hard gate pattern (one small all-reduce)."""
        from mgnas.train.distributed import all_equal, is_distributed

        if not is_distributed():
            return 0.0
        hard = torch.cat([(m.gates.detach() >= 0).reshape(-1).float() for m in self.budget.layers])
        if not all_equal(hard):
            raise RuntimeError("DGConv gate decisions differ across ranks within an epoch")
        return 1.0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> dict[str, Any]:
        from mgnas.train.distributed import all_equal, is_distributed

        if is_distributed():  # gate decisions must be identical on every rank (DDP all-reduces their gradients)
            gates = torch.cat([m.gates.detach().reshape(-1) for m in self.budget.layers])
            if not all_equal(gates):
                raise RuntimeError(f"DGConv gates differ across ranks after epoch {epoch}")
        self.epochs_done += 1
        self._gate_scale = 1.0 if self.epochs_done >= self.config.gate_warmup_epochs else 0.0
        return {"zeta": self.budget.hard_zeta(), "o": self.budget.target, "zeta_over_o_hard": self.budget.ratio(),
                "lambda_end": self.lam, "groups": groups_per_layer(self.budget.layers),
                "gates": gate_values(self.budget.layers)}

    def extra_state(self) -> dict[str, Any]:
        return {"lambda": float(self.lam), "epochs_done": int(self.epochs_done)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.lam = float(state["lambda"])
        self.epochs_done = int(state["epochs_done"])
        self._gate_scale = 1.0 if self.epochs_done >= self.config.gate_warmup_epochs else 0.0

    # ------------------------------------------------------------------ run
    def run(self, resume: bool = False) -> SearchResult:
        from mgnas.train import Trainer

        start = time.time()
        trainer = Trainer(self.model, self.config.train, self.data, self.out_dir, param_groups=self.param_groups(),
                          loss_fn=self.loss_fn, on_epoch_end=self.on_epoch_end, extra_state=self.extra_state,
                          load_extra_state=self.load_extra_state, identity=self.identity(), progress=self.progress,
                          device=self.device)
        metrics = trainer.fit(resume=resume)
        model = trainer.model
        ratio_trained = self.budget.ratio()
        flips = project(self.budget) if self.config.penalty == "hinge" else 0
        if flips:  # the network changed: measure it again
            metrics["val_accuracy"] = trainer.evaluate(self.data.val)["accuracy"]
            if self.data.test is not None:
                metrics["test_accuracy"] = trainer.evaluate(self.data.test)["accuracy"]
        return self._finish(trainer, model, metrics, ratio_trained, flips, time.time() - start)

    def _finish(self, trainer: Any, model: nn.Module, metrics: dict[str, Any], ratio_trained: float, flips: int,
                seconds: float) -> SearchResult:
        from mgnas.models import build_model
        from mgnas.profile import count

        cfg = self.config
        model.eval()
        frozen, static_state = freeze(self.supernet_spec, model)
        self.static_state = {k: v.cpu() for k, v in static_state.items()}  # weights.pt loads without a GPU
        counted = count(build_model(frozen), frozen.input_size, per_layer=False)
        test_acc = metrics.get("test_accuracy")
        accuracy = test_acc if test_acc is not None else metrics.get("val_accuracy")
        zeta = self.budget.hard_zeta()
        result = {
            "accuracy": accuracy, "val_accuracy": metrics.get("val_accuracy"), "test_accuracy": test_acc,
            "complexity": zeta, "budget": self.budget.target, "zeta_over_o": zeta / self.budget.target,
            "zeta_over_o_before_projection": ratio_trained, "within_budget": zeta <= self.budget.target * (1 + 1e-9),
            "projected": bool(flips), "projection_flips": flips, "budget_spec": cfg.budget, "penalty": cfg.penalty,
            "params": counted.params, "macs": counted.macs, "epochs": cfg.train.epochs,
            "seconds": metrics.get("seconds", seconds), "groups": groups_per_layer(self.budget.layers),
            "lambda": self.lam, "layers": self.layer_info(), "dgconv_impl": cfg.dgconv_impl,
            "device": str(getattr(trainer, "device", self.device)),
        }
        frozen = frozen.with_metrics(params=counted.params, macs=counted.macs, val_accuracy=result["val_accuracy"],
                                     test_accuracy=test_acc, zeta=zeta, zeta_over_o=result["zeta_over_o"])
        frozen = frozen.with_provenance(space=cfg.space, data=cfg.data, budget=cfg.budget, penalty=cfg.penalty,
                                        seed=cfg.train.seed, git_commit=_git_commit(), strategy="differentiable",
                                        supernet_impl=cfg.dgconv_impl,
                                        supernet_hash=self.supernet_spec.content_hash())
        if self.out_dir is not None and getattr(trainer, "is_main", True):
            self._write(frozen, result, trainer)
        return SearchResult(frozen, result, self.out_dir)

    def _write(self, frozen: Any, result: dict[str, Any], trainer: Any) -> None:
        """Every file atomically (a kill or a full disk never leaves a truncated one); ``result.json`` last, so a
        directory with a ``result.json`` holds a complete search."""
        from mgnas._atomic import write_json_atomic, write_text_atomic
        from mgnas.config import dump_config
        from mgnas.spec import save
        from mgnas.train.checkpoint import save_atomic

        out = self.out_dir
        out.mkdir(parents=True, exist_ok=True)
        save_atomic(self.static_state, out / "weights.pt")  # build_model(spec.json).load_state_dict(...)
        save(frozen, out / "spec.json")
        write_text_atomic(dump_config(self.config), out / "config.yaml")
        try:
            from mgnas.viz import write_report

            history = list(getattr(trainer, "history", []) or [])
            write_report(out / "report.html", history, result, title=f"DGConv search: {self.config.space} "
                         f"on {self.config.data}, {self.config.budget}, {self.config.penalty}")
        except ImportError as err:  # plotly missing: the search result stands without its report
            print(f"report.html not written: {err}")
        write_json_atomic(result, out / "result.json", indent=1)


def _check_device_name(device: str) -> None:
    name, sep, index = str(device).strip().lower().partition(":")
    if name not in ("auto", "cpu", "cuda") or (sep and (name != "cuda" or not index.isdigit())):
        raise ValueError(f"device: {device!r} is not supported; valid values: auto, cpu, cuda, cuda:N")


def _load_data(spec: str, **kwargs: Any) -> Any:
    from mgnas.data import load_data

    return load_data(spec, **kwargs)


def _distributed() -> bool:
    import os

    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _plain(cfg: Any) -> dict[str, Any]:
    from mgnas.config import config_to_dict

    return config_to_dict(cfg)


def run_search(config: SearchConfig, out_dir: str | Path | None = None, *, resume: bool = False,
               progress: bool = True, on_ready: Callable[[DifferentiableSearch], None] | None = None) -> SearchResult:
    """Check, train, project, freeze and write a search; ``on_ready`` runs after all checks, before training."""
    search = DifferentiableSearch(config, out_dir, progress=progress)
    if on_ready is not None:
        on_ready(search)
    return search.run(resume=resume)
