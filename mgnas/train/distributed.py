"""Distributed helpers: torchrun environment -> process group (gloo on CPU, NCCL on CUDA).

Launch with ``torchrun --nproc_per_node=N ...``; torchrun sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. Without them (or with ``WORLD_SIZE=1``)
everything here is a no-op and the run is a single process. Multi-node runs are torchrun's job.
"""

from __future__ import annotations

import atexit
import gc
import os

import torch
import torch.distributed as dist

__all__ = ["init_distributed", "resolve_device", "is_distributed", "is_main", "get_rank", "get_world_size",
           "barrier", "all_equal", "cleanup"]

#: What ``--device`` accepts (``cuda:N`` for any N).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N")


def is_distributed() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single-process run): the process that writes files and prints."""
    return get_rank() == 0


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``"auto"``/None (cuda if available, else cpu), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> a torch.device.

    Under torchrun with more than one process, a CUDA device is ``cuda:LOCAL_RANK`` (each process takes its
    own GPU), so ``"cuda"``/``"auto"`` resolve to it and an explicit ``"cuda:N"`` with another N is refused;
    in a single process an explicit device wins. A resolved ``torch.device`` resolves to itself. Raises
    ValueError (one line) for an unknown name or an unavailable GPU.
    """
    text = "auto" if device is None else str(device).strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    name, sep, index = text.partition(":")
    if name not in ("cpu", "cuda") or (sep and (name == "cpu" or not index.isdigit())):
        raise ValueError(f"unknown device {str(device)!r}; valid devices: {', '.join(DEVICE_CHOICES)}")
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} needs CUDA, but torch {torch.__version__} sees no GPU; "
                         "use --device cpu (or auto)")
    count = torch.cuda.device_count()
    world, local_rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1:
        if sep and int(index) != local_rank:  # cuda:LOCAL_RANK itself is fine (e.g. a device resolved before)
            raise ValueError(f"device {str(device)!r} names one GPU, but torchrun started {world} processes, "
                             f"each on cuda:LOCAL_RANK (here cuda:{local_rank}); use --device cuda (or auto)")
        index = str(local_rank)
    elif not sep:
        index = str(local_rank)
    if int(index) >= count:
        raise ValueError(f"device cuda:{index} does not exist: {count} GPU(s) visible (cuda:0..cuda:{count - 1})")
    return torch.device("cuda", int(index))


def init_distributed(device: str | torch.device | None = None) -> tuple[int, int, torch.device]:
    """Join the process group torchrun describes (once) and return ``(rank, world_size, device)``.

    ``device`` goes through :func:`resolve_device`: by default ``cuda:LOCAL_RANK`` when CUDA is available,
    else the CPU. The backend is NCCL on CUDA and gloo on the CPU. The group is destroyed at interpreter
    exit if it was created here (call :func:`cleanup` to do it earlier).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(cleanup)
    return get_rank(), get_world_size(), device


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def all_equal(tensor: torch.Tensor) -> bool:
    """True when ``tensor`` is bit-identical on every rank (always True in a single process)."""
    if not is_distributed():
        return True
    mine = tensor.detach().contiguous()
    ref = mine.clone()
    dist.broadcast(ref, src=0)
    ok = torch.tensor([1 if torch.equal(mine, ref) else 0], device=mine.device, dtype=torch.int32)
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())


def cleanup() -> None:
    """Destroy the process group if there is one (safe to call twice)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()  # free DDP reducers first: one alive at destroy/exit can abort the process (gloo)
        dist.destroy_process_group()
