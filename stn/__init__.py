"""Self-Tuning Networks (MacKay et al., ICLR 2019) in TensorFlow.

The package is layered; each layer imports only the ones above it in this list:

* ``stn.util``: validation helpers and settings dataclasses, atomic file writes, the XLA
  setting of the entry points;
* ``stn.method``: hyperparameter spaces, hyper layers, hypermodels, optimizers, the variants and
  :class:`STN`, the state and steps of Algorithm 1;
* ``stn.training``: the compiled loop (:class:`Trainer`), the run record, checkpoints, summaries;
* ``stn.tasks``: the toy problem and image classification;
* ``stn.experiments``: the toy experiment and its variants, real data against search baselines,
  diagnostics, the benchmark and the eager reference loop;
* ``stn.tooling``: the notebook runner, plots, the replication check, the README's numbers.

Importing ``stn`` changes no global state: no environment variable, no matplotlib backend.
"""

from stn.method.hyperparameters import Hyperparameters, HyperparameterSpec
from stn.method.layers import HyperConv2D, HyperDense, per_example_dropout
from stn.method.models import HyperCNN, HyperMLP, HyperModel, ToyHyperNet
from stn.method.stn import STN, STNConfig
from stn.tasks.classification import (
    ClassificationTask,
    classification_specs,
    load_dataset,
    weight_decay_spec,
)
from stn.tasks.toy import ToyTask, x_range_spec
from stn.training.loop import Trainer
from stn.training.record import Trajectory

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
    "Trainer",
    "Trajectory",
    "classification_specs",
    "load_dataset",
    "per_example_dropout",
    "weight_decay_spec",
    "x_range_spec",
]
