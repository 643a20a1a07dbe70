"""One-command GPU check of the ImageNet search path (issue 9 §3): parity, throughput, NCCL, data path.

Run on the GPU machine (one H200; torch 2.11 + CUDA 13, torchvision 0.26, no optuna/plotly, no network),
after ``pip install --no-deps --no-build-isolation -e .``, from the repository root::

    python experiments/benchmarks/gpu_check.py                      # ~8 minutes at most
    python experiments/benchmarks/gpu_check.py --cpu --tiny         # every section on CPU, tiny sizes (CI)

Sections, in this order (each is time-boxed and wrapped: a failure is reported and the rest still runs; the
report is rewritten after every section, so a killed run still leaves what it measured):

1. ``parity``      DGConv2d ``impl="sparse"`` vs ``"masked"`` on the device: output, ∂L/∂x, ∂L/∂W, ∂L/∂g̃ of a
   few layer shapes (C_in ≠ C_out, mixed radix, stride 2), fp32 (TF32 off) and bf16 autocast (sparse must be as
   close to the fp32 result as masked is), then a whole ``g_resnext50`` forward + backward at a small batch.
2. ``train``       training images/s, bf16 autocast, channels_last, 224×224: ``resnext50_32x4d``,
   ``g_resnext50`` masked and sparse (every DGConv at a b=32-like pattern: 32 groups, gates unsorted, so the
   groups are not contiguous), eager; peak memory (``torch.cuda.max_memory_allocated``).
3. ``data``        the ImageNet train pipeline of ``mgnas.data`` (PIL JPEG decode + RandomResizedCrop 224 + flip
   + normalize) on JPEGs generated here into a temporary ImageFolder: images/s on one core and through a
   DataLoader with worker processes, against the images/s the GPU consumes (section 2).
4. ``decode``      ``torchvision.io.decode_jpeg(device="cuda")`` batched throughput (on CPU: ``device="cpu"``).
5. ``nccl``        a one-process ``torchrun`` NCCL group (all_reduce, broadcast, a DDP step of a sparse DGConv)
   and a one-process ``torchrun -m mgnas search`` on synthetic 224×224 data for one short epoch
   (``--cpu``: gloo, 32×32).
6. ``compile``     section 2 again under ``torch.compile``, each model in its own process with a hard timeout
   (a compile cannot be interrupted in-process); compile time reported separately.

Output: a markdown block (device, torch / CUDA / cuDNN / torchvision versions, one table per section) printed
and written to ``--out`` (default ``experiments/benchmarks/gpu_check.md``), and the same as JSON next to it.
``--tiny`` shrinks every size (32×32, batch 2, a couple of steps, ``resnet20_cifar`` / ``g_resnet20_cifar`` in
place of the ImageNet models, ``torch.compile(backend="eager")``, a 16×16 search) so that ``--cpu --tiny`` runs
in well under a minute.

Imports only torch, mgnas, PIL/numpy and (through ``mgnas.data``) torchvision: nothing the GPU machine lacks.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mgnas.ops import DGConv2d, set_dgconv_impl  # mgnas.models is imported where used: the torchrun worker skips it

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path(__file__).with_name("gpu_check.md")

# (name, DGConv impl or None) rows of the throughput table: the reference and the supernet in both forms
FULL_MODELS = ("resnext50_32x4d", "g_resnext50")
TINY_MODELS = ("resnet20_cifar", "g_resnet20_cifar")  # CIFAR-sized stand-ins: same code path, seconds on a CPU
# DGConv shapes of the parity section: (C_in, C_out, kernel, stride)
LAYER_SHAPES = ((64, 64, 3, 1), (128, 128, 3, 2), (96, 96, 3, 1), (24, 40, 3, 1), (40, 40, 3, 1), (256, 256, 1, 1))
FP32_TOL = 1e-4    # issue 9: sparse equals masked to 1e-4 relative in float32 (per layer)
MODEL_TOL = 1e-3   # a whole 50-layer network: errors compound through BN in train mode
BF16_SLACK = 2.0   # bf16: sparse may be at most this times masked's error against the fp32 result (+ 1e-3)


# --------------------------------------------------------------------------- settings
class Settings:
    """Sizes and time boxes of one run (full GPU sizes, or ``--tiny``)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.cpu, self.tiny = args.cpu, args.tiny
        self.device = torch.device("cpu" if args.cpu else "cuda")
        self.size = 32 if args.tiny else 224
        self.batch = 2 if args.tiny else args.batch
        self.steps = 2 if args.tiny else args.steps
        self.warmup = 1 if args.tiny else 5
        self.models = TINY_MODELS if args.tiny else FULL_MODELS
        self.groups = 4 if args.tiny else 32               # b=32-like: 32 groups (4 where channels are 16..64)
        self.parity_batch, self.parity_hw = (2, 8) if args.tiny else (8, 28)
        self.model_parity_batch = 2 if args.tiny else 4
        self.images = 8 if args.tiny else 256              # JPEGs generated for the data path
        self.jpeg_size = (64, 48) if args.tiny else (500, 375)  # about ImageNet's mean image size
        self.loader_workers = 1 if args.tiny else min(16, os.cpu_count() or 1)
        self.decode_batch = 4 if args.tiny else 64
        self.compile_backend = "eager" if args.tiny else "inductor"  # tiny: dynamo's graph capture only
        self.loader_samples = 16 if args.tiny else 4096  # DataLoader throughput: samples drawn with replacement
        self.budget_s = args.budget_s
        self.jpeg_blobs: list[bytes] = []                 # written by the data section, decoded by the next
        self.start = time.monotonic()

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.start)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


# --------------------------------------------------------------------------- helpers
def b_like_pattern(m: DGConv2d, groups: int, rng: random.Random) -> list[int]:
    """Gates with ``log2(groups)`` zeros in an unsorted order (radix-2 factors): ``groups`` non-contiguous groups."""
    zeros = min(groups.bit_length() - 1, len(m.factors))
    ordered = [0] * zeros + [1] * (len(m.factors) - zeros)
    pattern = ordered[:]
    for _ in range(100):  # not the sorted order (all-0 or all-1 patterns have only one order)
        rng.shuffle(pattern)
        if pattern != ordered:
            break
    return pattern


def set_b_like_gates(model: nn.Module, groups: int, seed: int = 0, magnitude: float = 1.0) -> int:
    """Every DGConv of ``model`` at a b=32-like pattern; |g̃| = ``magnitude`` so a few SGD steps flip nothing."""
    rng = random.Random(seed)
    n = 0
    for m in model.modules():
        if isinstance(m, DGConv2d):
            m.set_gates(b_like_pattern(m, groups, rng), magnitude=magnitude)
            n += 1
    return n


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b| in float64."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    """fp32 parity must compare true fp32 (cuDNN convolutions use TF32 by default)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def autocast(s: Settings, enabled: bool = True) -> torch.autocast:
    return torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=enabled)


def versions() -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    try:
        from mgnas.data._torchvision_compat import import_torchvision  # the CPU wheel needs its op-schema shim

        info["torchvision"] = import_torchvision().__version__
    except Exception as err:  # noqa: BLE001 - reported, not fatal
        info["torchvision"] = f"unavailable ({type(err).__name__})"
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
        info["gpus"] = torch.cuda.device_count()
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    else:
        info["device"] = "cpu"
    return info


# --------------------------------------------------------------------------- 1. parity
def _layer_grads(m: DGConv2d, x: torch.Tensor, r: torch.Tensor, s: Settings, bf16: bool) -> dict[str, torch.Tensor]:
    m.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_(True)
    with autocast(s, bf16):
        y = m(x)
    (y.float() * r).sum().backward()
    return {"out": y.float(), "dx": x.grad, "dW": m.weight.grad, "dg": m.gates.grad}


def _compare(masked: dict, sparse: dict, ref: dict | None) -> dict[str, float]:
    """fp32: sparse vs masked. bf16: each vs the fp32 masked result (``ref``), as ``{key}`` and ``{key}_masked``."""
    out: dict[str, float] = {}
    for key in masked:
        if ref is None:
            out[key] = rel(sparse[key], masked[key])
        else:
            out[key], out[f"{key}_masked"] = rel(sparse[key], ref[key]), rel(masked[key], ref[key])
    return out


def _parity_ok(errors: dict[str, float], bf16: bool, tol: float) -> bool:
    if not bf16:
        return all(v <= tol for v in errors.values())
    return all(errors[k] <= BF16_SLACK * errors[f"{k}_masked"] + 1e-3 for k in errors if not k.endswith("_masked"))


def section_parity(s: Settings) -> dict[str, Any]:
    rows, ok = [], True
    gen = torch.Generator().manual_seed(0)
    with no_tf32():
        for c_in, c_out, k, stride in LAYER_SHAPES:
            if s.left() < 0:
                break
            torch.manual_seed(len(rows))
            masked = DGConv2d(c_in, c_out, k, stride=stride, impl="masked").to(s.device)
            pattern = torch.randint(0, 2, (len(masked.factors),), generator=gen)
            if len(pattern) > 1 and pattern.sum() in (0, len(pattern)):
                pattern[0] = 1 - pattern[0]  # mixed patterns: non-contiguous groups
            masked.set_gates(pattern, magnitude=0.5)
            sparse = copy.deepcopy(masked)
            sparse.impl = "sparse"
            x = torch.randn(s.parity_batch, c_in, s.parity_hw, s.parity_hw, generator=gen).to(s.device)
            r = torch.randn(masked(x).shape, generator=gen).to(s.device)
            fp32 = _layer_grads(masked, x, r, s, False)
            for bf16 in (False, True):
                got_m = fp32 if not bf16 else _layer_grads(masked, x, r, s, True)
                got_s = _layer_grads(sparse, x, r, s, bf16)
                errors = _compare(got_m, got_s, fp32 if bf16 else None)
                good = _parity_ok(errors, bf16, FP32_TOL)
                ok &= good
                rows.append({"what": f"DGConv2d {c_in}->{c_out} k{k} s{stride} G={masked.num_groups()}",
                             "dtype": "bf16" if bf16 else "fp32", **errors, "ok": good})
        if s.left() > 0:
            for row in _model_parity(s):
                ok &= row["ok"]
                rows.append(row)
    note = (f"max|Δ|/max|ref|. fp32 rows: sparse vs masked (TF32 off), at most {FP32_TOL:g} per layer, "
            f"{MODEL_TOL:g} for a whole network. bf16 rows (autocast): sparse (`out`, ...) and masked (`out_masked`, "
            f"...) each vs the fp32 masked result; ok when sparse ≤ {BF16_SLACK:g}× masked + 1e-3.")
    return {"status": "ok" if ok else "fail", "rows": rows, "note": note}


def _model_parity(s: Settings) -> list[dict[str, Any]]:
    """A whole supernet (train mode) forward + backward, masked vs sparse, fp32 and bf16: g_resnext50, or with
    ``--tiny`` g_resnet20_cifar (at 32×32 g_resnext50's last stage is 1×1, and batch-norm over two values per
    channel turns rounding differences into O(1) ones)."""
    name = s.models[1]
    torch.manual_seed(0)
    from mgnas.models import build_model, model_spec

    masked = build_model(model_spec(name))
    set_b_like_gates(masked, s.groups, magnitude=0.5)
    set_dgconv_impl(masked, "masked")
    sparse = copy.deepcopy(masked)
    set_dgconv_impl(sparse, "sparse")
    masked.to(s.device).train()
    sparse.to(s.device).train()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(s.model_parity_batch, 3, s.size, s.size, generator=gen).to(s.device)
    y = torch.randint(0, 10, (s.model_parity_batch,), generator=gen).to(s.device)

    def run(model: nn.Module, bf16: bool) -> dict[str, torch.Tensor]:
        model.zero_grad(set_to_none=True)
        state = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
        with autocast(s, bf16):
            logits = model(x)
        F.cross_entropy(logits.float(), y).backward()
        model.load_state_dict(state, strict=False)  # every run starts from the same BN statistics
        gates = [m.gates.grad.reshape(-1) for m in model.modules() if isinstance(m, DGConv2d)]
        weights = [p.grad.reshape(-1) for n, p in model.named_parameters() if not n.endswith("gates")]
        return {"out": logits.float(), "dg": torch.cat(gates), "dW": torch.cat(weights)}

    rows = []
    with no_tf32():
        fp32 = run(masked, False)
        for bf16 in (False, True):
            got_m = fp32 if not bf16 else run(masked, True)
            errors = _compare(got_m, run(sparse, bf16), fp32 if bf16 else None)
            rows.append({"what": f"{name} fwd+bwd b={s.model_parity_batch} {s.size}x{s.size}",
                         "dtype": "bf16" if bf16 else "fp32", **errors, "ok": _parity_ok(errors, bf16, MODEL_TOL)})
    return rows


# --------------------------------------------------------------------------- 2. training throughput
def _throughput_models(s: Settings) -> list[tuple[str, str | None]]:
    """(registered model, DGConv impl) rows: the reference, the supernet masked and sparse."""
    ref, supernet = s.models
    return [(ref, None), (supernet, "masked"), (supernet, "sparse")]


def train_throughput(s: Settings, name: str, impl: str | None, compiled: bool, box_s: float) -> dict[str, Any]:
    """Images/s of SGD steps (bf16 autocast, channels_last) on random data; peak memory on CUDA."""
    torch.manual_seed(0)
    from mgnas.models import build_model, model_spec

    model = build_model(model_spec(name))
    if impl is not None:
        set_b_like_gates(model, s.groups)
        set_dgconv_impl(model, impl)
    groups = sorted({m.num_groups() for m in model.modules() if isinstance(m, DGConv2d)})
    model.to(s.device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(s.batch, 3, s.size, s.size, device=s.device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (s.batch,), device=s.device)
    fwd = torch.compile(model, backend=s.compile_backend) if compiled else model

    def step() -> None:
        with autocast(s):
            loss = F.cross_entropy(fwd(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if s.device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(s.device)
    t0 = time.perf_counter()
    for _ in range(s.warmup):
        step()
    s.sync()
    warm = time.perf_counter() - t0
    done, t0 = 0, time.perf_counter()
    while done < s.steps and (done == 0 or time.perf_counter() - t0 < box_s):
        step()
        done += 1
    s.sync()
    seconds = time.perf_counter() - t0
    after = sorted({m.num_groups() for m in model.modules() if isinstance(m, DGConv2d)})
    row = {"model": name, "impl": impl or "-", "compile": s.compile_backend if compiled else "eager",
           "batch": s.batch, "steps": done, "images_per_s": s.batch * done / seconds, "warmup_s": warm,
           "groups": groups, "groups_stable": groups == after}
    if s.device.type == "cuda":
        row["peak_memory_gib"] = torch.cuda.max_memory_allocated(s.device) / 2**30
    return row


def _ratios(rows: list[dict[str, Any]], s: Settings) -> dict[str, float]:
    by = {(r["model"], r["impl"]): r["images_per_s"] for r in rows}
    ref, supernet = s.models
    out = {}
    for impl in ("masked", "sparse"):
        if (ref, "-") in by and (supernet, impl) in by:
            out[f"{impl} / {ref}"] = by[(supernet, impl)] / by[(ref, "-")]
    return out


def section_train(s: Settings) -> dict[str, Any]:
    rows = []
    for name, impl in _throughput_models(s):
        if s.left() < 10:
            rows.append({"model": name, "impl": impl or "-", "skipped": "time"})
            continue
        try:
            rows.append(train_throughput(s, name, impl, compiled=False, box_s=min(30.0, s.left() / 4)))
        except Exception as err:  # noqa: BLE001 - one row fails, the others still run
            rows.append({"model": name, "impl": impl or "-", "error": _one_line(err)})
        if s.device.type == "cuda":
            torch.cuda.empty_cache()
    good = [r for r in rows if "images_per_s" in r]
    status = "ok" if len(good) == len(rows) and all(r["groups_stable"] for r in good) else "fail"
    note = (f"{s.size}x{s.size}, bf16 autocast, channels_last, SGD; DGConvs at {s.groups} unsorted groups. "
            "Issue 9 target: g_resnext50 sparse ≥ 0.75× resnext50_32x4d images/s.")
    return {"status": status, "rows": rows, "ratios": _ratios(good, s), "note": note}


# --------------------------------------------------------------------------- 3. data path
def _write_jpegs(root: Path, s: Settings) -> list[bytes]:
    """A small ImageFolder (train/ and val/, two classes) of smooth random photos-like JPEGs (quality 90)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    w, h = s.jpeg_size
    blobs = []
    for i in range(s.images):
        small = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((w, h), Image.BILINEAR)
        noise = rng.integers(-12, 13, (h, w, 3))
        image = Image.fromarray(np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        image.save(buf, format="JPEG", quality=90)
        blobs.append(buf.getvalue())
        for split in ("train", "val"):
            folder = root / split / f"class{i % 2}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i:05d}.jpg").write_bytes(buf.getvalue())
    return blobs


def section_data(s: Settings, gpu_rates: dict[str, float], tmp: Path) -> dict[str, Any]:
    from mgnas.data import load_data

    root = tmp / "imagenet"
    blobs = _write_jpegs(root, s)
    s.jpeg_blobs = blobs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        bundle = load_data(f"imagenet:{root}", batch_size=s.decode_batch, workers=0, seed=0, image_size=s.size)
        ds = bundle.train.dataset
        ds[0]  # warm-up (imports, first decode)
        n, t0 = 0, time.perf_counter()
        while n < 8 or (n < 4 * len(ds) and time.perf_counter() - t0 < 10):
            ds[n % len(ds)]  # the files are in the page cache: this is the decode + transform cost
            n += 1
        per_core = n / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    # steady state of the same dataset through worker processes (ImageNet epochs are long: no restarts)
    workers = s.loader_workers
    sampler = torch.utils.data.RandomSampler(ds, replacement=True, num_samples=s.loader_samples)
    loader = torch.utils.data.DataLoader(ds, batch_size=min(32, s.decode_batch), sampler=sampler,
                                         num_workers=workers, persistent_workers=False,
                                         pin_memory=s.device.type == "cuda")
    seen, t0 = 0, time.perf_counter()
    for i, (x, _) in enumerate(loader):
        if i == 0:  # the first batch pays the workers' start
            t0 = time.perf_counter()
            continue
        seen += x.shape[0]
        if time.perf_counter() - t0 > 20:
            break
    loader_rate = seen / (time.perf_counter() - t0) if seen else float("nan")
    w, h = s.jpeg_size
    rows = [{"what": f"one core (decode {w}x{h} JPEG + RandomResizedCrop {s.size} + flip + normalize)",
             "images_per_s": per_core},
            {"what": f"DataLoader, {workers} worker(s)", "images_per_s": loader_rate}]
    need = {label: rate / per_core for label, rate in gpu_rates.items()}  # cores to keep the GPU fed
    return {"status": "ok", "rows": rows, "images": s.images, "jpeg_size": list(s.jpeg_size),
            "cores_needed": need, "cores": os.cpu_count()}


# --------------------------------------------------------------------------- 4. JPEG decode
def section_decode(s: Settings) -> dict[str, Any]:
    from mgnas.data._torchvision_compat import import_torchvision

    import_torchvision()
    import torchvision.io as tio

    blobs = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in s.jpeg_blobs]
    if not blobs:
        return {"status": "skipped: no JPEGs (the data section did not run)"}
    batch = (blobs * (s.decode_batch // len(blobs) + 1))[:s.decode_batch]
    rows = []
    devices = ["cpu"] + (["cuda"] if s.device.type == "cuda" else [])
    for dev in devices:
        try:
            tio.decode_jpeg(batch[:2], device=dev)  # warm-up (nvjpeg handles)
        except RuntimeError as err:
            if "image extension" in str(err) or "Couldn't load" in str(err):
                return {"status": "unavailable: torchvision's compiled image ops do not load on this torch build "
                                  f"(pytorch/vision#9085): {_one_line(err)}"}
            raise
        s.sync()
        n, t0 = 0, time.perf_counter()
        while n < 3 or (time.perf_counter() - t0 < 5 and n < 50):
            if dev == "cpu":
                for b in batch:
                    tio.decode_jpeg(b)
            else:
                tio.decode_jpeg(batch, device=dev)
            n += 1
        s.sync()
        rows.append({"what": f"decode_jpeg device={dev}" + (" (1 thread per image, sequential)" if dev == "cpu"
                                                             else f" (batches of {len(batch)})"),
                     "images_per_s": n * len(batch) / (time.perf_counter() - t0)})
    return {"status": "ok", "rows": rows}


# --------------------------------------------------------------------------- 5. NCCL / torchrun smoke
def nccl_worker(cpu: bool) -> int:
    """Runs under torchrun: one process group (nccl on CUDA, gloo on CPU), collectives and a DDP step."""
    import torch.distributed as dist

    from mgnas.train.distributed import all_equal, init_distributed

    rank, world, device = init_distributed("cpu" if cpu else "cuda")
    if not dist.is_initialized():  # torchrun with one process: join a group of one on purpose
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    t = torch.full((4,), float(rank + 1), device=device)
    dist.all_reduce(t)
    b = torch.arange(3.0, device=device) if rank == 0 else torch.zeros(3, device=device)
    dist.broadcast(b, src=0)
    torch.manual_seed(rank)
    layer = nn.Sequential(DGConv2d(16, 16, 3, impl="sparse"), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 4)).to(device)
    layer[0].set_gates([0, 1, 0, 1], magnitude=0.5)
    ddp = nn.parallel.DistributedDataParallel(layer, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    F.cross_entropy(ddp(torch.randn(4, 16, 8, 8, device=device)), torch.arange(4, device=device) % 4).backward()
    opt.step()
    params = torch.cat([p.detach().reshape(-1) for p in layer.parameters()])
    ok = bool(t.sum().item() == 4 * world * (world + 1) / 2) and torch.equal(b.cpu(), torch.arange(3.0))
    ok = ok and all_equal(params) and layer[0].gates.grad is not None
    print(json.dumps({"rank": rank, "world": world, "backend": dist.get_backend(), "device": str(device),
                      "ok": ok}), flush=True)
    del ddp
    dist.destroy_process_group()
    return 0 if ok else 3


def run_boxed(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own process group; past ``timeout`` kill the whole group (torchrun's workers and
    inductor's compile workers too, so nothing keeps the GPU busy afterwards) and raise TimeoutExpired."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise subprocess.TimeoutExpired(cmd, timeout) from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _torchrun(args: list[str], timeout: float, env: dict[str, str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           "--monitor-interval=0.1", *args]
    return run_boxed(cmd, timeout, env)


def _group_row(s: Settings, env: dict[str, str]) -> dict[str, Any]:
    proc = _torchrun([str(Path(__file__).resolve()), "--nccl-worker", *(["--cpu"] if s.cpu else [])],
                     timeout=max(10.0, min(120.0, s.left())), env=env)
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    ok = proc.returncode == 0 and len(lines) == 1 and lines[0]["ok"]
    return {"backend": lines[0]["backend"] if lines else "?", "ok": ok, **({} if ok else {"error": _tail(proc)})}


def _search_row(s: Settings, env: dict[str, str], out: Path) -> dict[str, Any]:
    if s.tiny:
        search = ["--space", "resnet20_groups", "--data", "synthetic:16x16:4", "--batch-size", "256",
                  "--device", "cpu"]
    else:
        search = ["--space", "resnext50_groups", "--data", "synthetic:224x224:10", "--batch-size", "64",
                  "--amp", "bf16", "--set", "train.channels_last=true", "--workers", "4", "--device", "cuda"]
    t0 = time.perf_counter()
    proc = _torchrun(["-m", "mgnas", "search", *search, "--epochs", "1", "--dgconv-impl", "sparse",
                      "--no-progress", "--out", str(out)], timeout=max(10.0, min(240.0, s.left())), env=env)
    row: dict[str, Any] = {"ok": proc.returncode == 0, "seconds": time.perf_counter() - t0}
    if proc.returncode != 0:
        return {**row, "error": _tail(proc)}
    result = json.loads((out / "result.json").read_text())
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    row.update(device=result["device"], dgconv_impl=result["dgconv_impl"], zeta_over_o=result["zeta_over_o"],
               images_per_s=history[-1]["images_per_s"])
    row["ok"] = result["device"] == ("cpu" if s.cpu else "cuda:0") and result["dgconv_impl"] == "sparse"
    return row


def section_nccl(s: Settings, tmp: Path) -> dict[str, Any]:
    env = {**os.environ, "OMP_NUM_THREADS": "1" if s.tiny else str(max(1, (os.cpu_count() or 2) // 2))}
    data = "16x16" if s.tiny else "224x224"
    rows = []
    for what, fn in (("process group: all_reduce, broadcast, DDP step (sparse DGConv)", lambda: _group_row(s, env)),
                     (f"torchrun -m mgnas search, synthetic {data}, 1 epoch, sparse",
                      lambda: _search_row(s, env, tmp / "search"))):
        try:
            rows.append({"what": what, **fn()})
        except Exception as err:  # noqa: BLE001 - a timeout or crash of one launch; the other still runs
            rows.append({"what": what, "ok": False, "error": _one_line(err)})
    return {"status": "ok" if all(r["ok"] for r in rows) else "fail", "rows": rows}


# --------------------------------------------------------------------------- 6. torch.compile
def section_compile(s: Settings, args: argparse.Namespace) -> dict[str, Any]:
    """Each model compiled in its own process (a hard timeout; a crash stays there). ``--tiny`` compiles all
    three in one process: there a process start (importing torch and mgnas) costs more than the compiles."""
    # the masked row last: the ratio that matters (sparse vs the reference) comes first if time runs short
    models = [f"{name}:{impl or '-'}" for name, impl in sorted(_throughput_models(s), key=lambda m: m[1] == "masked")]
    batches = [models] if s.tiny else [[m] for m in models]
    rows: list[dict[str, Any]] = []
    for i, batch in enumerate(batches):
        box = s.left() / (len(batches) - i)
        named = [dict(zip(("model", "impl"), m.split(":"))) for m in batch]
        if box < 20:
            rows += [{**n, "skipped": "time"} for n in named]
            continue
        cmd = [sys.executable, str(Path(__file__).resolve()), "--unit-compile", ",".join(batch),
               "--batch", str(args.batch), "--steps", str(args.steps), *(["--cpu"] if s.cpu else []),
               *(["--tiny"] if s.tiny else [])]
        try:
            proc = run_boxed(cmd, box)
        except subprocess.TimeoutExpired:
            rows += [{**n, "error": f"timeout after {box:.0f} s"} for n in named]
            continue
        got = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
        rows += got + [{**n, "error": _tail(proc)} for n in named[len(got):]]  # a crash loses the rest
    good = [r for r in rows if "images_per_s" in r]
    return {"status": "ok" if len(good) == len(rows) else "fail", "rows": rows, "ratios": _ratios(good, s)}


def unit_compile(s: Settings, models: str) -> int:
    """``--unit-compile name:impl[,name:impl...]``: one JSON row per model on stdout."""
    for item in models.split(","):
        name, impl = item.split(":")
        try:
            row = train_throughput(s, name, None if impl == "-" else impl, compiled=True, box_s=30.0)
            row["compile_s"] = row.pop("warmup_s")
        except Exception as err:  # noqa: BLE001 - reported as the row; the next model still runs
            row = {"model": name, "impl": impl, "error": _one_line(err)}
        print(json.dumps(row), flush=True)
    return 0


# --------------------------------------------------------------------------- report
def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def _tail(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in (proc.stderr or "").strip().splitlines() if line.strip()]
    return f"exit {proc.returncode}: " + (lines[-1][:300] if lines else "(no stderr)")


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "**NO**"
    if isinstance(v, float):
        return f"{v:.2e}" if 0 < abs(v) < 1e-2 else f"{v:,.1f}" if abs(v) >= 100 else f"{v:.3f}"
    if isinstance(v, list):
        return ",".join(str(x) for x in v)
    return str(v)


def _table(rows: list[dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    out += ["| " + " | ".join(_fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
    return out


def render(report: dict[str, Any]) -> str:
    env = report["env"]
    lines = [f"### GPU check ({report['mode']}): {env.get('device')}", "",
             f"torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, torchvision {env['torchvision']}, "
             f"Python {env['python']}, {env['cores']} CPU cores; {report['seconds']:.0f} s in all. "
             f"Command: `{report['command']}`", ""]
    for name, sec in report["sections"].items():
        lines.append(f"**{name}**: {sec.get('status')} ({sec.get('seconds', 0):.1f} s)")
        if sec.get("note"):
            lines += ["", sec["note"]]
        if sec.get("rows"):
            lines += ["", *_table(sec["rows"])]
        for key in ("ratios", "cores_needed"):
            if sec.get(key):
                label = "images/s ratios" if key == "ratios" else "CPU cores needed to feed the GPU (per model)"
                lines.append("")
                lines.append(f"{label}: " + ", ".join(f"{k} = {v:.2f}" for k, v in sec[key].items()))
        lines.append("")
    return "\n".join(lines)


def run_section(report: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]], s: Settings,
                write: Callable[[], None]) -> None:
    t0 = time.perf_counter()
    if s.left() < 5:
        sec: dict[str, Any] = {"status": "skipped: time budget spent"}
    else:
        try:
            sec = fn()
        except Exception as err:  # noqa: BLE001 - one section fails, the rest still run
            sec = {"status": f"error: {_one_line(err)}", "trace": traceback.format_exc(limit=4)}
    sec["seconds"] = time.perf_counter() - t0
    report["sections"][name] = sec
    print(f"[{name}] {sec['status']} ({sec['seconds']:.1f} s)", file=sys.stderr, flush=True)
    write()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="run everything on the CPU (gloo instead of NCCL)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (32x32, batch 2, 2 steps)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown report (JSON next to it)")
    parser.add_argument("--batch", type=int, default=128, help="training batch of the throughput rows")
    parser.add_argument("--steps", type=int, default=30, help="timed training steps per throughput row")
    parser.add_argument("--budget-s", type=float, default=450.0, help="overall time budget (sections are skipped "
                        "or cut short to fit)")
    parser.add_argument("--nccl-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--unit-compile", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA device visible; use --cpu (and --tiny for a quick check)")
    if args.tiny:
        torch.set_num_threads(1)
    if args.nccl_worker:
        return nccl_worker(args.cpu)
    s = Settings(args)
    if args.unit_compile:
        return unit_compile(s, args.unit_compile)
    mode = " ".join(x for x, on in (("cpu", args.cpu), ("tiny", args.tiny)) if on) or "cuda"
    report: dict[str, Any] = {"mode": mode, "env": versions(), "sections": {}, "seconds": 0.0,
                              "command": "python experiments/benchmarks/gpu_check.py " + " ".join(argv or sys.argv[1:])}
    out_md, out_json = args.out, args.out.with_suffix(".json")

    def write() -> None:
        report["seconds"] = time.monotonic() - s.start
        out_md.parent.mkdir(parents=True, exist_ok=True)
        out_md.write_text(render(report) + "\n")
        out_json.write_text(json.dumps(report, indent=1, default=str) + "\n")

    with tempfile.TemporaryDirectory(prefix="mgnas-gpu-check-") as tmp:
        tmp_path = Path(tmp)
        run_section(report, "parity", lambda: section_parity(s), s, write)
        run_section(report, "train", lambda: section_train(s), s, write)
        rates = {f"{r['model']} {r['impl']}".replace(" -", ""): r["images_per_s"]
                 for r in report["sections"]["train"].get("rows", []) if "images_per_s" in r}
        run_section(report, "data", lambda: section_data(s, rates, tmp_path), s, write)
        run_section(report, "decode", lambda: section_decode(s), s, write)
        run_section(report, "nccl", lambda: section_nccl(s, tmp_path), s, write)
        run_section(report, "compile", lambda: section_compile(s, args), s, write)
    write()
    print(render(report))
    print(f"written: {out_md} and {out_json}", file=sys.stderr)
    bad = [n for n, sec in report["sections"].items() if sec["status"] not in ("ok",)
           and not str(sec["status"]).startswith("unavailable")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
