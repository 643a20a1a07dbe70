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

__all__ = ["init_distributed", "is_distributed", "is_main", "get_rank", "get_world_size", "barrier",
           "all_equal", "cleanup"]


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


def init_distributed() -> tuple[int, int, torch.device]:
    """Join the process group torchrun describes (once) and return ``(rank, world_size, device)``.

    The device is ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU. The group is destroyed at
    interpreter exit if it was created here (call :func:`cleanup` to do it earlier).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
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
