"""The hostile suite (issue 11): bad inputs and misuses through every command, in process.

Each case runs ``mgnas.cli.main(argv)`` and asserts the contract of DESIGN.md: exit code 2 (1 only for a
fault of the environment), exactly ONE line on stderr starting ``mgnas``, no traceback, nothing on stdout,
and every file already in the work directory unchanged, byte for byte. Every case is refused before any
training starts, so the whole suite runs in well under a minute.

``{d}`` in an argument is the work directory (prepared once: hostile files, a finished search directory,
an empty study, checkpoints ...).
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import warnings
from pathlib import Path

import pytest

from mgnas.cli import main

ONE_CH = "one_channel.json"  # a 1-channel 8x8 spec


def _laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    import optuna
    import torch

    from mgnas.models import adapt_spec, model_spec
    from mgnas.spec import save

    root = tmp_path_factory.mktemp("hostile")
    spec = model_spec("resnet20_cifar")
    save(spec, root / "spec.json")
    save(adapt_spec(spec, in_channels=1, num_classes=10, input_size=(1, 8, 8)), root / ONE_CH)
    data = json.loads((root / "spec.json").read_text())
    first = next(iter(spec.convs()))[0]

    def variant(name, path, value):
        d2 = json.loads(json.dumps(data))
        node = d2
        keys = path.replace("[", ".").replace("]", "").split(".")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        node[keys[-1]] = value
        (root / name).write_text(json.dumps(d2))

    variant("huge_kernel.json", f"{first}.kernel_size", 1_000_000)
    variant("huge_classes.json", "num_classes", 10**10)
    variant("huge_input.json", "input_size", [3, 60000, 60000])
    variant("bad_groups.json", f"{first}.groups", 5)
    variant("str_classes.json", "num_classes", "ten")
    (root / "nan_classes.json").write_text((root / "spec.json").read_text().replace(
        '"num_classes": 10', '"num_classes": NaN', 1))
    (root / "bigint.json").write_text('{"format": "mgnas.arch/1", "num_classes": ' + "9" * 5000 + "}")
    (root / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (root / "deep900.json").write_text('{"a":' * 900 + "1" + "}" * 900)
    (root / "not_utf8.json").write_bytes(b'{"format": "mgnas.arch/1", "name": "\xff\xfe"}')
    (root / "not_json.json").write_text("{this is not json")
    (root / "array.json").write_text("[1, 2, 3]")
    (root / "empty.json").write_text("")
    (root / "spec_dir.json").mkdir()
    os.mkfifo(root / "fifo.json")
    os.mkfifo(root / "fifo.yaml")
    (root / "conf_dir.yaml").mkdir()
    (root / "laughs.yaml").write_text(_laughs())
    (root / "deep.yaml").write_text("a: " + "[" * 2000 + "]" * 2000 + "\n")
    (root / "nan.yaml").write_text("train:\n  lr: .nan\n")
    (root / "inf_lambda.yaml").write_text("lambda_lr: .inf\n")
    (root / "epochs.yaml").write_text("train:\n  epochs: 100000000000000000000\n")
    (root / "list.yaml").write_text("- 1\n- 2\n")
    (root / "overflow.yaml").write_text("train:\n  lr: 1e999\n")
    (root / "bool_epochs.yaml").write_text("train:\n  epochs: yes\n")
    (root / "unknown_key.yaml").write_text("nope: 1\n")
    (root / "bad.yaml").write_text("a: [1, 2\n")
    (root / "not_utf8.yaml").write_bytes(b"space: \xff\xfe\n")
    (root / "python.yaml").write_text("space: !!python/object/apply:os.system ['echo pwned']\n")
    (root / "a_file").write_text("not a directory\n")
    # checkpoints: garbage, a raw (non-weights-only) pickle, a mismatched state dict, a pickle payload
    (root / "garbage.pt").write_bytes(b"\x00garbage" * 10)
    torch.save({"model": object.__new__(_Opaque)}, root / "raw.pt")
    torch.save({"nope.weight": torch.zeros(3)}, root / "mismatch.pt")
    (root / "payload.pt").write_bytes(pickle.dumps(_Payload()))
    (root / "ckpt_dir.pt").mkdir()
    # a directory that holds a finished search (by its files) and one that holds another study
    run = root / "search_run"
    run.mkdir()
    for name in ("config.yaml", "result.json", "spec.json", "history.jsonl"):
        (run / name).write_text("{}\n" if name != "spec.json" else (root / "spec.json").read_text())
    (root / "empty_run").mkdir()
    (root / "empty_run" / "notes.txt").write_text("keep me\n")
    # an empty study (0 trials) and a study whose only trial failed
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    url = f"sqlite:///{root / 'study.db'}"
    optuna.create_study(study_name="empty", storage=url, directions=["maximize", "minimize"])
    failed = optuna.create_study(study_name="failed", storage=url, directions=["maximize", "minimize"])
    failed.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL))
    done = optuna.create_study(study_name="done", storage=url, directions=["maximize", "minimize"])
    done.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, values=[0.5, 1000.0]))
    other = root / "other_study"  # the exported front of another study
    other.mkdir()
    (other / "study.json").write_text(json.dumps({"storage": url, "study_name": "failed"}))
    (other / "trials.csv").write_text("number,state\n0,FAIL\n")
    (other / "pareto.html").write_text("<html></html>\n")
    (root / "existing.onnx").write_bytes(b"an earlier export\n")
    (root / "journal.log").write_text("")
    return root


class _Opaque:
    pass


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/mgnas-hostile-pwned",))


def _snapshot(root: Path) -> dict[str, bytes | str]:
    snap: dict[str, bytes | str] = {}
    for p in sorted(root.rglob("*")):
        mode = p.lstat().st_mode
        rel = str(p.relative_to(root))
        if stat.S_ISREG(mode):
            snap[rel] = p.read_bytes()
        else:
            snap[rel] = "dir" if stat.S_ISDIR(mode) else "other"
    return snap


# (id, argv, expected exit code, a piece of the one-line message)
CASES: list[tuple[str, list[str], int, str]] = []


def case(cid: str, argv: str | list[str], message: str = "", code: int = 2) -> None:
    CASES.append((cid, argv.split() if isinstance(argv, str) else argv, code, message))


# --- the bare command and argparse --------------------------------------------------------------------------
case("bare", [], "a command is required")
case("unknown-command", "nope", "invalid choice")
case("unknown-flag", "--bogus", "unrecognized arguments")
case("count-missing-target", "count", "required")
case("count-unknown-flag", "count resnet20_cifar --bogus", "unrecognized arguments")
case("models-unknown-flag", "models --bogus", "unrecognized arguments")
case("models-two-patterns", "models a b", "unrecognized arguments")
case("spaces-unknown-flag", "spaces --bogus", "unrecognized arguments")
case("search-no-out", "search --space resnet20_groups", "--out")
case("train-no-data", "train --model resnet20_cifar --out {d}/t", "--data")
case("export-no-format", "export {d}/spec.json --out {d}/m.onnx", "--format")
case("pareto-no-storage", "pareto --study-name x --out {d}/p", "--storage")

# --- models / spaces ----------------------------------------------------------------------------------------
case("models-no-match", "models zzz_no_such_model", "no model")
case("models-no-match-glob", "models zzz*", "no model")
case("spaces-no-match", "spaces zzz_no_such_space", "no search space")
case("spaces-no-match-glob", "spaces zzz*", "no search space")

# --- count: model names and arguments -----------------------------------------------------------------------
case("count-unknown-model", "count nosuch", "unknown model")
case("count-width-nan", "count mgic_resnet56 -a width=NaN", "width")
case("count-width-inf", "count mgic_resnet56 -a width=Infinity", "width")
case("count-width-neg-inf", "count mgic_resnet56 -a width=-Infinity", "width")
case("count-width-1e6", "count mgic_resnet56 -a width=1e6", "width")
case("count-width-1000", "count mgic_resnet56 -a width=1000", "width")
case("count-width-string", "count mgic_resnet56 -a width=wide", "width")
case("count-width-list", "count mgic_resnet56 -a width=[1,2]", "width")
case("count-width-bool", "count mgic_resnet56 -a width=true", "width")
case("count-classes-1e10", "count resnet20_cifar -a num_classes=1e10", "num_classes")
case("count-classes-10e9", "count resnet20_cifar -a num_classes=10000000000", "num_classes")
case("count-classes-float", "count resnet20_cifar -a num_classes=2.5", "num_classes")
case("count-classes-zero", "count resnet20_cifar -a num_classes=0", "num_classes")
case("count-classes-negative", "count resnet20_cifar -a num_classes=-5", "num_classes")
case("count-classes-bigint", ["count", "resnet20_cifar", "-a", "num_classes=" + "9" * 5000], "num_classes")
case("count-group-size-nan", "count mgic_resnet56 -a group_size=NaN", "group_size")
case("count-group-size-zero", "count mgic_resnet56 -a group_size=0", "group_size")
case("count-coarse-size-huge", "count mgic_resnet56 -a coarse_size=1000000000", "coarse_size")
case("count-levels-string", "count mgic_resnet56 -a levels=deep", "levels")
case("count-level-rule-bad", "count mgic_resnet56 -a level_rule=nope", "level_rule")
case("count-groups-zero", "count resnext50_32x4d -a groups=0", "groups")
case("count-unknown-kwarg", "count resnet20_cifar -a widht=2", "unknown argument")
case("count-arg-no-equals", "count resnet20_cifar -a width", "--arg")
case("count-arg-empty-key", "count resnet20_cifar -a =3", "--arg")
case("count-arg-deep-value", ["count", "resnet20_cifar", "-a", "num_classes=" + "[" * 5000 + "]" * 5000],
     "num_classes")
case("count-arg-on-spec", "count {d}/spec.json -a width=2", "--arg")
case("count-arg-on-space", "count resnet20_groups -a nope=3", "--arg")
case("count-supernet-of-model", "count resnet20_cifar --supernet", "--supernet")
case("count-space-input-wrong-channels", "count resnet20_groups --supernet --input 1x32x32", "channel")

# --- count: input sizes -------------------------------------------------------------------------------------
case("count-input-huge", "count resnet20_cifar --input 3x60000x60000", "too large")
case("count-input-huge-channels", "count resnet20_cifar --input 100000x32x32", "too large")
case("count-input-wrong-channels", "count resnet20_cifar --input 1x32x32", "channel")
case("count-input-wrong-channels-spec", "count {d}/" + ONE_CH + " --input 3x32x32", "channel")
case("count-input-two-dims", "count resnet20_cifar --input 3x32", "CxHxW")
case("count-input-four-dims", "count resnet20_cifar --input 3x32x32x32", "CxHxW")
case("count-input-zero", "count resnet20_cifar --input 3x0x32", "CxHxW")
case("count-input-negative", "count resnet20_cifar --input 3x-32x32", "CxHxW")
case("count-input-letters", "count resnet20_cifar --input axbxc", "CxHxW")
case("count-input-float", "count resnet20_cifar --input 3x32.5x32", "CxHxW")
case("count-input-bigint", ["count", "resnet20_cifar", "--input", "3x" + "9" * 400 + "x32"], "CxHxW")

# --- count: spec files ----------------------------------------------------------------------------------------
case("count-spec-missing", "count {d}/missing.json", "does not exist")
case("count-spec-dir", "count {d}/spec_dir.json", "is a directory")
case("count-spec-fifo", "count {d}/fifo.json", "not a regular file")
case("count-spec-deep-100k", "count {d}/deep.json", "nested")
case("count-spec-deep-900", "count {d}/deep900.json", "nested")
case("count-spec-not-utf8", "count {d}/not_utf8.json", "UTF-8")
case("count-spec-not-json", "count {d}/not_json.json", "not valid JSON")
case("count-spec-array", "count {d}/array.json", "")
case("count-spec-empty", "count {d}/empty.json", "not valid JSON")
case("count-spec-bigint", "count {d}/bigint.json", "")
case("count-spec-nan", "count {d}/nan_classes.json", "num_classes")
case("count-spec-str-classes", "count {d}/str_classes.json", "num_classes")
case("count-spec-huge-kernel", "count {d}/huge_kernel.json", "parameters")
case("count-spec-huge-classes", "count {d}/huge_classes.json", "parameters")
case("count-spec-huge-input", "count {d}/huge_input.json", "too large")
case("count-spec-bad-groups", "count {d}/bad_groups.json", "groups")

LONG = "x" * 5000
case("count-spec-name-too-long", "count {d}/" + LONG + ".json", "")
case("export-out-name-too-long", "export {d}/spec.json --format onnx --random-init --out {d}/" + LONG + ".onnx", "")
case("search-out-name-too-long", "search --space resnet20_groups --data digits --epochs 1 --out {d}/" + LONG, "")
case("train-out-name-too-long", "train --model resnet20_cifar --data digits --epochs 1 --out {d}/" + LONG, "")
case("study-out-name-too-long", "study --space mgic_resnet56 --data digits --trials 1 --out {d}/" + LONG, "")

# --- search ---------------------------------------------------------------------------------------------------
S = "search --space resnet20_groups --data digits --out {d}/s_new "
case("search-epochs-text", S + "--epochs x", "--epochs")
case("search-epochs-1e20", S + "--epochs 1e20", "--epochs")
case("search-epochs-zero", S + "--epochs 0", "--epochs")
case("search-epochs-negative", S + "--epochs -3", "--epochs")
case("search-epochs-absurd", S + "--epochs 100000000000000000000", "--epochs")
case("search-epochs-float", S + "--epochs 2.5", "--epochs")
case("search-lr-nan", S + "--lr nan", "--lr")
case("search-lr-inf", S + "--lr inf", "--lr")
case("search-lr-neg-inf", S + "--lr -inf", "--lr")
case("search-lr-negative", S + "--lr -0.1", "--lr")
case("search-lr-text", S + "--lr fast", "--lr")
case("search-lr-huge", S + "--lr 1e300", "--lr")
case("search-wd-nan", S + "--weight-decay nan", "--weight-decay")
case("search-wd-inf", S + "--weight-decay inf", "--weight-decay")
case("search-wd-negative", S + "--weight-decay -1", "--weight-decay")
case("search-gate-lr-nan", S + "--gate-lr nan", "--gate-lr")
case("search-gate-lr-inf", S + "--gate-lr inf", "--gate-lr")
case("search-gate-lr-zero", S + "--gate-lr 0", "gate_lr")
case("search-lambda-lr-nan", S + "--lambda-lr nan", "--lambda-lr")
case("search-lambda-lr-inf", S + "--lambda-lr inf", "--lambda-lr")
case("search-lambda-lr-negative", S + "--lambda-lr -1", "--lambda-lr")
case("search-batch-zero", S + "--batch-size 0", "--batch-size")
case("search-batch-huge", S + "--batch-size 100000000000", "--batch-size")
case("search-seed-negative", S + "--seed -1", "--seed")
case("search-seed-huge", S + "--seed 100000000000000000000", "--seed")
case("search-workers-negative", S + "--workers -1", "--workers")
case("search-image-size-huge", S + "--image-size 100000", "--image-size")
case("search-warmup-too-long", S + "--epochs 2 --gate-warmup-epochs 5", "gate_warmup_epochs")
case("search-optimizer-bad", S + "--optimizer adam", "--optimizer")
case("search-amp-bad", S + "--amp fp8", "--amp")
case("search-penalty-bad", S + "--penalty soft", "--penalty")
case("search-budget-bad", S + "--budget lots", "budget")
case("search-budget-zero", S + "--budget b=0", "budget")
case("search-space-unknown", "search --space nope --data digits --epochs 1 --out {d}/s_new", "nope")
case("search-set-no-equals", S + "--set train.lr", "--set")
case("search-set-nan", S + "--set train.lr=nan", "train.lr")
case("search-set-inf", S + "--set train.weight_decay=Infinity", "train.weight_decay")
case("search-set-epochs-absurd", S + "--set train.epochs=100000000000", "train.epochs")
case("search-set-unknown", S + "--set nope=1", "nope")
case("search-set-unknown-nested", S + "--set train.nope=1", "nope")
case("search-set-not-section", S + "--set space.x=1", "space")
case("search-set-label-smoothing", S + "--set train.label_smoothing=2", "label_smoothing")
case("search-set-momentum", S + "--set train.momentum=5", "momentum")
case("search-set-wrong-type", S + "--set train.epochs=many", "train.epochs")
case("search-config-missing", S + "--config {d}/missing.yaml", "does not exist")
case("search-config-dir", S + "--config {d}/conf_dir.yaml", "is a directory")
case("search-config-fifo", S + "--config {d}/fifo.yaml", "not a regular file")
case("search-config-laughs", S + "--config {d}/laughs.yaml", "expands")
case("search-config-deep", S + "--config {d}/deep.yaml", "nested")
case("search-config-nan", "search --data digits --out {d}/s_new --config {d}/nan.yaml", "train.lr")
case("search-config-inf-lambda", "search --data digits --out {d}/s_new --config {d}/inf_lambda.yaml", "lambda_lr")
case("search-config-epochs", "search --data digits --out {d}/s_new --config {d}/epochs.yaml", "train.epochs")
case("search-config-overflow", "search --data digits --out {d}/s_new --config {d}/overflow.yaml", "train.lr")
case("search-config-bool-epochs", "search --data digits --out {d}/s_new --config {d}/bool_epochs.yaml",
     "train.epochs")
case("search-set-huge-value", ["search", "--out", "{d}/s_new", "--set", "train.lr=" + "1" * 200_000], "too long")
case("search-set-deep-value", ["search", "--out", "{d}/s_new", "--set",
                               "train.step_milestones=" + "[" * 1000 + "]" * 1000], "nested")
case("search-config-list", S + "--config {d}/list.yaml", "mapping")
case("search-config-unknown-key", S + "--config {d}/unknown_key.yaml", "nope")
case("search-config-invalid", S + "--config {d}/bad.yaml", "YAML")
case("search-config-not-utf8", S + "--config {d}/not_utf8.yaml", "UTF-8")
case("search-config-python-tag", S + "--config {d}/python.yaml", "YAML")
case("search-out-is-file", "search --space resnet20_groups --data digits --epochs 1 --out {d}/a_file", "a_file")
case("search-out-holds-run", "search --space resnet20_groups --data digits --epochs 1 --out {d}/search_run",
     "search_run")
case("search-resume-out-is-file", "search --space resnet20_groups --data digits --epochs 1 --out {d}/a_file "
     "--resume", "a_file")

# --- train ----------------------------------------------------------------------------------------------------
T = "train --model resnet20_cifar --data digits --out {d}/t_new "
case("train-neither-spec-nor-model", "train --data digits --epochs 1 --out {d}/t_new", "exactly one")
case("train-spec-and-model", "train --spec {d}/spec.json --model resnet20_cifar --data digits --out {d}/t_new",
     "exactly one")
case("train-model-unknown", "train --model nosuch --data digits --epochs 1 --out {d}/t_new", "unknown model")
case("train-model-width-nan", "train --model mgic_resnet56 -a width=NaN --data digits --epochs 1 --out {d}/t_new",
     "width")
case("train-arg-on-spec", "train --spec {d}/spec.json -a width=2 --data digits --epochs 1 --out {d}/t_new", "--arg")
case("train-arg-no-equals", T + "--epochs 1 -a width", "--arg")
case("train-spec-missing", "train --spec {d}/missing.json --data digits --epochs 1 --out {d}/t_new",
     "does not exist")
case("train-spec-dir", "train --spec {d}/spec_dir.json --data digits --epochs 1 --out {d}/t_new", "is a directory")
case("train-spec-fifo", "train --spec {d}/fifo.json --data digits --epochs 1 --out {d}/t_new", "not a regular file")
case("train-spec-deep", "train --spec {d}/deep.json --data digits --epochs 1 --out {d}/t_new", "nested")
case("train-spec-not-utf8", "train --spec {d}/not_utf8.json --data digits --epochs 1 --out {d}/t_new", "UTF-8")
case("train-spec-huge-kernel", "train --spec {d}/huge_kernel.json --data digits --epochs 1 --out {d}/t_new",
     "parameters")
case("train-epochs-1e20", T + "--epochs 1e20", "--epochs")
case("train-epochs-zero", T + "--epochs 0", "--epochs")
case("train-lr-nan", T + "--epochs 1 --lr nan", "--lr")
case("train-lr-inf", T + "--epochs 1 --lr inf", "--lr")
case("train-wd-nan", T + "--epochs 1 --weight-decay nan", "--weight-decay")
case("train-batch-zero", T + "--epochs 1 --batch-size 0", "--batch-size")
case("train-seed-negative", T + "--epochs 1 --seed -5", "--seed")
case("train-set-no-equals", T + "--epochs 1 --set lr", "--set")
case("train-set-nan", T + "--epochs 1 --set lr=NaN", "lr")
case("train-set-label-smoothing", T + "--epochs 1 --set label_smoothing=1.5", "label_smoothing")
case("train-set-grad-clip-inf", T + "--epochs 1 --set grad_clip=Infinity", "grad_clip")
case("train-set-milestones-unsorted", T + "--epochs 3 --set schedule=step --set step_milestones=[2,1]",
     "step_milestones")
case("train-set-unknown", T + "--epochs 1 --set nope=1", "nope")
case("train-config-laughs", T + "--config {d}/laughs.yaml", "expands")
case("train-config-dir", T + "--config {d}/conf_dir.yaml", "is a directory")
case("train-config-fifo", T + "--config {d}/fifo.yaml", "not a regular file")
case("train-init-from-missing", T + "--epochs 1 --init-from {d}/missing.pt", "does not exist")
case("train-init-from-dir", T + "--epochs 1 --init-from {d}/ckpt_dir.pt", "is a directory")
case("train-resume-and-init-from", "train --model resnet20_cifar --data digits --out {d}/empty_run --epochs 1 "
     "--resume --init-from {d}/mismatch.pt", "")
case("train-out-holds-run", "train --model resnet20_cifar --data digits --epochs 1 --out {d}/search_run",
     "search_run")
case("train-out-is-file", "train --model resnet20_cifar --data digits --epochs 1 --out {d}/a_file", "a_file")
case("train-data-unknown", T + "--epochs 1 --data nope", "nope")
for _i, _data in enumerate(("synthetic:100000x100000", "synthetic:32x32:10000000000", "synthetic:32x32:1",
                            "synthetic:axb", "digits:100000", "digits:0", "imagenet:{d}/missing",
                            "imagenet:{d}/a_file", "cifar10:{d}/empty_run", "cifar100:{d}/missing", "mnist")):
    case(f"train-data-{_i}", T + f"--epochs 1 --data {_data}", "")
    case(f"search-data-{_i}", f"search --space resnet20_groups --epochs 1 --out {{d}}/s_new --data {_data}", "")

# --- export ---------------------------------------------------------------------------------------------------
E = "export {d}/spec.json --out {d}/m.onnx --format onnx "
case("export-no-checkpoint", E, "--checkpoint")
case("export-random-init-and-checkpoint", E + "--random-init --checkpoint {d}/mismatch.pt", "--random-init")
case("export-opset-1", E + "--random-init --opset 1", "--opset")
case("export-opset-17", E + "--random-init --opset 17", "--opset")
case("export-opset-99", E + "--random-init --opset 99", "--opset")
case("export-opset-negative", E + "--random-init --opset -3", "--opset")
case("export-opset-text", E + "--random-init --opset new", "--opset")
case("export-opset-not-onnx", "export {d}/spec.json --out {d}/m.pt2 --format pt2 --random-init --opset 18",
     "--opset")
case("export-format-bad", "export {d}/spec.json --out {d}/m.tfl --format tflite --random-init", "tflite")
case("export-input-wrong-channels", "export {d}/" + ONE_CH + " --out {d}/m.onnx --format onnx --random-init "
     "--input 3x32x32", "channel")
case("export-input-bad", E + "--random-init --input 3x32", "CxHxW")
case("export-input-huge", E + "--random-init --input 3x60000x60000", "too large")
case("export-out-dir", "export {d}/spec.json --out {d}/empty_run --format onnx --random-init", "directory")
case("export-out-parent-missing", "export {d}/spec.json --out {d}/nope/m.onnx --format onnx --random-init",
     "does not exist")
case("export-spec-missing", "export {d}/missing.json --out {d}/m.onnx --format onnx --random-init",
     "does not exist")
case("export-spec-dir", "export {d}/spec_dir.json --out {d}/m.onnx --format onnx --random-init", "is a directory")
case("export-spec-fifo", "export {d}/fifo.json --out {d}/m.onnx --format onnx --random-init", "not a regular file")
case("export-spec-deep", "export {d}/deep900.json --out {d}/m.onnx --format onnx --random-init", "nested")
case("export-spec-not-utf8", "export {d}/not_utf8.json --out {d}/m.onnx --format onnx --random-init", "UTF-8")
case("export-spec-huge-classes", "export {d}/huge_classes.json --out {d}/m.onnx --format onnx --random-init",
     "parameters")
case("export-model-unknown", "export nosuch --out {d}/m.onnx --format onnx --random-init", "unknown model")
case("export-ckpt-missing", E + "--checkpoint {d}/missing.pt", "does not exist")
case("export-ckpt-dir", E + "--checkpoint {d}/ckpt_dir.pt", "is a directory")
case("export-ckpt-garbage", E + "--checkpoint {d}/garbage.pt", "garbage.pt")
case("export-ckpt-raw-pickle", E + "--checkpoint {d}/raw.pt", "raw.pt")
case("export-ckpt-payload", E + "--checkpoint {d}/payload.pt", "payload.pt")
case("export-ckpt-mismatch", E + "--checkpoint {d}/mismatch.pt", "does not match")
case("export-existing-out-ckpt-mismatch", "export {d}/spec.json --out {d}/existing.onnx --format onnx "
     "--checkpoint {d}/mismatch.pt", "does not match")
case("export-existing-out-opset-1", "export {d}/spec.json --out {d}/existing.onnx --format onnx --random-init "
     "--opset 1", "--opset")
case("export-ckpt-is-spec", E + "--checkpoint {d}/spec.json", "spec.json")

# --- study ----------------------------------------------------------------------------------------------------
Q = "study --space mgic_resnet56 --data digits --out {d}/q_new "
case("study-trials-zero", Q + "--trials 0", "--trials")
case("study-trials-negative", Q + "--trials -2", "--trials")
case("study-trials-absurd", Q + "--trials 100000000000", "--trials")
case("study-trials-float", Q + "--trials 1e3", "--trials")
case("study-lr-nan", Q + "--trials 1 --lr nan", "--lr")
case("study-lr-inf", Q + "--trials 1 --lr inf", "--lr")
case("study-epochs-zero", Q + "--trials 1 --epochs-per-trial 0", "--epochs-per-trial")
case("study-epochs-1e20", Q + "--trials 1 --epochs-per-trial 1e20", "--epochs-per-trial")
case("study-max-params-zero", Q + "--trials 1 --max-params 0", "--max-params")
case("study-batch-zero", Q + "--trials 1 --batch-size 0", "--batch-size")
case("study-seed-negative", Q + "--trials 1 --seed -1", "--seed")
case("study-sampler-bad", Q + "--trials 1 --sampler cmaes2", "sampler")
case("study-pruner-bad", Q + "--trials 1 --pruner always", "pruner")
case("study-objectives-bad", Q + "--trials 1 --objectives speed", "objectives")
case("study-objectives-duplicate", Q + "--trials 1 --objectives accuracy,accuracy", "objectives")
case("study-set-no-equals", Q + "--trials 1 --set train.lr", "--set")
case("study-set-nan", Q + "--trials 1 --set train.lr=nan", "train.lr")
case("study-set-choices-unknown-label", Q + "--trials 1 --set choices.no.such.label=[1]", "no.such.label")
case("study-set-fixed-unknown-label", Q + "--trials 1 --set fixed.no.such.label=1", "no.such.label")
case("study-set-unknown", Q + "--trials 1 --set nope=1", "nope")
case("study-config-laughs", Q + "--trials 1 --config {d}/laughs.yaml", "expands")
case("study-config-dir", Q + "--trials 1 --config {d}/conf_dir.yaml", "is a directory")
case("study-config-python-tag", Q + "--trials 1 --config {d}/python.yaml", "YAML")
case("study-nni-port-zero", Q + "--trials 1 --nni-port 0", "--nni-port")
case("study-nni-port-huge", Q + "--trials 1 --nni-port 70000", "--nni-port")
case("study-nni-tuner-without-backend", Q + "--trials 1 --nni-tuner tpe", "--backend nni")
case("study-backend-bad", Q + "--trials 1 --backend ray", "--backend")
case("study-jobs-zero", Q + "--trials 1 --jobs 0", "--jobs")
case("study-jobs-negative", Q + "--trials 1 --jobs -1", "--jobs")
case("study-jobs-absurd", Q + "--trials 1 --jobs 1000000", "--jobs")
case("study-jobs-text", Q + "--trials 1 --jobs many", "--jobs")
case("study-per-device-zero", Q + "--trials 1 --per-device 0", "--per-device")
case("study-devices-bad", Q + "--trials 1 --devices 0,x", "--devices")
case("study-device-bad", Q + "--trials 1 --device tpu", "tpu")
case("study-budgets-nan", Q + "--trials 1 --trial search --space resnet20_groups --budgets b=16,b=nan", "nan")
case("study-budgets-zero", Q + "--trials 1 --trial search --space resnet20_groups --budgets b=0", "b=0")
case("search-budget-nan", S + "--budget params=nan", "nan")
case("search-budget-inf", S + "--budget b=inf", "inf")
case("search-budget-huge", S + "--budget macs=1e400", "1e400")
case("search-device-bad", S + "--device tpu", "tpu")
case("train-device-bad", T + "--epochs 1 --device cuda:x", "cuda:x")
case("study-space-unknown", "study --space nope --data digits --trials 1 --out {d}/q_new", "nope")
case("study-out-is-file", "study --space mgic_resnet56 --data digits --trials 1 --out {d}/a_file", "a_file")
case("study-out-holds-search", "study --space mgic_resnet56 --data digits --trials 1 --out {d}/search_run",
     "search_run")

# --- pareto ---------------------------------------------------------------------------------------------------
case("pareto-sqlite-missing", "pareto --storage sqlite:///{d}/missing.db --study-name x --out {d}/p_new",
     "does not exist")
case("pareto-journal-missing", "pareto --storage journal:{d}/missing.log --study-name x --out {d}/p_new",
     "does not exist")
case("pareto-study-unknown", "pareto --storage sqlite:///{d}/study.db --study-name nope --out {d}/p_new", "nope")
case("pareto-study-empty", "pareto --storage sqlite:///{d}/study.db --study-name empty --out {d}/p_new",
     "no completed trials")
case("pareto-study-only-failed", "pareto --storage sqlite:///{d}/study.db --study-name failed --out {d}/p_new",
     "no completed trials")
case("pareto-out-holds-search", "pareto --storage sqlite:///{d}/study.db --study-name empty --out {d}/search_run",
     "")
case("pareto-out-other-study", "pareto --storage sqlite:///{d}/study.db --study-name done --out {d}/other_study",
     "other_study")
case("pareto-out-search-run", "pareto --storage sqlite:///{d}/study.db --study-name done --out {d}/search_run",
     "search_run")
case("pareto-out-is-file", "pareto --storage sqlite:///{d}/study.db --study-name done --out {d}/a_file", "a_file")
case("study-out-other-study", "study --space mgic_resnet56 --data digits --trials 1 --out {d}/other_study",
     "other_study")
case("pareto-storage-bogus", "pareto --storage bogus://x --study-name x --out {d}/p_new", "storage")
case("pareto-storage-dir", "pareto --storage sqlite:///{d}/empty_run --study-name x --out {d}/p_new",
     "is a directory")
case("pareto-storage-fifo", "pareto --storage journal:{d}/fifo.yaml --study-name x --out {d}/p_new",
     "not a regular file")
case("pareto-storage-not-sqlite", "pareto --storage sqlite:///{d}/a_file --study-name x --out {d}/p_new", "")
case("pareto-storage-not-journal", "pareto --storage journal:{d}/a_file --study-name x --out {d}/p_new", "")
case("study-storage-dir", Q + "--trials 1 --storage sqlite:///{d}/empty_run", "")
case("study-storage-bogus", Q + "--trials 1 --storage bogus://x", "")

# --- demo -----------------------------------------------------------------------------------------------------
case("demo-epochs-zero", "demo --out {d}/demo_new --epochs 0", "--epochs")
case("demo-epochs-1e20", "demo --out {d}/demo_new --epochs 1e20", "--epochs")
case("demo-epochs-absurd", "demo --out {d}/demo_new --epochs 10000000", "--epochs")
case("demo-study-trials-negative", "demo --out {d}/demo_new --study-trials -1", "--study-trials")
case("demo-study-trials-absurd", "demo --out {d}/demo_new --study-trials 100000000", "--study-trials")
case("demo-seed-negative", "demo --out {d}/demo_new --seed -1", "--seed")
case("demo-seed-text", "demo --out {d}/demo_new --seed abc", "--seed")

# --- nni-nas --------------------------------------------------------------------------------------------------
N = "nni-nas --space resnet20_groups --out {d}/n_new "
case("nni-epochs-zero", N + "--epochs 0", "--epochs")
case("nni-epochs-1e20", N + "--epochs 1e20", "--epochs")
case("nni-lr-nan", N + "--lr nan", "--lr")
case("nni-lr-inf", N + "--lr inf", "--lr")
case("nni-lr-zero", N + "--lr 0", "--lr")
case("nni-trials-zero", N + "--trials 0", "--trials")
case("nni-batch-zero", N + "--batch-size 0", "--batch-size")
case("nni-oneshot-samples-zero", N + "--oneshot-samples 0", "--oneshot-samples")
case("nni-strategy-bad", N + "--strategy enas", "--strategy")
case("nni-seed-negative", N + "--seed -1", "--seed")
case("nni-out-is-file", "nni-nas --space resnet20_groups --out {d}/a_file", "a_file")
case("nni-space-unknown", "nni-nas --space nope --out {d}/n_new", "nope")
case("nni-space-not-groups", "nni-nas --space mgic_resnet56 --out {d}/n_new", "mgic_resnet56")
case("nni-data-unknown", "nni-nas --space resnet20_groups --data nope --out {d}/n_new", "nope")


class _TrainingStarted(BaseException):  # not an Exception: the CLI must not turn it into a one-line error
    pass


def _no_training(*_args, **_kwargs):
    raise _TrainingStarted("a hostile input reached training")


@pytest.fixture
def no_training(monkeypatch):
    """Any case that reaches training (or a study's optimisation) fails at once instead of running."""
    import optuna
    from mgnas.strategies.differentiable import DifferentiableSearch

    from mgnas.train import Trainer

    monkeypatch.setattr(Trainer, "fit", _no_training)
    monkeypatch.setattr(DifferentiableSearch, "run", _no_training)
    monkeypatch.setattr(optuna.Study, "optimize", _no_training)


@pytest.mark.parametrize(("cid", "argv", "code", "message"), CASES, ids=[c[0] for c in CASES])
def test_hostile(d, cid, argv, code, message, capsys, monkeypatch, no_training):
    monkeypatch.chdir(d)
    monkeypatch.delenv("MGNAS_DEBUG", raising=False)
    # "{d}" is the work directory; a fresh output directory ("..._new") is fresh for every case
    argv = [a.replace("{d}", str(d)).replace("_new", f"_new-{cid}") for a in argv]
    before = _snapshot(d)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as shown:  # a warning would be a second line on stderr
        warnings.simplefilter("always")
        rc = main(argv)
    out, err = capsys.readouterr()
    assert not shown, [str(w.message) for w in shown]
    lines = err.splitlines()
    assert rc == code, (rc, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("mgnas") and "Traceback" not in err, err
    assert message in lines[0], lines[0]
    assert out == "", out
    after = _snapshot(d)
    assert {k: after.get(k) for k in before} == before, "files in the work directory changed"
    new = sorted(set(after) - set(before))
    assert all(k.endswith(".lock") and after[k] == b"" for k in new), f"a refused command wrote {new}"
    assert not Path("/tmp/mgnas-hostile-pwned").exists()


def test_suite_size():
    assert len(CASES) >= 150
    assert len({c[0] for c in CASES}) == len(CASES)
    commands = {c[1][0] for c in CASES if c[1]}
    assert commands >= {"count", "models", "spaces", "search", "train", "export", "study", "pareto", "demo",
                        "nni-nas"}


# --- the roots, as library calls ------------------------------------------------------------------------------


def test_config_numbers_are_finite_and_in_range(tmp_path):
    import dataclasses

    from mgnas.config import LIMITS, ConfigError, load_config
    from mgnas.train import TrainConfig

    for key, value in (("lr", float("nan")), ("weight_decay", float("inf")), ("lr", "-inf"),
                       ("epochs", 10**20), ("epochs", LIMITS["epochs"][1] + 1), ("seed", -1),
                       ("grad_clip", float("inf")), ("step_milestones", [1, 10**9])):
        with pytest.raises(ConfigError, match=key):
            load_config(TrainConfig, overrides={key: value})
    assert load_config(TrainConfig, overrides={"epochs": LIMITS["epochs"][1]}).epochs == LIMITS["epochs"][1]

    @dataclasses.dataclass(frozen=True)
    class Tiny:
        ratio: float = dataclasses.field(default=0.5, metadata={"range": (0.0, 1.0)})
        count: int = 3

    with pytest.raises(ConfigError, match=r"ratio: 2.0 is outside the valid range \[0.0, 1.0\]"):
        load_config(Tiny, overrides={"ratio": 2})
    with pytest.raises(ConfigError, match="count"):
        load_config(Tiny, overrides={"count": 2**70})
    with pytest.raises(ConfigError, match="'count' is a value"):
        load_config(Tiny, overrides={"count.x": 1})


def test_yaml_is_safe_and_bounded(tmp_path):
    import time

    from mgnas.config import ConfigError, read_yaml

    bomb = tmp_path / "laughs.yaml"
    bomb.write_text(_laughs(12))
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than"):
        read_yaml(bomb)
    assert time.perf_counter() - start < 10
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match="nested"):
        read_yaml(deep)
    tagged = tmp_path / "tag.yaml"
    tagged.write_text("x: !!python/object/apply:os.system ['touch /tmp/mgnas-hostile-pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        read_yaml(tagged)
    loop = tmp_path / "loop.yaml"
    loop.write_text("a: &a [1, *a]\n")
    with pytest.raises(ConfigError, match="recursive alias"):
        read_yaml(loop)
    ok = tmp_path / "ok.yaml"
    ok.write_text("base: &b {lr: 0.1}\ntrain: *b\n")  # a few aliases are fine
    assert read_yaml(ok) == {"base": {"lr": 0.1}, "train": {"lr": 0.1}}
    assert not Path("/tmp/mgnas-hostile-pwned").exists()


def test_spec_text_is_bounded():
    from mgnas.spec import SpecError, loads

    for text in ("[" * 100_000 + "]" * 100_000, '{"a":' * 900 + "1" + "}" * 900, '{"n": ' + "9" * 5000 + "}"):
        with pytest.raises(SpecError):
            loads(text)
    # brackets inside strings are not nesting
    with pytest.raises(SpecError, match="format"):
        loads(json.dumps({"name": "[" * 1000}))


def test_model_arguments_and_sizes_are_checked_before_building():
    from mgnas.models import build_model, model_spec
    from mgnas.models._registry import MAX_PARAMS, estimate_params
    from mgnas.spec import SpecError

    for kwargs, name in (({"width": float("nan")}, "width"), ({"width": 1e6}, "width"),
                         ({"num_classes": 1e10}, "num_classes"), ({"num_classes": True}, "num_classes"),
                         ({"group_size": "8"}, "group_size"), ({"width": 1000.0}, "width")):
        with pytest.raises(ValueError, match=name):
            model_spec("mgic_resnet56", **kwargs)
    spec = model_spec("resnet20_cifar")
    assert 0 < estimate_params(spec) <= 269_722
    first = next(iter(spec.convs()))[0]
    huge = spec.with_values({f"{first}.kernel_size": 1_000_000})
    with pytest.raises(SpecError, match="parameters"):
        build_model(huge)
    assert estimate_params(huge) > MAX_PARAMS
    with pytest.raises(SpecError, match="parameters"):
        build_model(spec.with_values({"num_classes": 10**10}))


def test_input_size_is_checked_against_the_spec():
    from mgnas.models import model_spec
    from mgnas.profile import check_input_size, parse_input_size

    spec = model_spec("resnet20_cifar")
    assert check_input_size(spec, "3x16x16") == (3, 16, 16)
    with pytest.raises(ValueError, match="1 channel"):
        check_input_size(spec, "1x32x32")
    for bad in ("3x60000x60000", "5000x8x8", "3x" + "9" * 100 + "x3"):
        with pytest.raises(ValueError):
            parse_input_size(bad)


def test_default_configs_are_within_their_ranges(tmp_path):
    """Every run writes config.yaml and workers/resumes read it back: the defaults must pass the range checks."""
    from mgnas.strategies.differentiable import SearchConfig
    from mgnas.strategies.optuna_study import StudyConfig

    from mgnas.config import dump_config, load_config
    from mgnas.train import TrainConfig

    for cls in (TrainConfig, SearchConfig, StudyConfig):
        path = tmp_path / f"{cls.__name__}.yaml"
        path.write_text(dump_config(cls()))
        assert load_config(cls, path) == cls()
