import os

# Threads (mgnas.runtime's policy, applied to the test run): under `pytest -n N` every xdist worker gets
# cores // N threads, else the process takes up to 2. The count goes into OMP_NUM_THREADS / MKL_NUM_THREADS
# before torch is imported, so subprocesses started by tests (mgnas CLI runs, DDP ranks, study workers) inherit
# it: N workers with torch's default threads each oversubscribe the cores and ran the suite up to 10x slower,
# and an in-process reference run and a subprocess run then compute with the same thread count.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_THREADS = str(max(1, min(2, _CORES // max(1, _WORKERS))))
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, _THREADS)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
