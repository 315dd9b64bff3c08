"""Self-Tuning Networks (MacKay et al., ICLR 2019) in TensorFlow."""

from stn.data import ClassificationTask, ToyTask, load_dataset, x_range_spec
from stn.hyperparameters import Hyperparameters, HyperparameterSpec
from stn.layers import HyperConv2D, HyperDense
from stn.models import HyperCNN, HyperMLP, ToyHyperNet
from stn.training import STN, STNConfig, Trajectory

__all__ = [
    "STN",
    "ClassificationTask",
    "HyperCNN",
    "HyperConv2D",
    "HyperDense",
    "HyperMLP",
    "HyperparameterSpec",
    "Hyperparameters",
    "STNConfig",
    "ToyHyperNet",
    "ToyTask",
    "Trajectory",
    "load_dataset",
    "x_range_spec",
]
