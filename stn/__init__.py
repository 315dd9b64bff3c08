"""Self-Tuning Networks (MacKay et al., ICLR 2019) in TensorFlow."""

import os

# XLA's CPU fusion emitters double the memory of compiling a hypertraining chunk (peak RSS of a
# 10000-cycle toy run: 1081 MiB with them, 920 MiB without) for ~15% faster cycles; the
# project's target is a run under 1 GB. Read by XLA at its first compilation; a user's own
# setting of this flag wins.
_FLAG = "--xla_cpu_use_fusion_emitters"
if _FLAG not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_FLAG}=false".strip()

from stn.data import (  # noqa: E402
    ClassificationTask,
    ToyTask,
    classification_specs,
    load_dataset,
    weight_decay_spec,
    x_range_spec,
)
from stn.hyperparameters import Hyperparameters, HyperparameterSpec  # noqa: E402
from stn.layers import HyperConv2D, HyperDense, per_example_dropout  # noqa: E402
from stn.models import HyperCNN, HyperMLP, HyperModel, ToyHyperNet  # noqa: E402
from stn.training import STN, STNConfig, Trajectory  # noqa: E402

__all__ = [
    "STN",
    "ClassificationTask",
    "HyperCNN",
    "HyperConv2D",
    "HyperDense",
    "HyperMLP",
    "HyperModel",
    "HyperparameterSpec",
    "Hyperparameters",
    "STNConfig",
    "ToyHyperNet",
    "ToyTask",
    "Trajectory",
    "classification_specs",
    "load_dataset",
    "per_example_dropout",
    "weight_decay_spec",
    "x_range_spec",
]
