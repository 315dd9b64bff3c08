"""Self-Tuning Networks (MacKay et al., ICLR 2019) in TensorFlow."""

from stn.data import ToyTask, x_range_spec
from stn.hyperparameters import HyperparameterSpec, Hyperparameters
from stn.layers import HyperDense
from stn.models import ToyHyperNet
from stn.training import STN, STNConfig, Trajectory

__all__ = [
    "STN",
    "HyperDense",
    "HyperparameterSpec",
    "Hyperparameters",
    "STNConfig",
    "ToyHyperNet",
    "ToyTask",
    "Trajectory",
    "x_range_spec",
]
