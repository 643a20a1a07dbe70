"""The training engine shared by search and retraining.

:class:`Trainer` runs epochs of SGD/AdamW with a per-step schedule, evaluates on the validation split
after every epoch (and on the test split at the end), and writes ``checkpoint.pt`` and
``history.jsonl`` into ``out_dir`` after every epoch (rank 0 only, atomically). ``fit(resume=True)``
continues from the checkpoint bit-identically on CPU (a run killed before its first checkpoint has none: it
starts from the beginning, exactly as an uninterrupted run): model, optimiser, schedule step, the RNG states
of every rank, the history and the strategy's extra state are restored, and the data bundle reshuffles
from ``(seed, epoch)`` through ``set_epoch``.

A strategy hooks in through ``loss_fn(model, x, y) -> (loss, logs)`` (``model`` is the module to call
for the forward: it is DDP-wrapped under DDP, and it records its output so the trainer can count the
training accuracy), ``param_groups`` (e.g. gates with their own lr and no weight decay), ``on_epoch_end``
(extra per-epoch logs), ``extra_state``/``load_extra_state`` (e.g. a Lagrange multiplier in the
checkpoint) and ``identity`` (e.g. the spec hash; resuming with another identity is refused).

Accuracies are fractions in [0, 1]. Under DDP every rank runs the same number of steps (the data
bundle's sampler must give every rank the same number of batches); metrics are summed over ranks.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from mgnas.train.checkpoint import (
    CHECKPOINT,
    FORMAT,
    HISTORY,
    ResumeError,
    TrainingDiverged,
    capture_rng,
    check_safe,
    load_checkpoint,
    restore_rng,
    save_atomic,
    to_primitive,
    write_text_atomic,
)
from mgnas.train.config import RUNTIME_FIELDS, TrainConfig
from mgnas.train.distributed import init_distributed
from mgnas.train.progress import EpochProgress
from mgnas.train.schedule import StepSchedule

__all__ = ["Trainer", "TrainingDiverged", "ResumeError", "build_optimizer", "seed_everything"]

LossFn = Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, dict[str, float]]]
#: History fields that measure time; they differ between otherwise identical runs.
TIMING_FIELDS = ("seconds", "images_per_s")


class _Recorder(nn.Module):
    """Calls the forward module and keeps its last output (for the training accuracy)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.last_output: Any = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.inner(*args, **kwargs)
        self.last_output = out
        return out


def seed_everything(seed: int) -> None:
    """Seed torch, Python's ``random`` and NumPy's global generator with ``seed``."""
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)


def build_optimizer(model: nn.Module, config: TrainConfig, param_groups: list[dict] | None) -> torch.optim.Optimizer:
    """SGD or AdamW over ``param_groups`` (parameters in no group form a last group with the defaults)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    owned = {id(p) for p in model.parameters()}
    groups, seen = [], set()
    for i, group in enumerate(param_groups or []):
        group = dict(group)
        params = list(group.get("params", []))
        for p in params:
            if id(p) not in owned:
                raise ValueError(f"param_groups[{i}] holds a tensor that is not a parameter of the model")
            if id(p) in seen:
                raise ValueError(f"param_groups[{i}] repeats a parameter already in an earlier group")
            seen.add(id(p))
        group["params"] = [p for p in params if p.requires_grad]
        groups.append(group)
    rest = [p for p in trainable if id(p) not in seen]
    if rest or not groups:
        groups.append({"params": rest})
    for group in groups:
        group.setdefault("lr", config.lr)
        group.setdefault("weight_decay", config.weight_decay)
    fused = _fused_ok([p for g in groups for p in g["params"]])
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay,
                               nesterov=config.nesterov and config.momentum > 0, fused=fused)
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay, fused=fused)


def _fused_ok(params: list[torch.Tensor]) -> bool | None:
    """``True`` when every parameter is a floating-point tensor on CPU or CUDA: torch's fused SGD/AdamW kernels
    then update all of them in one pass (same arithmetic as the per-tensor loop; on CPU, where torch's default is
    that loop, it measured about half the optimizer time of a G-ResNeXt-50 supernet step, whose 45M dense DGConv
    weights the update must touch). ``None`` (torch's default choice) otherwise."""
    ok = bool(params) and all(p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64,
                                                                                   torch.float16, torch.bfloat16)
                              for p in params)
    return True if ok else None


class Trainer:
    """Train ``model`` on ``data`` (an ``mgnas.data.DataBundle``) as ``config`` says; see the module docstring."""

    def __init__(self, model: nn.Module, config: TrainConfig, data: Any, out_dir: Path | str | None, *,
                 param_groups: list[dict] | None = None, loss_fn: LossFn | None = None,
                 on_epoch_end: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None,
                 extra_state: Callable[[], dict] | None = None,
                 load_extra_state: Callable[[dict], None] | None = None,
                 identity: dict[str, Any] | None = None, progress: bool = True,
                 device: str | torch.device | None = None) -> None:
        self.config, self.data = config, data
        self.out_dir = Path(out_dir) if out_dir is not None else None
        # device: "auto" (None), "cpu", "cuda" or "cuda:N"; under torchrun each process uses cuda:LOCAL_RANK
        self.rank, self.world_size, self.device = init_distributed(device)
        self.is_main = self.rank == 0
        self.loss_fn = loss_fn or self._cross_entropy
        self.on_epoch_end, self.extra_state, self.load_extra_state = on_epoch_end, extra_state, load_extra_state
        self.identity = to_primitive(identity or {}, "identity")
        model.to(self.device)
        if config.channels_last:
            model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer = build_optimizer(model, config, param_groups)
        self.schedule = StepSchedule(self.optimizer, config, len(data.train))
        self._forward: _Recorder | None = None  # built by fit(), released at its end (see _release_forward)
        self.history: list[dict[str, Any]] = []
        self.epoch = 0  # completed epochs
        self._progress = EpochProgress(progress and self.is_main)

    # --- public -------------------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path | None:
        return self.out_dir / CHECKPOINT if self.out_dir is not None else None

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to ``config.epochs``; return the final metrics (val/test accuracy and loss, epochs, seconds)."""
        if not (resume and self._resume()):  # a run killed before its first checkpoint starts from the beginning
            self._seed()
        self._forward = self._build_forward()
        try:
            for epoch in range(self.epoch, self.config.epochs):
                row = self._run_epoch(epoch)
                self.history.append(row)
                self.epoch = epoch + 1
                self._save()
        finally:
            self._progress.close()
            self._release_forward()
        return self._final_metrics()

    @torch.no_grad()
    def evaluate(self, loader: Any) -> dict[str, float]:
        """Mean cross-entropy and accuracy of the model on ``loader`` (summed over ranks under DDP)."""
        was_training = self.model.training
        self.model.eval()
        sums = torch.zeros(3, dtype=torch.float64, device=self.device)
        for x, y in loader:
            x, y = self._to_device(x, y)
            with self._autocast():
                out = self.model(x)
            out = _logits(out)
            sums[0] += F.cross_entropy(out.float(), y, reduction="sum").double()
            sums[1] += (out.argmax(1) == y).sum()
            sums[2] += y.shape[0]
        self.model.train(was_training)
        if self.world_size > 1:
            dist.all_reduce(sums)
        loss, correct, count = sums.tolist()
        return {"loss": loss / count if count else float("nan"), "accuracy": correct / count if count else float("nan")}

    def _build_forward(self) -> _Recorder:
        forward: nn.Module = self.model
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            forward = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if self.config.compile:
            forward = torch.compile(forward)
        return _Recorder(forward)

    def _release_forward(self) -> None:
        # A DDP reducer still alive at interpreter exit (or when the process group is destroyed) can abort
        # the process ("terminate called without an active exception", gloo): drop it as soon as fit ends.
        self._forward = None
        gc.collect()

    # --- one epoch ----------------------------------------------------------------------------------

    def _run_epoch(self, epoch: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        train = self._train_epoch(epoch)
        val = self.evaluate(self.data.val)
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"], **train,
                               "val_loss": val["loss"], "val_accuracy": val["accuracy"]}
        if len(self.optimizer.param_groups) > 1:
            row["lr_groups"] = [g["lr"] for g in self.optimizer.param_groups]
        if self.on_epoch_end is not None:
            row.update(to_primitive(self.on_epoch_end(epoch + 1, dict(row)) or {}, "on_epoch_end"))
        row["seconds"] = time.perf_counter() - t0
        self._progress.end(row, self.config.epochs)
        return row

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        self._forward.train()
        self.data.set_epoch(epoch)
        steps = len(self.data.train)
        self._progress.start(epoch + 1, self.config.epochs, steps)
        sums = torch.zeros(3, dtype=torch.float64)  # loss * n, correct, n
        log_sums: dict[str, float] = {}
        t0 = time.perf_counter()
        for step, (x, y) in enumerate(self.data.train):
            x, y = self._to_device(x, y)
            self.schedule.apply()
            with self._autocast():
                loss, logs = self.loss_fn(self._forward, x, y)
            self._check_finite(loss, epoch, step, steps)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.config.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
            self.optimizer.step()
            self.schedule.step()
            n = y.shape[0]
            sums += torch.tensor([float(loss.detach()) * n, _correct(self._forward.last_output, y), n],
                                 dtype=torch.float64)
            for key, value in (logs or {}).items():
                value = value.detach().item() if isinstance(value, Tensor) else float(value)
                log_sums[key] = log_sums.get(key, 0.0) + value
            seen = sums[2].item() * self.world_size
            self._progress.update({"loss": sums[0].item() / sums[2].item(), "accuracy": sums[1].item() / sums[2].item(),
                                   "images_per_s": seen / max(time.perf_counter() - t0, 1e-9),
                                   **{k: v / (step + 1) for k, v in log_sums.items()}})
        seconds = time.perf_counter() - t0
        self._forward.last_output = None
        if self.world_size > 1:  # DDP syncs buffers before each forward: sync after the last one too
            for buffer in self.model.buffers():
                dist.broadcast(buffer, src=0)
        return self._reduce_epoch(sums, log_sums, steps, seconds)

    def _reduce_epoch(self, sums: Tensor, log_sums: dict[str, float], steps: int, seconds: float) -> dict[str, float]:
        keys = sorted(log_sums)
        flat = torch.tensor([*sums.tolist(), *(log_sums[k] / max(steps, 1) for k in keys)], dtype=torch.float64)
        if self.world_size > 1:
            flat = flat.to(self.device)
            dist.all_reduce(flat)
            flat = flat.cpu()
            flat[3:] /= self.world_size
        loss, correct, count = flat[:3].tolist()
        out = {"train_loss": loss / max(count, 1), "train_accuracy": correct / max(count, 1),
               "images_per_s": count / max(seconds, 1e-9)}
        out.update({k: v for k, v in zip(keys, flat[3:].tolist())})
        return out

    def _check_finite(self, loss: Tensor, epoch: int, step: int, steps: int) -> None:
        bad = (~torch.isfinite(loss.detach())).any().to(torch.int32).reshape(1)
        if self.world_size > 1:
            dist.all_reduce(bad, op=dist.ReduceOp.MAX)
        if not bad.item():
            return
        self._progress.close()
        kept = (f"the last good checkpoint (epoch {self.epoch}) is kept at {self.checkpoint_path}"
                if self.epoch > 0 and self.checkpoint_path is not None else "no checkpoint was written")
        raise TrainingDiverged(
            f"training diverged: the loss is {float(loss.detach().float().sum())} at epoch {epoch + 1}, step "
            f"{step + 1}/{steps} (lr {self.optimizer.param_groups[0]['lr']:.3g}); {kept}. Lower the learning rate, "
            "set grad_clip, or check the data")

    # --- checkpoints ------------------------------------------------------------------------------

    def _seed(self) -> None:
        seed_everything(self.config.seed + self.rank)

    def _save(self) -> None:
        rng = [capture_rng()]
        if self.world_size > 1:
            rng = [None] * self.world_size
            dist.all_gather_object(rng, capture_rng())
        extra = self.extra_state() if self.extra_state is not None else {}
        if not self.is_main or self.out_dir is None:
            return
        check_safe(extra, "extra_state()")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic("".join(json.dumps(row) + "\n" for row in self.history), self.out_dir / HISTORY)
        save_atomic({
            "format": FORMAT, "epoch": self.epoch, "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(), "rng": rng,
            "history": self.history, "identity": self.identity, "config": _config_dict(self.config),
            "extra": extra, "world_size": self.world_size,
        }, self.out_dir / CHECKPOINT)

    def _resume(self) -> bool:
        """Restore the last checkpoint; False when the run never wrote one (it then starts from the beginning)."""
        if self.out_dir is None:
            raise ResumeError("cannot resume: the trainer has no output directory")
        payload: tuple[str, Any] | None = None
        if self.is_main:
            try:
                if not (self.out_dir / CHECKPOINT).exists():
                    payload = ("none", None)
                else:
                    payload = ("ok", load_checkpoint(self.out_dir / CHECKPOINT))
            except ResumeError as exc:
                payload = ("error", str(exc))
        if self.world_size > 1:
            box = [payload]
            dist.broadcast_object_list(box, src=0)
            payload = box[0]
        status, ckpt = payload
        if status == "error":
            raise ResumeError(ckpt)
        if status == "none":
            return False
        self._check_compatible(ckpt)
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.schedule.load_state_dict(ckpt["schedule"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ResumeError(f"cannot resume from {self.checkpoint_path}: it does not fit this model or "
                              f"optimiser ({str(exc).splitlines()[0]})") from None
        rng = ckpt["rng"]
        restore_rng(rng[self.rank] if len(rng) == self.world_size else rng[0])
        self.history = list(ckpt["history"])
        self.epoch = int(ckpt["epoch"])
        if self.load_extra_state is not None:
            self.load_extra_state(ckpt.get("extra", {}))
        return True

    def _check_compatible(self, ckpt: dict[str, Any]) -> None:
        where = self.checkpoint_path
        if ckpt.get("identity") != self.identity:
            diff = _diff(ckpt.get("identity") or {}, self.identity)
            raise ResumeError(f"cannot resume: {where} belongs to another run ({diff}); "
                              "use a new output directory or the original settings")
        saved, mine = dict(ckpt.get("config") or {}), _config_dict(self.config)
        for key in RUNTIME_FIELDS:
            saved.pop(key, None)
            mine.pop(key, None)
        if saved != mine:
            raise ResumeError(f"cannot resume: {where} was written with another training config "
                              f"({_diff(saved, mine)}); resume with the original settings")

    # --- helpers ------------------------------------------------------------------------------------

    def _final_metrics(self) -> dict[str, Any]:
        last = self.history[-1]
        test = self.evaluate(self.data.test) if getattr(self.data, "test", None) is not None else None
        return {
            "val_accuracy": last["val_accuracy"], "val_loss": last["val_loss"],
            "test_accuracy": test["accuracy"] if test else None, "test_loss": test["loss"] if test else None,
            "train_loss": last["train_loss"], "train_accuracy": last["train_accuracy"],
            "epochs": self.epoch, "seconds": sum(row["seconds"] for row in self.history),
            "images_per_s": sum(r["images_per_s"] for r in self.history) / len(self.history),
        }

    def _to_device(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        x = x.to(self.device, non_blocking=True)
        if self.config.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=True)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp == "bf16")

    def _cross_entropy(self, model: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, dict[str, float]]:
        out = _logits(model(x))
        return F.cross_entropy(out.float(), y, label_smoothing=self.config.label_smoothing), {}


def _logits(out: Any) -> Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _correct(out: Any, y: Tensor) -> float:
    out = _logits(out)
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != y.shape[0]:
        return 0.0
    return float((out.detach().argmax(1) == y).sum())


def _config_dict(config: TrainConfig) -> dict[str, Any]:
    return to_primitive(dataclasses.asdict(config), "config")


def _diff(saved: dict[str, Any], mine: dict[str, Any]) -> str:
    keys = sorted(set(saved) | set(mine))
    parts = [f"{k}: checkpoint {saved.get(k)!r}, now {mine.get(k)!r}" for k in keys if saved.get(k) != mine.get(k)]
    return "; ".join(parts[:5]) or "no visible difference"
