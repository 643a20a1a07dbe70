import json
import subprocess
import sys
from pathlib import Path

import pytest

from mgnas.cli import main


def run(*args):
    return subprocess.run([sys.executable, "-m", "mgnas", *args], capture_output=True, text=True, timeout=120)


def test_models_lists_and_filters(capsys):
    assert main(["models", "resnext*", "--json"]) == 0
    names = [r["name"] for r in json.loads(capsys.readouterr().out)]
    assert names == ["resnext101_32x4d", "resnext50_32x4d"]


def test_count_json_model_and_spec_file(tmp_path, capsys):
    assert main(["count", "resnet20_cifar", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"] == 269_722 and out["input_size"] == [3, 32, 32]
    from mgnas.models import model_spec
    from mgnas.spec import save

    path = save(model_spec("resnet20_cifar"), tmp_path / "spec.json")
    assert main(["count", str(path), "--json", "--input", "3x16x16"]) == 0
    again = json.loads(capsys.readouterr().out)
    fc = 64 * 10  # the classifier's MACs do not depend on the resolution; every conv's scale with H*W
    assert again["params"] == out["params"] and (again["macs"] - fc) * 4 == out["macs"] - fc


def test_count_table_shows_layers_and_totals():
    res = run("count", "resnet20_cifar")
    assert res.returncode == 0, res.stderr
    assert "stages.0.0.conv1 " in res.stdout and "dense" in res.stdout and "269,722" in res.stdout


def test_count_with_model_argument(capsys):
    assert main(["count", "resnext50_32x4d", "-a", "groups=16", "--json", "--input", "3x64x64"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] != 25_028_904


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["count", "nosuch"], "unknown model 'nosuch'"),
        (["count", "resnext50_32x8d"], "did you mean resnext50_32x4d"),
        (["count", "resnet20_cifar", "--input", "3x32"], "CxHxW"),
        (["count", "resnet20_cifar", "-a", "widht=2"], "unknown argument 'widht'"),
        (["count", "missing/spec.json"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_exit_2(args, message):
    res = run(*args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.stderr


def test_bad_spec_file_is_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "mgnas.arch/9", "family": "resnet", "stages": []}))
    res = run("count", str(bad))
    assert res.returncode == 2 and "format: unsupported format" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_every_command_has_help():
    for cmd in ("models", "count"):
        res = run(cmd, "--help")
        assert res.returncode == 0 and "usage: mgnas" in res.stdout


def test_count_mgic_resnet50_per_layer_table_is_quick():
    """Issue check: the per-layer table of mgic_resnet50 at 224x224 prints (in ~2-3 s here, alone). The timeout
    only guards against a hang: a shared 2-core CI machine under load must not turn it into a timing test."""
    res = subprocess.run([sys.executable, "-m", "mgnas", "count", "mgic_resnet50", "--input", "3x224x224"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "stages.0.0" in res.stdout and "parameters" in res.stdout


# --- the error funnel (issue 11) --------------------------------------------------------------------------


def _err_lines(capsys):
    out, err = capsys.readouterr()
    return out, err.splitlines()


def test_bare_command_and_help(capsys):
    assert main([]) == 2
    out, lines = _err_lines(capsys)
    assert out == "" and len(lines) == 1 and "a command is required" in lines[0]
    assert main(["--help"]) == 0 and "COMMAND" in capsys.readouterr().out
    assert main(["count", "--help"]) == 0 and "MODEL" in capsys.readouterr().out
    assert main(["search", "--epochs", "x", "--out", "o"]) == 2
    out, lines = _err_lines(capsys)
    assert lines == ["mgnas search: error: argument --epochs: invalid integer: 'x'"]
    assert main(["study", "--bogus", "--out", "o"]) == 2
    assert _err_lines(capsys)[1] == ["mgnas study: error: unrecognized arguments: --bogus"]


def test_broken_pipe_exits_quietly(capsys, monkeypatch):
    class Closed:
        def write(self, _text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["models", "--json"]) == 0
    assert capsys.readouterr().err == ""


def test_internal_error_is_one_line_traceback_on_request(capsys, monkeypatch):
    from mgnas.cli._models import ModelsCommand

    def boom(self, args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(ModelsCommand, "take_action", boom)
    monkeypatch.delenv("MGNAS_DEBUG", raising=False)
    assert main(["models"]) == 1
    out, lines = _err_lines(capsys)
    assert len(lines) == 1 and "internal error: RuntimeError: boom" in lines[0] and "traceback in " in lines[0]
    saved = Path(lines[0].rsplit("traceback in ", 1)[1].rstrip(")"))
    assert "Traceback" in saved.read_text() and "second line" in saved.read_text()  # no rerun needed for a report
    saved.unlink()
    monkeypatch.setenv("MGNAS_DEBUG", "1")
    assert main(["models"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_warnings_are_held_back_until_success(capsys, monkeypatch):
    import warnings

    from mgnas.cli._base import UsageError
    from mgnas.cli._models import ModelsCommand

    def warn_then(fail):
        def action(self, args):
            warnings.warn("a library warning", UserWarning, stacklevel=1)
            if fail:
                raise UsageError("bad input")
            return 0
        return action

    monkeypatch.setattr(ModelsCommand, "take_action", warn_then(True))
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert main(["models"]) == 2
    assert _err_lines(capsys)[1] == ["mgnas models: error: bad input"] and not shown
    monkeypatch.setattr(ModelsCommand, "take_action", warn_then(False))
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        assert main(["models"]) == 0
    assert [str(w.message) for w in shown] == ["a library warning"]


def test_logged_tracebacks_of_libraries_are_dropped(capsys):
    import logging

    from mgnas.cli import _no_logged_tracebacks

    log = logging.getLogger("optuna.test_cli")
    log.addHandler(handler := logging.StreamHandler(sys.stderr))
    # only this handler: optuna's own (bound to whatever sys.stderr was when an earlier test first logged, e.g. a
    # capsys stream closed since) would print "--- Logging error ---" for the kept record
    propagate, log.propagate = log.propagate, False
    try:
        with _no_logged_tracebacks():
            try:
                raise ValueError("inside a trial")
            except ValueError as err:
                log.warning("Trial 3 failed because of the following error", exc_info=err)
            log.warning("Trial 4 failed with value None.")
            log.warning("kept")
    finally:
        log.removeHandler(handler)
        log.propagate = propagate
    assert capsys.readouterr().err.splitlines() == ["kept"]


def test_set_choices_takes_a_dotted_label_whole(tmp_path):
    """`--set choices.<label>=[...]`, the form `mgnas spaces --help` documents, with labels holding dots."""
    from mgnas.search_spaces import get_space

    from mgnas.cli import build_parser
    from mgnas.cli._study import resolve_study_config

    dims = get_space("resnet20_groups").dimensions()
    label = next(d.label for d in dims if "." in d.label)
    other = next(d.label for d in dims if "." in d.label and d.label != label)
    subset = list(next(d for d in dims if d.label == label).choices)[:2]
    args = build_parser().parse_args([
        "study", "--space", "resnet20_groups", "--out", str(tmp_path / "q"),
        "--set", f"choices.{label}={json.dumps(subset)}", "--set", f"fixed.{other}=1"])
    config = resolve_study_config(args)
    assert config.choices == {label: subset} and config.fixed == {other: 1}
