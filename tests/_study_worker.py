"""Run ``mgnas`` with the study/pareto commands registered (until the lead wires them into mgnas.cli)."""

import sys

import torch

from mgnas import cli
from mgnas.cli._study import ParetoCommand, StudyCommand

if __name__ == "__main__":
    torch.set_num_threads(1)
    if not any(c.name == "study" for c in cli.COMMANDS):
        cli.COMMANDS = [*cli.COMMANDS, StudyCommand(), ParetoCommand()]
    sys.exit(cli.main(sys.argv[1:]))
