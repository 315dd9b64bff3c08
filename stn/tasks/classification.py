"""Image classification as an STN task: digits offline (scikit-learn); MNIST, Fashion-MNIST and
CIFAR-10 through keras.datasets when they are available."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from stn.method.hyperparameters import DEFAULT_DTYPE, Exponential, HyperparameterSpec
from stn.method.layers import per_example_dropout
from stn.method.models import Batch, HyperModel
from stn.method.population import draw_shape
from stn.tasks.metrics import accuracy
from stn.util.checks import check_choice, is_positive_int

DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10")
AUGMENTATIONS = ("input_dropout", "input_noise")
#: The name of the weight-decay hyperparameter λ_wd, and its default range: a sigmoid between
#: bounds (0, hi) is close to a log scale near 0, so the hyper steps move λ_wd by factors.
WEIGHT_DECAY = "weight_decay"
WEIGHT_DECAY_BOUNDS = (0.0, 1e-2)


@dataclass(frozen=True)
class ImageDataset:
    """Images in [0, 1] with shape [n, height, width, channels] and integer labels, split in
    three: training (weight steps), validation (hyper steps, model selection) and test."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_valid.max(), self.y_test.max())) + 1


def _check_count(name: str, value: int | None, available: int) -> None:
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or not 1 <= value < available
    ):
        raise ValueError(f"{name}={value!r} must be an integer in [1, {available - 1}]")


def load_digits_split(seed: int = 0, n_train: int = 300, n_valid: int = 300) -> ImageDataset:
    """scikit-learn's bundled 8×8 digits (1797 images, no download), pixels /16, split by a
    seeded stratified shuffle into ``n_train`` training, ``n_valid`` validation and the rest
    test images. The small training set makes regularisation matter."""
    from sklearn.datasets import load_digits  # the extra `experiments`: not a core dependency
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0)[..., np.newaxis]
    y = digits.target.astype(np.int64)
    _check_count("n_train", n_train, len(y))
    _check_count("n_valid", n_valid, len(y) - n_train)
    x_train, x_rest, y_train, y_rest = train_test_split(
        x, y, train_size=n_train, stratify=y, random_state=seed
    )
    x_valid, x_test, y_valid, y_test = train_test_split(
        x_rest, y_rest, train_size=n_valid, stratify=y_rest, random_state=seed
    )
    return ImageDataset("digits", x_train, y_train, x_valid, y_valid, x_test, y_test)


class DatasetUnavailableError(RuntimeError):
    """A data set could not be downloaded."""


def _keras_loader(name: str) -> Callable[[], tuple]:
    return getattr(tf.keras.datasets, name).load_data


def keras_images(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The official training and test sets of a ``keras.datasets`` set: images scaled to [0, 1]
    with a channel axis, integer labels. Raises ``DatasetUnavailableError`` offline."""
    try:
        (x, y), (x_test, y_test) = _keras_loader(name)()
    except Exception as error:  # any download failure gets the same advice
        raise DatasetUnavailableError(
            f"could not load {name!r} through keras.datasets ({type(error).__name__}: {error}); "
            "it needs a network connection the first time. The embedded 'digits' data set "
            "works offline: load_dataset('digits')"
        ) from error

    def images(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float64) / 255.0
        return a[..., np.newaxis] if a.ndim == 3 else a

    labels = (y.reshape(-1).astype(np.int64), y_test.reshape(-1).astype(np.int64))
    return images(x), labels[0], images(x_test), labels[1]


def load_dataset(
    name: str = "digits", seed: int = 0, n_train: int | None = None, n_valid: int | None = None
) -> ImageDataset:
    """``digits`` (embedded, offline) or ``mnist``/``fashion_mnist``/``cifar10`` through
    ``keras.datasets`` (downloaded once). For the keras sets the official test set is the test
    split and a seeded stratified 20% of the official training set (or ``n_valid`` images) the
    validation split; ``n_train`` optionally subsamples the rest.

    Raises ``DatasetUnavailableError`` when a keras download fails (e.g. no network).
    """
    check_choice("name", name, DATASETS)
    from sklearn.model_selection import train_test_split  # the extra `experiments`

    if name == "digits":
        counts = {"n_train": n_train, "n_valid": n_valid}
        return load_digits_split(seed, **{k: v for k, v in counts.items() if v is not None})
    x, y, x_test, y_test = keras_images(name)
    _check_count("n_valid", n_valid, len(y))
    valid_size = n_valid if n_valid is not None else 0.2
    x_train, x_valid, y_train, y_valid = train_test_split(
        x, y, test_size=valid_size, stratify=y, random_state=seed
    )
    if n_train is not None:
        _check_count("n_train", n_train, len(y_train))
        x_train, _, y_train, _ = train_test_split(
            x_train, y_train, train_size=n_train, stratify=y_train, random_state=seed
        )
    return ImageDataset(name, x_train, y_train, x_valid, y_valid, x_test, y_test)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def weight_decay_spec(
    initial: float,
    bounds: tuple[float, float] = WEIGHT_DECAY_BOUNDS,
    scale: float = 0.5,
) -> HyperparameterSpec:
    """The weight-decay coefficient λ_wd as a tuned hyperparameter, starting at ``initial``
    strictly inside ``bounds`` = (lower, upper), 0 <= lower < upper (a negative λ_wd would reward
    large weights). See ``ClassificationTask`` for the penalty it weighs."""
    if not (
        isinstance(bounds, tuple | list)
        and len(bounds) == 2
        and all(_is_number(b) for b in bounds)
        and 0 <= bounds[0] < bounds[1]
    ):
        raise ValueError(
            f"weight_decay_bounds={bounds!r} is not allowed; it must be a pair (lower, upper) "
            "of finite numbers with 0 <= lower < upper"
        )
    lower, upper = float(bounds[0]), float(bounds[1])
    if not (_is_number(initial) and lower < initial < upper):
        raise ValueError(
            f"weight_decay={initial!r} is not allowed; it must be a number strictly inside "
            f"weight_decay_bounds=({lower}, {upper}), or None (weight decay not tuned)"
        )
    return HyperparameterSpec(WEIGHT_DECAY, float(initial), lower, upper, scale=scale)


def classification_specs(
    n_dropout: int,
    augmentations: Sequence[str] = AUGMENTATIONS,
    initial_dropout: float = 0.05,
    initial_noise: float = 0.05,
    scale: float = 0.5,
    weight_decay: float | None = None,
    weight_decay_bounds: tuple[float, float] = WEIGHT_DECAY_BOUNDS,
) -> list[HyperparameterSpec]:
    """The tuned hyperparameters (official ranges and init): a dropout rate per hidden block
    ``dropout_1..n`` in (0, 0.9), input pixel dropout in (0, 0.9) and the standard deviation of
    additive Gaussian input noise in (0, 0.5), with initial perturbation scale ``scale``.

    ``weight_decay`` (None: not tuned) adds, last, the weight-decay coefficient ``weight_decay``
    starting at that value inside ``weight_decay_bounds`` (:func:`weight_decay_spec`)."""
    if not isinstance(n_dropout, int) or n_dropout < 0:
        raise ValueError(f"n_dropout={n_dropout!r} must be an integer >= 0")
    for aug in augmentations:
        check_choice("augmentations", aug, AUGMENTATIONS)
    specs = []
    if "input_dropout" in augmentations:
        specs.append(HyperparameterSpec("input_dropout", initial_dropout, 0.0, 0.9, scale=scale))
    if "input_noise" in augmentations:
        specs.append(HyperparameterSpec("input_noise", initial_noise, 0.0, 0.5, scale=scale))
    specs += [
        HyperparameterSpec(f"dropout_{i + 1}", initial_dropout, 0.0, 0.9, scale=scale)
        for i in range(n_dropout)
    ]
    if weight_decay is not None:
        specs.append(weight_decay_spec(weight_decay, weight_decay_bounds, scale))
    return specs


class ClassificationTask:
    """Image classification as an STN ``Task`` (and the baselines' training problem).

    ``names`` are the hyperparameter columns of ``values``: ``input_dropout`` (per-example
    inverted pixel dropout), ``input_noise`` (per-example std of additive Gaussian noise),
    ``dropout_1..n`` (the model's per-block dropout, in order) and ``weight_decay``. The training
    loss applies all of them; the validation loss and the evaluation apply none (dropout off, no
    augmentation, no penalty), so λ reaches them only through the network.

    Weight decay adds λ_wd,i·‖W(λ_i)‖² to example i's cross-entropy, with ‖W(λ_i)‖² =
    ``model.squared_kernel_norm(hnet_input)``: the squared norms of the dense and convolution
    kernels the example is run with, W(λ_i) = W_elem + W_hyper·diag(λ_i V) (biases and the
    hypernetwork's V, C are not decayed; a plain layer's kernel is W). Decaying the kernels at
    λ_i rather than W_elem alone lets the hyper weights learn how the weights respond to λ_wd.

    The model is called as ``model(x, hnet_input, dropout=None, generator=None)`` → logits,
    ``dropout`` [batch, n_dropout] holding each example's rate per block (a ``HyperModel``
    subclass such as ``HyperMLP``). ``dtype`` is the precision of the data, and so of the model
    and λ that train on it.
    """

    stop_metric = "valid_loss"
    supports_population = True  # batches may carry a leading member axis

    def __init__(
        self,
        data: ImageDataset,
        names: Sequence[str],
        batch_size: int = 32,
        valid_batch_size: int = 100,
        dtype: tf.DType = DEFAULT_DTYPE,
    ):
        for param, value in (("batch_size", batch_size), ("valid_batch_size", valid_batch_size)):
            if not is_positive_int(value):
                raise ValueError(f"{param}={value!r} must be a positive integer")
        names = tuple(names)
        dropouts = [n for n in names if n not in (*AUGMENTATIONS, WEIGHT_DECAY)]
        expected = [f"dropout_{i + 1}" for i in range(len(dropouts))]
        if dropouts != expected:
            raise ValueError(
                f"names={names!r}: besides {AUGMENTATIONS} and {WEIGHT_DECAY!r} the names must "
                f"be {expected} in order"
            )
        self.data, self.names, self.dtype = data, names, tf.as_dtype(dtype)
        if not self.dtype.is_floating:
            raise ValueError(f"dtype={self.dtype.name!r} must be a floating-point type")
        self.batch_size, self.valid_batch_size = batch_size, valid_batch_size
        self.dropout_columns = [names.index(n) for n in dropouts]
        self.columns = {n: names.index(n) for n in AUGMENTATIONS if n in names}
        self.weight_decay_column = names.index(WEIGHT_DECAY) if WEIGHT_DECAY in names else None

        def tensors(x: np.ndarray, y: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
            return tf.constant(x, self.dtype), tf.constant(y, tf.int64)

        self.train = tensors(data.x_train, data.y_train)
        self.valid = tensors(data.x_valid, data.y_valid)
        self.test = tensors(data.x_test, data.y_test)

    @property
    def n_dropout(self) -> int:
        return len(self.dropout_columns)

    def check_specs(self, specs: Sequence[HyperparameterSpec]) -> None:
        """Raise ValueError unless ``specs`` are this task's columns, in order, and a tuned
        weight decay cannot go negative (``STN`` calls this before it builds anything)."""
        spec_names = tuple(s.name for s in specs)
        if spec_names != self.names:
            raise ValueError(
                f"specs are named {spec_names!r} but the task reads names={self.names!r}; "
                "they must be the same, in order"
            )
        for spec in specs:
            if spec.name != WEIGHT_DECAY:
                continue
            positive = isinstance(spec.space, Exponential)
            if not (positive or (spec.lower is not None and spec.lower >= 0)):
                raise ValueError(
                    f"hyperparameter {WEIGHT_DECAY!r} has lower={spec.lower!r}; weight decay "
                    "must stay >= 0: give it lower >= 0, as classification_specs(..., "
                    "weight_decay=initial) does"
                )

    @staticmethod
    def _draw(split: tuple[tf.Tensor, tf.Tensor], size: int, generator: tf.random.Generator):
        n = split[1].shape[0]
        index = generator.uniform([size], 0, n, dtype=tf.int64)
        return tf.gather(split[0], index), tf.gather(split[1], index)

    def train_batch(self, generator: tf.random.Generator) -> Batch:
        return self._draw(self.train, self.batch_size, generator)

    def valid_batch(self, generator: tf.random.Generator) -> Batch:
        return self._draw(self.valid, self.valid_batch_size, generator)

    def augment(self, x: tf.Tensor, values: tf.Tensor, generator: tf.random.Generator):
        """Apply the per-example augmentations in ``values`` [batch, H] to images x (or a
        population's [P, batch, H] to [P, batch, ...])."""
        if "input_dropout" in self.columns:
            x = per_example_dropout(x, values[..., self.columns["input_dropout"]], generator)
        if "input_noise" in self.columns:
            std = values[..., self.columns["input_noise"]]
            std = tf.reshape(std, tf.concat([tf.shape(std), [1, 1, 1]], 0))
            x = x + std * generator.normal(draw_shape(x, generator), dtype=x.dtype)
        return x

    def train_loss(
        self,
        model: HyperModel,
        batch: Batch,
        hnet_input: tf.Tensor | None,
        values: tf.Tensor,
        generator: tf.random.Generator,
    ) -> tf.Tensor:
        x, y = batch
        x = self.augment(x, values, generator)
        dropout = tf.gather(values, self.dropout_columns, axis=-1) if self.n_dropout else None
        logits = model(x, hnet_input, dropout=dropout, generator=generator)
        loss = _cross_entropy(y, logits)
        if self.weight_decay_column is None:
            return loss
        return loss + tf.reduce_mean(self.weight_decay_penalty(model, hnet_input, values), -1)

    def weight_decay_penalty(
        self, model: HyperModel, hnet_input: tf.Tensor | None, values: tf.Tensor
    ) -> tf.Tensor:
        """λ_wd,i·‖W(λ_i)‖² for every example i, [batch] (a scalar norm broadcasts), added to
        the training loss only."""
        if self.weight_decay_column is None:
            raise ValueError(f"names={self.names!r} has no {WEIGHT_DECAY!r}: nothing to penalise")
        if not hasattr(model, "squared_kernel_norm"):
            raise ValueError(
                f"model={type(model).__name__} has no squared_kernel_norm(hnet_input), which "
                "weight decay needs; subclass stn.HyperModel (its layers provide it)"
            )
        rate = values[..., self.weight_decay_column]
        return rate * model.squared_kernel_norm(hnet_input)

    def valid_loss(
        self, model: HyperModel, batch: Batch, hnet_input: tf.Tensor | None
    ) -> tf.Tensor:
        x, y = batch
        return _cross_entropy(y, model(x, hnet_input))

    def evaluate(
        self, model: HyperModel, hnet_input: Callable[[int], tf.Tensor | None]
    ) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        """Loss and accuracy on the whole validation and test sets (recorded, never used for
        training); the snapshot is the validation predictions."""
        metrics, predictions = {}, None
        for split, (x, y) in (("valid", self.valid), ("test", self.test)):
            logits = model(x, hnet_input(y.shape[0]))
            y = tf.broadcast_to(y, tf.shape(logits)[:-1])  # each member's, in a population
            metrics[f"{split}_loss"] = _cross_entropy(y, logits)
            metrics[f"{split}_accuracy"] = accuracy(y, logits)
            if predictions is None:
                predictions = tf.cast(tf.argmax(logits, axis=-1), self.dtype)
        return metrics, predictions


def _cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """The mean over the batch (each member's, in a population)."""
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits), -1
    )
