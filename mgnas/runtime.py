"""Process-wide runtime policy: how many CPU threads an mgnas process uses, and which device it trains on.

Thread policy (every mgnas command that computes calls :func:`configure_threads` first):

- ``MGNAS_THREADS=N`` in the environment wins: the process uses N threads.
- Else an ``OMP_NUM_THREADS`` already set by the user is respected.
- Else the process takes the cores it may use (``os.sched_getaffinity``: a ``taskset``/cgroup CPU set counts,
  not the machine's core count) divided among the local workers it belongs to (``mgnas study --jobs N`` gives each
  of its N workers ``cores // N``, at least 1).

The number goes to torch's intra-op pool (``torch.set_num_threads``) and, when not set already, to
``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` so that child processes inherit it. torch's own default (all cores
in every process) makes two processes on one machine thrash: measured on 2 cores, two trials side by side
ran at half the throughput of running them in turn, and at 2.4x with one thread each. To share a machine between
several mgnas processes, give each ``MGNAS_THREADS`` (or use ``mgnas study --jobs N``, which does it).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["available_cores", "configure_threads", "resolve_device", "thread_env"]

_ENV = "MGNAS_THREADS"


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity mask; the machine's count where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _env_int(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        if name == _ENV:
            raise ValueError(f"{_ENV}={text!r} is not a positive integer")
        return None  # a malformed OMP_NUM_THREADS is OpenMP's business: fall back to the default
    return value


def default_threads(workers: int = 1) -> int:
    """The threads :func:`configure_threads` picks without an explicit ``n`` (see the module docstring)."""
    explicit = _env_int(_ENV)
    if explicit is not None:
        return explicit
    omp = _env_int("OMP_NUM_THREADS")
    if omp is not None:
        return omp
    return max(1, available_cores() // max(1, int(workers)))


def configure_threads(n: int | None = None, *, workers: int = 1) -> int:
    """Set this process's CPU threads and return the number (see the module docstring for the default).

    ``n``: an explicit count (wins over the environment). ``workers``: how many local processes share the
    cores (the default count is divided among them). Raises ValueError for ``n < 1`` or a bad ``MGNAS_THREADS``.
    """
    if n is None:
        n = default_threads(workers)
    elif int(n) < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    n = int(n)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(n))
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def thread_env(n: int) -> dict[str, str]:
    """The environment variables that give a child process ``n`` threads (merge them into its environment)."""
    return {_ENV: str(n), "OMP_NUM_THREADS": str(n), "MKL_NUM_THREADS": str(n)}


def resolve_device(text: Any = None) -> Any:
    """``"auto"``/None (cuda if available, else cpu), ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> ``torch.device``.

    Raises ValueError (one line) for an unknown name or a GPU that is not there. Under torchrun a CUDA device is
    ``cuda:LOCAL_RANK`` (:func:`mgnas.train.distributed.resolve_device`, which this calls).
    """
    from mgnas.train.distributed import resolve_device as resolve

    return resolve(text)
