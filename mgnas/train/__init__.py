"""Training engine shared by search and retraining: config, Trainer, checkpoints, DDP helpers, retraining.

``Trainer(model, TrainConfig(...), data_bundle, out_dir).fit(resume=False)``; see :mod:`mgnas.train.engine`.
``retrain(spec, "digits", TrainConfig(epochs=30), "runs/retrain", init_from=None)`` trains an architecture and
records it (what ``mgnas train`` runs); see :mod:`mgnas.train.retrain`.
"""

from mgnas.train.checkpoint import ResumeError, TrainingDiverged
from mgnas.train.config import TrainConfig
from mgnas.train.engine import Trainer
from mgnas.train.retrain import RetrainResult, load_static_weights, retrain

__all__ = ["TrainConfig", "Trainer", "TrainingDiverged", "ResumeError", "retrain", "RetrainResult",
           "load_static_weights"]
