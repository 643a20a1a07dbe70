"""Local workers: ``mgnas study --jobs N`` runs N worker processes on one storage, each with its share of the
machine, and shows one progress view.

- The parent creates the storage and the study once (two processes creating one fresh SQLite study can crash),
  then starts N children ``python -m mgnas.strategies.study._workers`` that each run :func:`~._run.run_study` until
  the study holds ``trials`` finished trials (the quota of :mod:`._run`: exactly ``trials``, no duplicates).
- CPU: every worker gets ``max(1, cores // N)`` threads (torch intra-op, ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``,
  ``MGNAS_THREADS``; :mod:`mgnas.runtime`) and at most that many data-loader workers.
  GPUs: worker i trains on ``cuda:{devices[i // per_device]}``. ``--jobs auto``: ``len(devices) * per_device``
  on GPUs, else one worker per core.
- One Ctrl-C or SIGTERM stops every worker: the parent forwards SIGTERM, a worker turns it into
  KeyboardInterrupt, its running trial is failed and queued again (re-running the command retries it).
  A worker whose parent dies (even by SIGKILL) gets SIGTERM from the kernel (``PR_SET_PDEATHSIG`` on Linux;
  a watchdog thread on the parent pid elsewhere): no orphans.
- One progress view: the parent polls the storage and shows one line for the study (finished/total, by state);
  the workers' per-trial lines are printed above it, prefixed ``[w0]``, ``[w1]``, ...
- Every trial records ``worker``, ``threads``, ``device``, ``pid``, ``host`` (user attrs).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._config import FINISHED, StudyConfig, StudyError

__all__ = ["WorkerPlan", "plan_workers", "run_workers", "parse_jobs", "parse_devices"]

#: Seconds a worker gets to fail its trial and exit after SIGTERM before it is killed.
STOP_GRACE = 20.0


@dataclass(frozen=True)
class WorkerPlan:
    """One local worker: its index, CPU threads, device and data-loader workers."""

    index: int
    threads: int
    device: str
    loader_workers: int = 0


MAX_JOBS = 256  # local worker processes per `mgnas study` (more: more machines on one storage)


def parse_jobs(text: str | int | None) -> int | str:
    """``--jobs``: a positive integer or ``"auto"``; ValueError otherwise."""
    if text is None:
        return 1
    if str(text).strip().lower() == "auto":
        return "auto"
    try:
        jobs = int(str(text).strip())
    except ValueError:
        jobs = 0
    if jobs < 1:
        raise ValueError(f"--jobs {text!r}: give a positive number of workers or 'auto'")
    if jobs > MAX_JOBS:
        raise ValueError(f"--jobs {text!r}: at most {MAX_JOBS} local workers; run more machines on one storage instead")
    return jobs


def parse_devices(text: str | None) -> list[int] | None:
    """``--devices 0,1,3`` -> [0, 1, 3]; ValueError for anything but distinct non-negative integers."""
    if text is None:
        return None
    items = [t.strip().removeprefix("cuda:") for t in str(text).split(",") if t.strip()]
    if not items or not all(t.isdigit() for t in items) or len(set(items)) != len(items):
        raise ValueError(f"--devices {text!r}: give distinct GPU indices, e.g. 0,1,2,3")
    return [int(t) for t in items]


def plan_workers(jobs: int | str, *, devices: Sequence[int] | None = None, per_device: int = 1,
                 device: str | None = None, cores: int | None = None, gpus: int | None = None,
                 loader_workers: int = 0) -> list[WorkerPlan]:
    """Who runs where: N workers, their threads (cores // N, at least 1), devices and data-loader workers.

    GPU mode when ``devices`` is given, or ``device`` is ``cuda``/``auto`` with GPUs visible and no single GPU
    named (then ``devices`` = every visible GPU). ``device`` ``cpu`` or ``cuda:N`` puts every worker there.
    ``cores``/``gpus`` default to this process's CPU affinity / ``torch.cuda.device_count()``.
    """
    from mgnas.runtime import available_cores

    if per_device < 1:
        raise ValueError(f"--per-device must be >= 1, got {per_device}")
    cores = available_cores() if cores is None else max(1, int(cores))
    text = (device or "auto").strip().lower()
    if devices is None and text in ("auto", "cuda"):
        if gpus is None:
            import torch

            gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if gpus > 0:
            devices = list(range(gpus))
        elif text == "cuda":
            raise ValueError("--device cuda: torch sees no GPU; use --device cpu (or auto)")
    if devices is not None and text not in ("auto", "cuda"):
        raise ValueError(f"--devices and --device {device} do not go together: --devices already names the GPUs")
    if jobs == "auto":
        jobs = len(devices) * per_device if devices else cores
    jobs = int(jobs)
    if devices and jobs > len(devices) * per_device:
        raise ValueError(f"--jobs {jobs} needs more than {len(devices)} GPU(s) x --per-device {per_device}; "
                         f"raise --per-device to {-(-jobs // len(devices))} or list more --devices")
    if not devices and jobs > 4 * cores:
        raise ValueError(f"--jobs {jobs} on {cores} CPU core(s) would only thrash (each worker holds a model and "
                         f"its data); use at most {4 * cores}, or --jobs auto")
    threads = max(1, cores // jobs)
    plans = []
    for i in range(jobs):
        where = f"cuda:{devices[i // per_device]}" if devices else ("cpu" if text in ("auto", "cpu") else text)
        plans.append(WorkerPlan(i, threads, where, min(int(loader_workers), threads)))
    return plans


# --------------------------------------------------------------------------- the parent
def run_workers(config: StudyConfig, out_dir: Path | str, plans: Sequence[WorkerPlan], *, progress: bool = False,
                log: Any = print, console: Any = None) -> Any:
    """Start one worker process per plan on the study's storage, show their progress, stop them all on Ctrl-C /
    SIGTERM; return the study once every worker has exited. RuntimeError when the study was left short."""
    import optuna

    from mgnas.config import dump_config
    from mgnas.runtime import resolve_device, thread_env

    from ._run import prepare_study, study_counts

    for device in sorted({p.device for p in plans}):
        resolve_device(device)  # an unknown or missing GPU: ValueError before any process starts
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, study = prepare_study(config, out_dir)  # the storage and the study exist before any worker starts
    out = Path(out_dir)
    folder = out / "workers"
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "config.yaml"
    config_path.write_text(dump_config(dataclasses.replace(config, storage=url)))
    lines: queue.Queue[tuple[int, str | None]] = queue.Queue()
    procs: list[subprocess.Popen] = []
    tails: dict[int, list[str]] = {p.index: [] for p in plans}

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = _install(signal.SIGTERM, on_sigterm)
    try:
        for plan in plans:
            env = {**os.environ, **thread_env(plan.threads), "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
            cmd = [sys.executable, "-m", "mgnas.strategies.study._workers", "--config", str(config_path),
                   "--out", str(out), "--index", str(plan.index), "--threads", str(plan.threads),
                   "--device", plan.device, "--loader-workers", str(plan.loader_workers), "--parent", str(os.getpid())]
            if progress:
                cmd.append("--progress")
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    bufsize=1, stdin=subprocess.DEVNULL)
            procs.append(proc)
            threading.Thread(target=_pump, args=(plan.index, proc, lines), daemon=True).start()
        log(f"study {config.name!r}: {len(plans)} workers on {url} "
            f"({', '.join(sorted({f'{p.threads} thread(s) on {p.device}' for p in plans}))} each)")
        _watch(study, config, procs, lines, tails, log=log, console=console, counts=study_counts)
    except KeyboardInterrupt:
        _stop(procs)
        _drain(lines, tails, log)
        raise
    finally:
        _stop(procs)
        _restore(signal.SIGTERM, previous)
    finished = sum(study_counts(study).get(s, 0) for s in FINISHED)
    if finished < config.trials:
        bad = [(p.index, proc.returncode) for p, proc in zip(plans, procs) if proc.returncode != 0]
        detail = "; ".join(f"w{i} exited with code {rc}: {(tails[i] or ['(no output)'])[-1][:200]}" for i, rc in bad)
        raise RuntimeError(f"the workers stopped with {finished} of {config.trials} trials finished"
                           + (f" ({detail})" if detail else ""))
    return study


def _install(signum: int, handler: Any) -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signum, handler)


def _restore(signum: int, previous: Any) -> None:
    if previous is not None and threading.current_thread() is threading.main_thread():
        signal.signal(signum, previous)


def _pump(index: int, proc: subprocess.Popen, lines: queue.Queue) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.put((index, line.rstrip("\n")))
    lines.put((index, None))


def _drain(lines: queue.Queue, tails: dict[int, list[str]], log: Any, emit: Any = None) -> None:
    while True:
        try:
            index, line = lines.get_nowait()
        except queue.Empty:
            return
        if line is None:
            continue
        tails[index] = (tails[index] + [line])[-20:]
        (emit or log)(line if line.startswith(f"[w{index}]") else f"[w{index}] {line}")


def _state_text(counts: dict[str, int]) -> str:
    order = ("COMPLETE", "PRUNED", "RUNNING", "WAITING", "FAIL")
    return ", ".join(f"{counts[s]} {s.lower()}" for s in order if counts.get(s))


def _watch(study: Any, config: StudyConfig, procs: list[subprocess.Popen], lines: queue.Queue,
           tails: dict[int, list[str]], *, log: Any, console: Any, counts: Any) -> None:
    """Until every worker has exited: print their lines, and one progress line for the study (polled)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = console or Console()
    live = console.is_terminal
    columns = (TextColumn("study {task.fields[name]}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[states]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, disable=not live, transient=False) as bar:
        task = bar.add_task("study", total=config.trials, name=config.name, states="")
        emit = (lambda text: bar.console.print(text, markup=False, highlight=False)) if live else log
        last_poll = 0.0
        while True:
            _drain(lines, tails, log, emit)
            done = all(p.poll() is not None for p in procs)
            if done or time.monotonic() - last_poll > 1.0:
                last_poll = time.monotonic()
                with contextlib.suppress(Exception):  # a busy storage: try again at the next poll
                    c = counts(study)
                    bar.update(task, completed=min(config.trials, sum(c.get(s, 0) for s in FINISHED)),
                               states=_state_text(c))
            if done:
                time.sleep(0.1)  # let the pumps hand over the last lines
                _drain(lines, tails, log, emit)
                return
            time.sleep(0.2)


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every live worker, wait up to :data:`STOP_GRACE` seconds, then SIGKILL what is left."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            p.wait()


# --------------------------------------------------------------------------- the worker (child process)
def _die_with_parent(parent: int) -> None:
    """SIGTERM to this process when the parent dies (PR_SET_PDEATHSIG; a watchdog thread where that is missing)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)

    def watchdog() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watchdog, daemon=True, name="mgnas-parent-watchdog").start()


def _say(text: str) -> None:
    """Print a line for the parent; quietly nothing once the parent (the pipe's reader) is gone."""
    with contextlib.suppress(OSError, ValueError):
        print(text, flush=True)


def _no_logged_tracebacks() -> None:
    """Optuna logs a failed trial with its traceback (an interrupted one too); the worker's own one-line report
    says it, so drop the traceback records from Optuna's log handlers."""
    import logging

    import optuna

    optuna.logging.get_logger("optuna")  # makes sure the library's handler exists
    for handler in logging.getLogger("optuna").handlers:
        handler.addFilter(lambda record: not record.exc_info)


def worker_main(argv: Sequence[str] | None = None) -> int:
    """One local worker: ``python -m mgnas.strategies.study._workers --config YAML --out DIR --index I ...``."""
    parser = argparse.ArgumentParser(prog="python -m mgnas.strategies.study._workers")
    parser.add_argument("--config", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--device", default=None)
    parser.add_argument("--loader-workers", type=int, default=0)
    parser.add_argument("--parent", type=int, default=None)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    prefix = f"[w{args.index}] "

    from ._trial import INTERRUPT

    def on_signal(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one interrupt: let the trial be failed and queued again
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        INTERRUPT.request()  # KeyboardInterrupt now while training, else at the next safe point

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.parent is not None:
        _die_with_parent(args.parent)
    try:
        from mgnas.config import load_config
        from mgnas.runtime import configure_threads

        from ._run import run_study

        configure_threads(args.threads)
        _no_logged_tracebacks()
        config = load_config(StudyConfig, args.config)
        config = dataclasses.replace(config, device=args.device,
                                     train=dataclasses.replace(config.train, workers=args.loader_workers))
        run_study(config, args.out, progress=args.progress, worker=args.index, prefix=prefix,
                  log=_say)
    except KeyboardInterrupt:
        _say(f"{prefix}stopped")
        return 130
    except (StudyError, ValueError) as err:
        _say(f"{prefix}error: {err}")
        return 2
    except Exception as err:  # noqa: BLE001 - reported in one line to the parent, which says which worker
        _say(f"{prefix}internal error: {type(err).__name__}: {err}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
