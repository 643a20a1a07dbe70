"""One CLI (issue 12 §3): every ``--help`` shows its defaults, one example and its jargon; the same thing has the
same flag in every command."""

from __future__ import annotations

import argparse

import pytest

import mgnas.cli as cli
from mgnas.cli._help import GLOSSARY, config_default


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _option_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    formatter = parser._get_formatter()
    formatter.add_argument(action)
    return " ".join(formatter.format_help().split())


def test_top_level_help_has_an_example_and_the_guide():
    text = cli.build_parser().format_help()
    assert "Example:" in text and "docs/guide.md" in text


@pytest.mark.parametrize("name", [c.name for c in cli.COMMANDS])
def test_every_command_help_has_an_example_and_its_defaults(name):
    parser = _subparsers()[name]
    text = parser.format_help()
    assert "Example:" in text, name
    example = text.split("Example:", 1)[1].split("\n\n", 1)[0]
    assert f"mgnas {name}" in example
    for action in parser._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction) or action.required:
            continue
        line = _option_help(parser, action)
        has_value = action.nargs != 0
        real_default = action.default not in (None, False) and action.default != argparse.SUPPRESS
        config_key = getattr(action, "mgnas_config_key", None)
        if real_default or config_key is not None or isinstance(action, argparse.BooleanOptionalAction):
            assert "default" in line, f"mgnas {name} {action.option_strings[0]}: {line}"
        if config_key is not None and "default" not in (action.help or ""):  # shown: the config's default
            shown = config_default(*config_key)
            value = str(shown).lower() if isinstance(shown, bool) else ("none" if shown is None else str(shown))
            assert f"default: {value}" in line, line
        if has_value:
            assert action.help, f"mgnas {name} {action.option_strings[0]} has no help"


def test_study_help_shows_the_study_training_defaults():
    from mgnas.strategies.study import TRAIN_DEFAULTS

    parser = _subparsers()["study"]
    for flag, key in (("--epochs-per-trial", "epochs"), ("--lr", "lr"), ("--batch-size", "batch_size")):
        action = next(a for a in parser._actions if flag in a.option_strings)
        assert f"default: {TRAIN_DEFAULTS[key]}," in _option_help(parser, action), flag


def test_jargon_is_explained_where_it_is_used():
    helps = {name: p.format_help() for name, p in _subparsers().items()}
    for term in ("ζ/o", "b=B", "digits:16"):
        assert f"{term}: {GLOSSARY[term].split()[0]}" in helps["search"], term
    assert "levels=None:" in helps["models"] and "levels=None:" in helps["study"]


def test_help_lines_fit_100_columns():
    for name, parser in _subparsers().items():
        for line in parser.format_help().splitlines():
            if line.startswith("usage:") or line.startswith(" " * 10):  # argparse wraps usage itself
                continue
            assert len(line) <= 100, f"mgnas {name}: {line!r}"


def test_same_flag_for_the_same_thing():
    parsers = _subparsers()
    for name in ("search", "train", "study", "demo", "nni-nas"):
        flags = {s for a in parsers[name]._actions for s in a.option_strings}
        assert {"--progress", "--no-progress"} <= flags, name
    for name in ("count", "export", "train"):
        flags = {s for a in parsers[name]._actions for s in a.option_strings}
        assert {"-a", "--arg"} <= flags, name
    pareto = parsers["pareto"]
    assert not next(a for a in pareto._actions if "--study-name" in a.option_strings).required


def test_train_accepts_search_spelling_of_training_keys():
    from mgnas.cli._train import _resolve_config

    args = _subparsers()["train"].parse_args(["--data", "digits", "--out", "x", "--set", "train.label_smoothing=0.1",
                                              "--set", "momentum=0.8"])
    config = _resolve_config(args)
    assert config.label_smoothing == 0.1 and config.momentum == 0.8


def test_pareto_finds_the_only_study(tmp_path, capsys):
    optuna = pytest.importorskip("optuna")
    storage = f"sqlite:///{tmp_path / 'one.db'}"
    study = optuna.create_study(study_name="only", storage=storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert cli.main(["pareto", "--storage", storage, "--out", str(tmp_path / "out")]) == 0
    assert "Pareto front (1 of 1 completed trials)" in capsys.readouterr().out
    optuna.create_study(study_name="second", storage=storage)
    capsys.readouterr()
    assert cli.main(["pareto", "--storage", storage, "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err.strip()
    assert "2 studies (only, second); pass --study-name NAME" in err and len(err.splitlines()) == 1


def test_export_model_arguments(tmp_path, capsys):
    out = tmp_path / "m.ts"
    code = cli.main(["export", "resnet20_cifar", "-a", "num_classes=7", "--random-init", "--format", "torchscript",
                     "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    import torch

    assert torch.jit.load(str(out))(torch.zeros(1, 3, 32, 32)).shape == (1, 7)  # -a num_classes=7 took effect
    spec = tmp_path / "s.json"
    from mgnas.models import model_spec
    from mgnas.spec import save

    save(model_spec("resnet20_cifar"), spec)
    assert cli.main(["export", str(spec), "-a", "num_classes=7", "--random-init", "--format", "torchscript",
                     "--out", str(tmp_path / "n.ts")]) == 2
    assert "--arg applies to a registered model name" in capsys.readouterr().err


def test_epoch_line_fits_100_columns_without_duplicates():
    from mgnas.train.progress import format_epoch

    row = {"epoch": 3, "lr": 0.05413, "train_loss": 1.7391, "train_accuracy": 0.4, "images_per_s": 1667.2,
           "ce": 1.737, "lambda": 0.803, "zeta_over_o": 0.6973, "val_loss": 3.251, "val_accuracy": 0.32,
           "zeta": 5344.0, "o": 7424.0, "zeta_over_o_hard": 0.7198, "lambda_end": 0.6276, "seconds": 0.8}
    line = format_epoch(row, 90, eta_seconds=4 * 3600 + 5)
    assert line == "epoch  3/90  loss 1.739  acc 40.0%  val 32.0%  ζ/o 0.720  lr 0.054  1,667 img/s  ETA 4:00:05"
    worst = dict(row, epoch=100000, train_loss=12345.678, images_per_s=123456789.0, lr=1.2345e-05)
    line = format_epoch(worst, 100000, eta_seconds=1e7)
    assert len(line) <= 100 and "loss" in line and "ζ/o" in line and "val" in line, line
    words = line.split()
    for field in ("loss", "acc", "val", "ζ/o", "img/s", "ETA"):
        assert words.count(field) <= 1, line


def test_epoch_lines_go_to_stderr_and_results_to_stdout(tmp_path, capsys):
    assert cli.main(["train", "--model", "resnet20_cifar", "--data", "digits", "--epochs", "2", "--batch-size",
                     "256", "--out", str(tmp_path / "t")]) == 0
    captured = capsys.readouterr()
    assert "accuracy" in captured.out and "epoch 1/2" not in captured.out
    lines = [line for line in captured.err.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and all(len(line) <= 100 for line in lines), captured.err
    assert "ETA 0:00:00" in lines[-1]
    for line in captured.out.splitlines():  # results: whole lines, never broken mid-word at 80 columns
        assert not line.endswith(" "), line
    assert str(tmp_path / "t") in captured.out
