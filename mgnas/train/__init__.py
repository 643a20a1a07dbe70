"""Training engine shared by search and retraining: config, Trainer, checkpoints, DDP helpers.

``Trainer(model, TrainConfig(...), data_bundle, out_dir).fit(resume=False)``; see :mod:`mgnas.train.engine`.
"""

from mgnas.train.checkpoint import ResumeError, TrainingDiverged
from mgnas.train.config import TrainConfig
from mgnas.train.engine import Trainer

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "ResumeError"]
