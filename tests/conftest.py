import os

# Threads (mgnas.runtime's policy, applied to the test run): under `pytest -n N` every xdist worker gets
# cores // N threads, else the process takes up to 2. The count goes into OMP_NUM_THREADS / MKL_NUM_THREADS
# before torch is imported, so subprocesses started by tests (mgnas CLI runs, DDP ranks, study workers) inherit
# it: N workers with torch's default threads each oversubscribe the cores and ran the suite up to 10x slower,
# and an in-process reference run and a subprocess run then compute with the same thread count.
# Only a count the USER set is kept: the xdist controller imports this file too (as a single process, so it
# picks 2 threads) and its workers inherit its environment; they must not take the controller's choice for the
# user's (measured on 2 cores under `-n 2`: 2 OpenMP threads per worker ran the in-process tests 8-15x slower
# than 1, e.g. `mgnas demo` 768 s instead of 45 s, once anything else ran beside them).
_USER_KEY = "_MGNAS_TESTS_USER_THREADS"  # what the user had set, recorded by the first process of the run
if _USER_KEY not in os.environ:
    os.environ[_USER_KEY] = ",".join(os.environ.get(n, "") for n in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"))
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
_CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
_THREADS = str(max(1, min(2, _CORES // max(1, _WORKERS))))
for _name, _user in zip(("OMP_NUM_THREADS", "MKL_NUM_THREADS"), os.environ[_USER_KEY].split(",")):
    os.environ[_name] = _user or _THREADS

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# xdist: a module-scoped fixture runs once per worker that runs a test using it. Under plain `-n N` (--dist load)
# the tests of one module are spread over the workers, so e.g. the 3-trial NNI experiment of test_nni_hpo.py ran
# on both workers (60 s each). The modules below, whose tests share an expensive module fixture, are kept on one
# worker; every other test is still scheduled one by one, as --dist load does. (xdist's own loadgroup mode cannot
# do it here: it renames node ids through Node._nodeid, which pytest 9 no longer reads.)
SHARED_FIXTURE_MODULES = ("test_cli_train_export.py", "test_demo.py", "test_kill_sweep.py", "test_nni_hpo.py",
                          "test_retrain.py", "test_vocabulary.py")


#: Single tests kept together, (module file, test) -> the fixture they share: a session fixture used from two
#: modules, or the users of a module fixture in a module whose other tests are better spread out.
SHARED_FIXTURE_TESTS = {
    ("test_cli_search.py", "test_hinge_b4_reaches_accuracy_and_budget"): "digits_b4_search",
    ("test_search_sparse.py", "test_sparse_search_meets_the_budget_and_the_accuracy_bar"): "digits_b4_search",
    **{("test_study.py", name): "small_study" for name in (
        "test_fast_mgic_study_on_digits", "test_pareto_export_is_non_dominated_and_rebuilds",
        "test_bad_input_one_line_exit_2", "test_pareto_bad_input",
        "test_dashboard_shows_metric_names_and_the_spec_artifact",
        "test_storages_open_in_optuna_dashboard_and_the_optuna_cli")},
}


def _scope(nodeid: str) -> str:
    path, _, name = nodeid.partition("::")
    module = path.rsplit("/", 1)[-1]
    if module in SHARED_FIXTURE_MODULES:
        return path
    return SHARED_FIXTURE_TESTS.get((module, name.split("[", 1)[0]), nodeid)


@pytest.fixture(scope="session")
def digits_b4_search(tmp_path_factory):
    """``mgnas search`` of ResNet-20's groups on digits under b=4 (hinge penalty, 6 epochs, the sparse DGConv on
    the CPU), run once for the two tests that check it: test_cli_search.py (the run reaches the accuracy and the
    budget, writes its files) and test_search_sparse.py (the sparse implementation meets the masked run's bar)."""
    import mgnas.cli as cli

    out = tmp_path_factory.mktemp("digits_b4") / "run"
    torch.manual_seed(0)
    rc = cli.main(["search", "--space", "resnet20_groups", "--data", "digits", "--no-progress", "--budget", "b=4",
                   "--penalty", "hinge", "--epochs", "6", "--dgconv-impl", "sparse", "--device", "cpu",
                   "--out", str(out)])
    assert rc == 0
    return out


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "load":  # an explicit --dist mode is the user's choice
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _scope(nodeid)

    return SharedFixtureScheduling(config, log)


def pytest_collection_modifyitems(config, items):
    """Keep :data:`SHARED_FIXTURE_TESTS` true: a test that uses one of its fixtures but is not listed (say, after a
    rename) would silently run that fixture once more on another worker, and a listed test must use its fixture."""
    shared = set(SHARED_FIXTURE_TESTS.values())
    wrong = []
    for item in items:
        module, name = item.path.name, getattr(item, "originalname", item.name)
        if module in SHARED_FIXTURE_MODULES:
            continue
        listed = SHARED_FIXTURE_TESTS.get((module, name))
        used = shared.intersection(getattr(item, "fixturenames", ()))
        if (listed is None and used) or (listed is not None and listed not in used):
            wrong.append(f"{module}::{name} (uses {sorted(used) or 'none'}, listed for {listed})")
    if wrong:
        raise pytest.UsageError("tests/conftest.py SHARED_FIXTURE_TESTS is out of date: " + "; ".join(wrong))
