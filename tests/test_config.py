"""Strict YAML run configs: unknown keys, types, overrides, nested sections, round trip."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from mgnas.config import ConfigError, dump_config, load_config
from mgnas.train import TrainConfig


@dataclass(frozen=True)
class _Search:
    space: str = "resnet20_groups"
    out: Path | None = None
    penalty: Literal["paper", "lagrangian"] = "lagrangian"
    budget: dict[str, float] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)


def _yaml(tmp_path, text):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_yaml_then_overrides(tmp_path):
    path = _yaml(tmp_path, "epochs: 3\nlr: 1e-3\nstep_milestones: [1, 2]\nschedule: step\ngrad_clip: null\n")
    cfg = load_config(TrainConfig, path, {"epochs": 5, "nesterov": False})
    assert cfg.epochs == 5 and cfg.lr == 1e-3 and cfg.nesterov is False  # YAML 1.1 reads 1e-3 as a string
    assert cfg.step_milestones == (1, 2) and cfg.grad_clip is None and cfg.schedule == "step"
    assert load_config(TrainConfig) == TrainConfig()
    assert load_config(TrainConfig, overrides={"weight_decay": 0}).weight_decay == 0.0  # int for float


def test_unknown_key_lists_valid_keys(tmp_path):
    with pytest.raises(ConfigError, match=r"^learning_rate: unknown key in TrainConfig; valid keys: epochs, "):
        load_config(TrainConfig, _yaml(tmp_path, "learning_rate: 0.1\n"))
    with pytest.raises(ConfigError, match="lr, momentum"):
        load_config(TrainConfig, overrides={"lrr": 0.1})


@pytest.mark.parametrize("text, message", [
    ("lr: fast\n", r"lr: expected float, got 'fast' \(str\)"),
    ("epochs: 2.5\n", r"epochs: expected int, got 2.5"),
    ("nesterov: 1\n", r"nesterov: expected bool, got 1"),
    ("epochs: true\n", r"epochs: expected int, got True"),
    ("grad_clip: [1]\n", r"grad_clip: expected float \| None"),
    ("step_milestones: [1, x]\n", r"step_milestones\[1\]: expected int"),
])
def test_wrong_type_names_key_and_type(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, _yaml(tmp_path, text))


def test_bad_values_and_files(tmp_path):
    with pytest.raises(ConfigError, match="optimizer: 'adam' is not supported; valid values: sgd, adamw"):
        load_config(TrainConfig, overrides={"optimizer": "adam"})
    with pytest.raises(ConfigError, match="schedule 'step' needs at least one milestone"):
        load_config(TrainConfig, overrides={"schedule": "step"})
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(TrainConfig, tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(TrainConfig, _yaml(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(TrainConfig, _yaml(tmp_path, "epochs: [1\n"))
    assert load_config(TrainConfig, _yaml(tmp_path, "")) == TrainConfig()


def test_nested_sections_literals_and_dotted_overrides(tmp_path):
    path = _yaml(tmp_path, "space: s\nout: runs/a\nbudget: {b: 32}\ntrain: {epochs: 2, lr: 0.01}\n")
    cfg = load_config(_Search, path, {"train.epochs": 7, "penalty": "paper"})
    assert cfg.out == Path("runs/a") and cfg.budget == {"b": 32.0} and cfg.penalty == "paper"
    assert cfg.train == TrainConfig(epochs=7, lr=0.01)
    with pytest.raises(ConfigError, match=r"^train.momentun: unknown key in TrainConfig"):
        load_config(_Search, overrides={"train.momentun": 0.5})
    with pytest.raises(ConfigError, match="penalty: 'hinge' is not allowed; valid values: 'paper', 'lagrangian'"):
        load_config(_Search, overrides={"penalty": "hinge"})
    with pytest.raises(ConfigError, match="train.epochs: expected int"):
        load_config(_Search, overrides={"train.epochs": "many"})


def test_dump_round_trips(tmp_path):
    cfg = _Search(out=Path("x"), budget={"macs": 1e6},
                  train=TrainConfig(schedule="step", step_milestones=(3, 6), grad_clip=1.0, lr=1e-3))
    text = dump_config(cfg)
    assert "step_milestones: [3, 6]" in text and "out: x" in text
    assert load_config(_Search, _yaml(tmp_path, text)) == cfg
