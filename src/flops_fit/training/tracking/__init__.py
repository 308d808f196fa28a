"""Experiment trackers (``train.loggers``): :mod:`.loggers` drives them, :mod:`.backend` is their
common base, and each backend is one module (tensorboard, wandb, mlflow)."""
