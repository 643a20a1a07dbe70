"""What every ``--help`` shows: the defaults of every option, one worked example, and the jargon explained.

Options whose default is ``None`` on the command line (they override a ``--config`` file only when given) show
the default of the config key they set, looked up in the config dataclass only when help is formatted.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import textwrap
from typing import Any

#: One worked example per command (shown as the epilog of its --help).
EXAMPLES: dict[str, str] = {
    "demo": "mgnas demo --out mgnas-demo        # then open mgnas-demo/index.html",
    "search": "mgnas search --space resnet20_groups --data digits --budget b=4 --epochs 8 --out runs/search\n"
              "mgnas search --config experiments/configs/dgconv_g_resnext50_b32.yaml \\\n"
              "    --data imagenet:/data/imagenet --out runs/imagenet",
    "study": "mgnas study --space mgic_resnet56 --data digits --trials 12 --epochs-per-trial 3 --out runs/study\n"
             "mgnas study --config experiments/configs/study_mgic_resnet56_ablation.yaml \\\n"
             "    --data cifar10:/data/cifar10 --out runs/ablation",
    "pareto": "mgnas pareto --storage sqlite:///runs/study/study.db --out runs/front",
    "nni-nas": "mgnas nni-nas --space resnet20_groups --data digits --strategy random-oneshot --out runs/nni",
    "train": "mgnas train --spec runs/search/spec.json --data digits --epochs 30 --out runs/retrain\n"
             "mgnas train --spec runs/search/spec.json --data digits --epochs 10 \\\n"
             "    --init-from runs/search/weights.pt --out runs/finetune",
    "export": "mgnas export runs/retrain/spec.json --checkpoint runs/retrain/checkpoint.pt \\\n"
              "    --format onnx --out model.onnx --check",
    "models": "mgnas models 'mgic*'",
    "spaces": "mgnas spaces mgic_resnet56 --details",
    "count": "mgnas count resnext50_32x4d --input 3x224x224 --totals\nmgnas count mgic_resnet56 -a group_size=16",
}

#: Terms a command's help uses, explained once (shown after the example).
GLOSSARY: dict[str, str] = {
    "ζ/o": "the searched network's complexity ζ (Σ over DGConv layers of nnz(U) = C_in·C_out/groups) divided by "
           "the budget o; ζ/o ≤ 1 means within budget",
    "b=B": "budget o = Σ C_in·C_out / B over the searchable convs, i.e. as if every one had B groups (b=32 is "
           "ResNeXt 32x4d's complexity); params=N and macs=N budget the whole network instead",
    "digits:16": "scikit-learn's 8x8 digits upscaled to 16x16 (any side 8..512); synthetic:32x32:10 is learnable "
                 "random 32x32 images of 10 classes",
    "levels=None": "a model argument left at None takes the model's own rule, e.g. MGIC levels=None coarsens "
                   "as far as coarse_size allows",
}
_TERMS = {
    "search": ("ζ/o", "b=B", "digits:16"), "study": ("digits:16", "levels=None"), "demo": ("ζ/o", "b=B"),
    "train": ("digits:16",), "nni-nas": ("digits:16",), "models": ("levels=None",), "count": ("levels=None",),
    "export": ("levels=None",), "spaces": ("levels=None",),
}

#: Commands whose None-default flags set a config key: (module path of their flag map, config class).
_CONFIGS = {
    "search": ("mgnas.cli._search", "mgnas.strategies:SearchConfig"),
    "train": ("mgnas.cli._train", "mgnas.train:TrainConfig"),
    "study": ("mgnas.cli._study", "mgnas.strategies:StudyConfig"),
}
#: Defaults a command applies on top of its config class: (module:dict, key prefix). A study trains with its own
#: training defaults (few epochs, AdamW) unless the YAML file or a flag sets them.
_DEFAULT_OVERRIDES = {"study": ("mgnas.strategies.study:TRAIN_DEFAULTS", "train.")}


def epilog(name: str) -> str:
    """``Example:`` lines and the jargon of command ``name``."""
    lines = []
    if name in EXAMPLES:
        lines += ["Example:", *(f"  {line}" for line in EXAMPLES[name].splitlines())]
    terms = _TERMS.get(name, ())
    if terms:
        lines += ["", "Terms:"]
        for t in terms:
            lines += textwrap.wrap(f"{t}: {GLOSSARY[t]}", 98, initial_indent="  ", subsequent_indent="    ",
                                   break_on_hyphens=False)
    return "\n".join(lines)


def mark_config_defaults(name: str, parser: argparse.ArgumentParser) -> None:
    """Tag the options of ``name`` that set a config key, so :class:`HelpFormatter` can show its default."""
    if name not in _CONFIGS:
        return
    module, config = _CONFIGS[name]
    flags = getattr(importlib.import_module(module), "_FLAGS", {})
    for action in parser._actions:
        key = flags.get(action.dest)
        if key and action.default is None:
            action.mgnas_config_key = (config, key, *_DEFAULT_OVERRIDES.get(name, ()))  # type: ignore[attr-defined]
            if not action.help:
                action.help = f"sets config key {key}"


def fill_missing_help(parser: argparse.ArgumentParser) -> None:
    """An option without a help text still gets a line (argparse would print no default for it)."""
    for action in parser._actions:
        if action.option_strings and action.help is None:
            action.help = action.dest.replace("_", " ")


def config_default(config: str, key: str, overrides: str | None = None, prefix: str = "") -> Any:
    """The default of the dotted ``key`` of the config dataclass ``"module:Class"`` (``dataclasses.MISSING`` if
    it has none); ``overrides`` (``"module:DICT"``, keys under ``prefix``) takes precedence."""
    if overrides is not None and key.startswith(prefix):
        module, _, dict_name = overrides.partition(":")
        table = getattr(importlib.import_module(module), dict_name)
        if key[len(prefix):] in table:
            return table[key[len(prefix):]]
    module, _, cls_name = config.partition(":")
    cls: Any = getattr(importlib.import_module(module), cls_name)
    value: Any = dataclasses.MISSING
    for part in key.split("."):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            return dataclasses.MISSING
        f = fields[part]
        value = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING)
        cls = type(value)
    return value


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    return str(value)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wrapped descriptions that keep the epilog's line breaks, and every option's default.

    - a help text that already says "default" is left as it is;
    - an option with a real default (not None/False) gets ``(default: X)``;
    - an option that sets a config key gets ``(default: X, or the --config file's value)``.
    """

    def __init__(self, prog: str, **kwargs: Any) -> None:
        kwargs.setdefault("width", 100)
        kwargs.setdefault("max_help_position", 32)
        super().__init__(prog, **kwargs)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        # paragraphs separated by a blank line are wrapped each; the epilog's indented lines are kept as written
        out = []
        for para in text.split("\n\n"):
            if any(line.startswith("  ") for line in para.splitlines()):
                out.append("\n".join(indent + line for line in para.splitlines()))
            else:
                out.append(argparse.HelpFormatter._fill_text(self, para, width, indent))
        return "\n\n".join(out)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.help == argparse.SUPPRESS:
            return text
        if not action.option_strings or action.required:
            return text
        tagged = getattr(action, "mgnas_config_key", None)
        if tagged is not None:
            try:
                value = config_default(*tagged)
            except Exception:  # noqa: BLE001 - help must never fail; say less instead
                value = dataclasses.MISSING
            if value is not dataclasses.MISSING:
                shown = _show(value).replace("%", "%%")
                return f"{text} (default: {shown}, or the --config file's value)".strip()
            return text
        if isinstance(action, argparse.BooleanOptionalAction):
            return f"{text} (default: --{'' if action.default else 'no-'}{action.option_strings[0][2:]})".strip()
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            return text
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return text
        return f"{text} (default: %(default)s)".strip()
