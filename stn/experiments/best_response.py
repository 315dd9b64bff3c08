"""The best response checked against ground truth.

**Ridge regression, exact.** One hyperparameter, the weight decay λ, tuned on a log scale inside
bounds [a, b]. The model is linear, θ = [w; b] (kernel and bias), and the losses are

    f(λ, θ) = (1/n)·‖X̃θ − y‖² + λ·θᵀPθ        (training: mean squared error plus λ‖w‖²)
    F(θ)    = (1/m)·‖X̃_v θ − y_v‖²             (validation: plain mean squared error)

with X̃ = [X, 1] and P = diag(1, …, 1, 0): the bias is not decayed. With A = X̃ᵀX̃/n and
c = X̃ᵀy/n, the best response and its slope are closed form,

    θ*(λ) = (A + λP)⁻¹ c,        dθ*/dλ = −(A + λP)⁻¹ P θ*(λ),

and so is the exact hypergradient d/dλ F(θ*(λ)) = ∇F(θ*)ᵀ dθ*/dλ. The STN's model is one
:class:`~stn.layers.HyperDense` layer with one output, so its response
θ̂_φ(h) = [W_elem + (hV)W_hyper; b_elem + (hC)b_hyper] is read off the layer's variables exactly
(h: the hypernetwork input). The hyperparameter's unconstrained value u maps to λ by
:class:`LogInterval`, log λ = log a + (log b − log a)·sigmoid(u), and the network reads h = u
(or h = u − sg(u) when centered), so dθ̂/du = dθ̂/dh and dθ̂/dλ = (dθ̂/du)/(dλ/du).

Because f is quadratic and the response affine, the weights an STN converges to at fixed (u, σ)
are also closed form (:meth:`RidgeProblem.stn_equilibrium`), which predicts where λ ends for a
given perturbation scale σ (:meth:`RidgeProblem.stn_fixed_point`).

**The toy, measured.** After a toy run, :func:`toy_predicted_losses` evaluates the validation
loss the frozen hypernetwork predicts at other ``x_range`` values, and :func:`toy_ground_truth`
trains plain networks from scratch at each fixed value (``stn.experiments.baselines.FixedTrainer``).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import tensorflow as tf
from scipy import optimize

from stn.experiments.baselines import FixedTrainer
from stn.experiments.toy import VARIANTS, Hypertraining, ToyExperiment
from stn.method.hyperparameters import (
    DEFAULT_DTYPE,
    HyperparameterSpec,
    Transform,
    inverse_softplus,
)
from stn.method.layers import HyperDense
from stn.method.models import Batch, HyperModel, ToyHyperNet
from stn.method.stn import STN, STNConfig
from stn.tasks.toy import ToyTask, x_range_spec
from stn.training.loop import Trainer
from stn.training.progress import progress_bar
from stn.training.record import Trajectory
from stn.util.settings import Settings, setting

# -- the hyperparameter's space -----------------------------------------------------------------


@dataclass(frozen=True)
class LogInterval(Transform):
    """Two bounds on a log scale: log v = log lo + (log hi − log lo)·sigmoid(u)."""

    lower: float
    upper: float

    def __post_init__(self) -> None:
        if not 0 < self.lower < self.upper:
            raise ValueError(f"bounds ({self.lower}, {self.upper}) must satisfy 0 < lower < upper")

    @property
    def span(self) -> float:
        """log(upper) − log(lower)."""
        return math.log(self.upper) - math.log(self.lower)

    def forward(self, u: tf.Tensor) -> tf.Tensor:
        return tf.math.exp(math.log(self.lower) + self.span * tf.math.sigmoid(u))

    def inverse(self, v: float) -> float:
        p = (math.log(v) - math.log(self.lower)) / self.span
        return math.log(p) - math.log1p(-p)

    def contains(self, v: float) -> bool:
        return self.lower < v < self.upper

    def describe(self) -> str:
        return f"strictly inside ({self.lower}, {self.upper})"

    def value(self, u: np.ndarray | float) -> np.ndarray:
        """λ(u) in NumPy."""
        return np.exp(math.log(self.lower) + self.span * _sigmoid(np.asarray(u, float)))

    def unconstrained(self, v: np.ndarray | float) -> np.ndarray:
        """u(λ) in NumPy (the inverse, vectorised)."""
        p = (np.log(np.asarray(v, float)) - math.log(self.lower)) / self.span
        return np.log(p) - np.log1p(-p)

    def log_slope(self, u: np.ndarray | float) -> np.ndarray:
        """d log λ / du = span·sigmoid(u)·(1 − sigmoid(u))."""
        s = _sigmoid(np.asarray(u, float))
        return self.span * s * (1 - s)

    def slope(self, u: np.ndarray | float) -> np.ndarray:
        """dλ/du = λ(u)·d log λ/du."""
        return self.value(u) * self.log_slope(u)


def _sigmoid(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * u))


def weight_decay_spec(
    initial: float = 1e-3, lower: float = 1e-4, upper: float = 10.0, scale: float = 0.5
) -> HyperparameterSpec:
    """The weight decay λ on a log scale inside (lower, upper)."""
    return HyperparameterSpec(
        "weight_decay", initial, transform=LogInterval(lower, upper), scale=scale
    )


# -- the problem and its closed forms -----------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RidgeProblem:
    """Training and validation sets of a linear regression, with an intercept column appended
    (``x_train`` is [n, d + 1], the last column ones), and the closed forms of the module
    docstring. Every ``lam`` argument may be a scalar or a 1-D array (a row per value)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray

    @property
    def n_features(self) -> int:
        """d, the kernel's length (θ has d + 1 entries)."""
        return self.x_train.shape[1] - 1

    @functools.cached_property
    def penalty(self) -> np.ndarray:
        """P = diag(1, …, 1, 0): the kernel is decayed, the bias is not."""
        return np.diag(np.r_[np.ones(self.n_features), 0.0])

    @functools.cached_property
    def gram(self) -> tuple[np.ndarray, np.ndarray]:
        """A = X̃ᵀX̃/n and c = X̃ᵀy/n of the training set."""
        n = len(self.y_train)
        return self.x_train.T @ self.x_train / n, self.x_train.T @ self.y_train / n

    @functools.cached_property
    def valid_gram(self) -> tuple[np.ndarray, np.ndarray]:
        """A_v = X̃_vᵀX̃_v/m and c_v = X̃_vᵀy_v/m of the validation set."""
        m = len(self.y_valid)
        return self.x_valid.T @ self.x_valid / m, self.x_valid.T @ self.y_valid / m

    def train_loss(self, theta: np.ndarray, lam: float) -> float:
        """f(λ, θ) = mean squared error + λ·‖w‖²."""
        r = self.x_train @ theta - self.y_train
        return float(np.mean(r**2) + lam * theta @ self.penalty @ theta)

    def valid_loss(self, theta: np.ndarray) -> np.ndarray:
        """F(θ) = mean squared error on the validation set (θ: [..., d + 1]), computed as
        θᵀA_vθ − 2c_vᵀθ + mean(y_v²)."""
        a, c = self.valid_gram
        theta = np.asarray(theta, float)
        return np.sum((theta @ a) * theta, axis=-1) - 2 * theta @ c + np.mean(self.y_valid**2)

    def valid_gradient(self, theta: np.ndarray) -> np.ndarray:
        """∇F(θ) = 2(A_v θ − c_v)."""
        a, c = self.valid_gram
        return 2 * (np.asarray(theta) @ a - c)

    @functools.cached_property
    def spectrum(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, z, μ) with θ*(λ) = B·(z / (1 + λμ)) for every λ: with A = LLᵀ and
        L⁻¹PL⁻ᵀ = QMQᵀ (M = diag μ), A + λP = L Q (I + λM) Qᵀ Lᵀ, B = L⁻ᵀQ, z = QᵀL⁻¹c."""
        a, c = self.gram
        chol = np.linalg.cholesky(a)
        inner = np.linalg.solve(chol, np.linalg.solve(chol, self.penalty).T)
        mu, q = np.linalg.eigh((inner + inner.T) / 2)
        basis = np.linalg.solve(chol.T, q)
        return basis, q.T @ np.linalg.solve(chol, c), mu

    def best_response(self, lam: np.ndarray | float) -> np.ndarray:
        """θ*(λ) = (A + λP)⁻¹ c (computed through :attr:`spectrum`)."""
        basis, z, mu = self.spectrum
        lam = np.asarray(lam, float)[..., None]
        return (z / (1 + lam * mu)) @ basis.T

    def best_response_slope(self, lam: np.ndarray | float) -> np.ndarray:
        """dθ*/dλ = −(A + λP)⁻¹ P θ*(λ) = −B·(μz / (1 + λμ)²)."""
        basis, z, mu = self.spectrum
        lam = np.asarray(lam, float)[..., None]
        return (-mu * z / (1 + lam * mu) ** 2) @ basis.T

    def valid_loss_at(self, lam: np.ndarray | float) -> np.ndarray:
        """F(θ*(λ)), the validation loss of the exact best response."""
        return self.valid_loss(self.best_response(lam))

    def hypergradient(self, lam: np.ndarray | float) -> np.ndarray:
        """d/dλ F(θ*(λ)) = ∇F(θ*)ᵀ dθ*/dλ."""
        g = self.valid_gradient(self.best_response(lam))
        return np.sum(g * self.best_response_slope(lam), axis=-1)

    def optimum(self, lower: float, upper: float, points: int = 2001) -> float:
        """λ* = argmin F(θ*(λ)) in [lower, upper]: the best point of a grid uniform in log λ,
        refined between its neighbours by the root of the exact hypergradient (or by a bounded
        scalar minimisation if it does not change sign there, as at a bound)."""
        logs = np.linspace(math.log(lower), math.log(upper), points)
        i = int(np.argmin(self.valid_loss_at(np.exp(logs))))
        lo, hi = logs[max(i - 1, 0)], logs[min(i + 1, points - 1)]

        def slope(t: float) -> float:
            return float(self.hypergradient(math.exp(t)))

        if slope(lo) < 0 < slope(hi):
            return math.exp(optimize.brentq(slope, lo, hi, xtol=1e-14))
        result = optimize.minimize_scalar(
            lambda t: float(self.valid_loss_at(math.exp(t))),
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-10},
        )
        return math.exp(result.x)

    def smoothed_objective(
        self, u: np.ndarray | float, sigma: float, transform: LogInterval, nodes: int = 61
    ) -> np.ndarray:
        """E_ε F(θ*(λ(u + ε))), ε ~ N(0, σ²), by Gauss–Hermite quadrature."""
        x, w = gauss_hermite(nodes)
        u = np.asarray(u, float)
        lam = transform.value(u[..., None] + sigma * x)
        return self.valid_loss_at(lam) @ w

    def smoothed_optimum(self, sigma: float, transform: LogInterval) -> float:
        """The λ that minimises the smoothed objective at perturbation scale σ (in u)."""
        us = np.linspace(-8, 8, 801)
        i = int(np.argmin(self.smoothed_objective(us, sigma, transform)))
        result = optimize.minimize_scalar(
            lambda t: float(self.smoothed_objective(t, sigma, transform)),
            bounds=(us[max(i - 1, 0)], us[min(i + 1, len(us) - 1)]),
            method="bounded",
            options={"xatol": 1e-10},
        )
        return float(transform.value(result.x))

    def stn_equilibrium(
        self, u: float, sigma: float, transform: LogInterval, split: bool, nodes: int = 61
    ) -> tuple[np.ndarray, np.ndarray]:
        """The response (θ₀, s) that minimises the STN's expected training loss at fixed (u, σ):
        E_ε f(λ(u + ε), θ₀ + ε s), each example with its own ε ~ N(0, σ²). With
        a_k = E[λ(u + ε) ε^k] that loss is θ₀ᵀAθ₀ − 2cᵀθ₀ + σ² sᵀAs + a₀θ₀ᵀPθ₀ + 2a₁θ₀ᵀPs
        + a₂sᵀPs + const. Jointly (``split=False``):
        [[A + a₀P, a₁P], [a₁P, σ²A + a₂P]]·[θ₀; s] = [c; 0]. Delta-STN's split
        (``split=True``) trains θ₀ at ε = 0, so θ₀ = θ*(λ(u)) and s = −a₁(σ²A + a₂P)⁻¹Pθ₀."""
        x, w = gauss_hermite(nodes)
        eps = sigma * x
        lam = transform.value(u + eps)
        a0, a1, a2 = (float(np.sum(w * lam * eps**k)) for k in range(3))
        a, c = self.gram
        p = self.penalty
        if split:
            theta = self.best_response(float(transform.value(u)))
            slope = -a1 * np.linalg.solve(sigma**2 * a + a2 * p, p @ theta)
            return theta, slope
        k = len(c)
        system = np.block([[a + a0 * p, a1 * p], [a1 * p, sigma**2 * a + a2 * p]])
        solution = np.linalg.solve(system, np.r_[c, np.zeros(k)])
        return solution[:k], solution[k:]

    def stn_hypergradient(
        self, u: float, sigma: float, transform: LogInterval, split: bool
    ) -> float:
        """The expected hypergradient dF/du of an STN in equilibrium at (u, σ): ∇F(θ₀)ᵀs
        (F is quadratic and the response affine, so averaging over ε changes nothing)."""
        theta, slope = self.stn_equilibrium(u, sigma, transform, split)
        return float(self.valid_gradient(theta) @ slope)

    def stn_fixed_point(
        self, sigma: float, transform: LogInterval, split: bool, lam_star: float | None = None
    ) -> float:
        """The λ where the equilibrium STN's expected hypergradient vanishes (the root nearest
        λ*, bracketed outward from it): where λ ends at perturbation scale σ. ``lam_star``
        saves recomputing λ* over the transform's bounds."""
        if lam_star is None:
            lam_star = self.optimum(transform.lower, transform.upper)
        start = float(transform.unconstrained(lam_star))

        def g(t: float) -> float:
            return self.stn_hypergradient(t, sigma, transform, split)

        for width in (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 4.0):
            lo, hi = start - width, start + width
            if g(lo) < 0 < g(hi):
                return float(transform.value(optimize.brentq(g, lo, hi, xtol=1e-12)))
        raise ValueError(f"no fixed point of the STN's hypergradient near λ* at sigma={sigma}")


@functools.lru_cache
def gauss_hermite(nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of E[g(X)], X ~ N(0, 1), by Gauss–Hermite quadrature."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    return x, w / w.sum()


def make_problem(
    seed: int = 0,
    n_train: int = 50,
    n_valid: int = 200,
    n_features: int = 25,
    noise: float = 1.0,
    signal: float = 2.0,
) -> RidgeProblem:
    """A seeded regression: x ~ N(0, I_d), y = xᵀw + N(0, noise²), w ~ N(0, signal²/d·I)
    drawn once (so ‖w‖ ≈ signal); training and validation sets from the same distribution."""
    rng = np.random.default_rng(seed)
    w = signal * rng.normal(size=n_features) / math.sqrt(n_features)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.normal(size=(n, n_features))
        return np.c_[x, np.ones(n)], x @ w + noise * rng.normal(size=n)

    x_train, y_train = draw(n_train)
    x_valid, y_valid = draw(n_valid)
    return RidgeProblem(x_train, y_train, x_valid, y_valid)


# -- the hypermodel and the task ----------------------------------------------------------------


class LinearHyperModel(HyperModel):
    """One HyperDense layer with one output: a linear model whose θ responds to λ."""

    def __init__(
        self,
        n_hyper: int,
        generator: tf.random.Generator,
        n_features: int = 25,
        per_unit: bool = True,
        hyper_init: str = "paper",
        name: str = "linear_hypermodel",
    ):
        super().__init__(name=name)
        if n_hyper != 1:
            raise ValueError(f"n_hyper={n_hyper} must be 1: the model reads one hyperparameter")
        self.layer = HyperDense(n_features, 1, 1, generator, per_unit, hyper_init, name="linear")
        self.layers = (self.layer,)

    def __call__(self, x: tf.Tensor, hnet_input: tf.Tensor) -> tf.Tensor:
        """x [batch, d], hnet_input [batch, 1] → prediction [batch, 1]."""
        return self.layer(x, hnet_input)


def layer_response(layer: HyperDense, hnet_input: tf.Tensor) -> tf.Tensor:
    """θ̂ = [kernel; bias] the layer applies to each row of ``hnet_input`` [batch, 1]:
    [W_elem + (hV) W_hyper; b_elem + (hC) b_hyper], shape [batch, d + 1]."""
    hnet_input = tf.convert_to_tensor(hnet_input, layer.w.dtype)
    kernel = layer.w[:, 0] + tf.matmul(hnet_input, layer.v[:, :1]) * layer.w_hyper[:, 0]
    bias = layer.b + tf.matmul(hnet_input, layer.c[:, :1]) * layer.b_hyper
    return tf.concat([kernel, bias], axis=1)


def layer_slope(layer: HyperDense) -> tf.Tensor:
    """dθ̂/dh, the derivative of the response in the hypernetwork input, shape [d + 1]."""
    return tf.concat([layer.v[0, 0] * layer.w_hyper[:, 0], layer.c[0, 0] * layer.b_hyper], 0)


class RidgeTask:
    """A :class:`RidgeProblem` as an STN task: full-batch losses, each example with its own
    perturbed λ and so its own θ̂. Training loss: mean over examples of
    (x̃ᵢᵀθ̂ᵢ − yᵢ)² + λᵢ‖ŵᵢ‖²; validation loss: mean squared error, no penalty.

    The evaluation records ``valid_loss`` F(θ̂(λ)), ``train_mse`` and ``hypergradient``, the
    STN's dF/du = ∇F(θ̂)ᵀ dθ̂/dh at the unperturbed λ, and snapshots [θ̂(λ); dθ̂/dh]."""

    stop_metric = "valid_loss"
    dtype = DEFAULT_DTYPE

    def __init__(self, problem: RidgeProblem, replicas: int = 1):
        if not (isinstance(replicas, int) and replicas >= 1):
            raise ValueError(f"replicas={replicas!r} must be a positive integer")
        self.problem, self.replicas = problem, replicas
        d = problem.n_features

        def constant(a: np.ndarray) -> tf.Tensor:
            return tf.constant(a, self.dtype)

        self.train = (constant(problem.x_train[:, :d]), constant(problem.y_train))
        self.valid = (constant(problem.x_valid[:, :d]), constant(problem.y_valid))
        a_v, c_v = problem.valid_gram
        self.valid_gram = (constant(a_v), constant(c_v))

    def train_batch(self, generator: tf.random.Generator) -> Batch:
        if self.replicas == 1:
            return self.train
        return tuple(tf.tile(t, [self.replicas] + [1] * (t.shape.rank - 1)) for t in self.train)

    def valid_batch(self, generator: tf.random.Generator) -> Batch:
        return self.valid

    def train_loss(
        self,
        model: LinearHyperModel,
        batch: Batch,
        hnet_input: tf.Tensor,
        values: tf.Tensor,
        generator: tf.random.Generator,
    ) -> tf.Tensor:
        x, y = batch
        squared = tf.square(model(x, hnet_input)[:, 0] - y)
        kernel = layer_response(model.layer, hnet_input)[:, :-1]
        penalty = values[:, 0] * tf.reduce_sum(tf.square(kernel), axis=1)
        return tf.reduce_mean(squared + penalty)

    def valid_loss(self, model: LinearHyperModel, batch: Batch, hnet_input: tf.Tensor) -> tf.Tensor:
        x, y = batch
        return tf.reduce_mean(tf.square(model(x, hnet_input)[:, 0] - y))

    def evaluate(
        self, model: LinearHyperModel, hnet_input: Callable[[tf.Tensor | int], tf.Tensor]
    ) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        theta = layer_response(model.layer, hnet_input(1))[0]
        slope = layer_slope(model.layer)
        a_v, c_v = self.valid_gram
        gradient = 2.0 * (tf.linalg.matvec(a_v, theta) - c_v)
        metrics = {
            "valid_loss": self.valid_loss(model, self.valid, hnet_input(self.valid[1].shape[0])),
            "train_mse": self.valid_loss(model, self.train, hnet_input(self.train[1].shape[0])),
            "hypergradient": tf.reduce_sum(gradient * slope),
        }
        return metrics, tf.concat([theta, slope], 0)


# -- the experiment -----------------------------------------------------------------------------

#: Keys of a toy variant that describe the toy's network or data, which the linear model lacks.
TOY_ONLY = ("depth", "width", "activation", "batch_size", "validation_range", "x_range_init")


@dataclass(frozen=True)
class RidgeExperiment(Hypertraining):
    """Every knob of one STN run on the ridge problem: the shared ones and the problem's data,
    bounds and budget. ``variant`` names the STN variant (:data:`stn.experiments.toy.VARIANTS`);
    build one with :func:`ridge_variant`, which applies it."""

    variant: str = "default"  # a name of stn.experiments.toy.VARIANTS
    data_seed: int = 0  # draws the regression's data and true weights
    n_train: int = 50  # training examples
    n_valid: int = 200  # validation examples
    n_features: int = 25  # d, the inputs' dimension
    noise: float = 1.0  # stddev of the targets' noise
    signal: float = 2.0  # the true weights' norm scale: w ~ N(0, signal²/d·I)
    lower: float = 1e-4  # the weight decay λ's lower bound
    upper: float = 10.0  # and its upper bound (log scale in between)
    lambda_init: float = 1e-3  # λ's initial value
    max_cycles: int = 3000  # budget of cycles
    eval_every: int = 10  # cycles between evaluations
    snapshot_every: int = 50  # cycles between snapshots of θ̂ and dθ̂/dh
    replicas: int = 8  # copies of the training set per batch, each with its own perturbed λ
    #: further STNConfig options a variant sets that this dataclass has no field for
    options: dict = field(default_factory=dict)

    def problem(self) -> RidgeProblem:
        return make_problem(
            self.data_seed, self.n_train, self.n_valid, self.n_features, self.noise, self.signal
        )

    def transform(self) -> LogInterval:
        return LogInterval(self.lower, self.upper)

    def config(self) -> STNConfig:
        """The shared settings, the variant's further ``options``, and no early stop."""
        return dataclasses.replace(super().config(), **self.options, target=None)

    def build(self) -> Trainer:
        model_fn = functools.partial(
            LinearHyperModel,
            n_features=self.n_features,
            per_unit=self.per_unit,
            hyper_init=self.hyper_init,
        )
        spec = weight_decay_spec(self.lambda_init, self.lower, self.upper, self.scale_init)
        task = RidgeTask(self.problem(), self.replicas)
        return Trainer(STN(task, [spec], model_fn, self.config(), seed=self.seed))


def ridge_variant(name: str, **overrides: object) -> RidgeExperiment:
    """The ridge experiment with the STN variant ``name`` of :data:`stn.experiments.toy.VARIANTS`
    applied: its hypernetwork and training options, not the toy network's shape (``TOY_ONLY``).
    An option that is no field here but an STNConfig one goes to ``options``; any other is an
    error, so no option of a new variant is dropped silently."""
    if name not in VARIANTS:
        raise ValueError(f"variant={name!r} is unknown; allowed: {', '.join(VARIANTS)}")
    mine = {f.name for f in fields(RidgeExperiment)}
    config = {f.name for f in fields(STNConfig)}
    settings, options = {"variant": name}, {}
    for key, value in VARIANTS[name].items():
        if key in TOY_ONLY:
            continue
        if key in mine:
            settings[key] = value
        elif key in config:
            options[key] = value
        else:
            raise ValueError(f"variant {name!r} sets {key}={value!r}, which the ridge task lacks")
    unknown = sorted(set(overrides) - mine)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; allowed: {', '.join(sorted(mine))}")
    return RidgeExperiment(**{**settings, "options": options, **overrides})


@dataclass(frozen=True)
class BestResponseSettings(Settings):
    """The best-response notebook's settings: the ridge problem, the STN, the claims' bounds
    and the toy explorer."""

    variants: list[str] = setting(min_length=1, unique=True, items={"choices": VARIANTS})
    n_seeds: int = setting(ge=1)
    max_cycles: int = setting(ge=1)
    data_seed: int = setting(ge=0)
    n_train: int = setting(ge=1)
    n_valid: int = setting(ge=1)
    n_features: int = setting(ge=1)
    noise: float = setting(gt=0)
    signal: float = setting(gt=0)
    lower: float = setting(gt=0)
    upper: float = setting(gt=0)
    lambda_init: float = setting(gt=0)
    weight_lr: float = setting(gt=0)
    hyper_lr: float = setting(gt=0)
    scale_lr: float = setting(gt=0)
    entropy_weight: float = setting(ge=0)
    scale_init: float = setting(gt=0)
    replicas: int = setting(ge=1)
    window_decades: float = setting(gt=0)
    fixed_scales: list[float] = setting(min_length=1, unique=True, items={"gt": 0})
    fixed_seeds: int = setting(ge=1)
    min_decades: float = setting(ge=0)
    fd_tolerance: float = setting(gt=0)
    max_response_error: float = setting(gt=0)
    min_slope_cosine: float = setting(ge=-1, le=1)
    sign_floor: float = setting(gt=0, lt=1)
    min_sign_agreement: float = setting(ge=0, le=1)
    min_correlation: float = setting(ge=-1, le=1)
    band_sigmas: float = setting(gt=0)
    sigma_factor: float = setting(ge=1)
    prediction_band: float = setting(gt=0)
    toy_variant: str = setting(choices=VARIANTS)
    toy_seed: int = setting(ge=0)
    toy_cycles: int = setting(ge=1)
    toy_low: float = setting(gt=0)
    toy_high: float = setting(gt=0)
    toy_points: int = setting(ge=2)
    toy_seeds: int = setting(ge=1)
    loss_factor: float = setting(gt=1)
    range_factor: float = setting(gt=1)
    output_dir: str = setting()

    def check_together(self) -> None:
        if not self.lower < self.lambda_init < self.upper:
            raise ValueError(
                f"lambda_init={self.lambda_init!r} is not allowed; it must lie strictly between "
                f"lower={self.lower!r} and upper={self.upper!r}"
            )
        if not self.toy_low < self.toy_high:
            raise ValueError(
                f"toy_low={self.toy_low!r} is not allowed; it must be below "
                f"toy_high={self.toy_high!r}"
            )

    def ridge_experiments(self) -> dict[str, RidgeExperiment]:
        """The ridge experiment of each STN variant compared, with these settings."""
        known = {f.name for f in fields(RidgeExperiment)} - {"variant", "options"}
        settings = {k: v for k, v in asdict(self).items() if k in known}
        return {name: ridge_variant(name, **settings) for name in self.variants}


# -- measurements of a trained STN --------------------------------------------------------------

#: The scale learning rate of runs whose perturbation scale σ is held fixed (STNConfig needs a
#: positive rate; Adam moves s by about this much per step, so σ stays put to ~1e-8).
FROZEN_SCALE_LR = 1e-12


def network_input(trainer: Trainer, u: np.ndarray | float) -> np.ndarray:
    """The hypernetwork input [k, 1] at unconstrained values ``u`` with φ frozen at the current
    λ: u itself, or u − u_now for a centered network (whose input is (λ + ε) − sg(λ))."""
    u = np.atleast_1d(np.asarray(u, float))
    if trainer.config.hypernet_input == "centered":
        u = u - float(trainer.hyperparameters.unconstrained.numpy()[0])
    return u[:, None]


def read_response(trainer: Trainer, u: np.ndarray | float) -> np.ndarray:
    """θ̂_φ at unconstrained values ``u`` [k] (φ frozen), read off the layer: [k, d + 1]."""
    return layer_response(trainer.model.layer, network_input(trainer, u)).numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The cosine of the angle between two vectors."""
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def relative_error(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """‖estimate − truth‖ / ‖truth‖ along the last axis."""
    return np.linalg.norm(estimate - truth, axis=-1) / np.linalg.norm(truth, axis=-1)


def response_curves(
    trainer: Trainer,
    problem: RidgeProblem,
    transform: LogInterval,
    decades: float,
    points: int = 41,
) -> dict[str, np.ndarray]:
    """θ̂_φ(λ) and θ*(λ), with their validation losses, over ``decades`` either side of the
    current λ in log10 λ (clipped to the bounds), φ frozen."""
    lam_now = float(trainer.hyperparameters.values().numpy()[0])
    inside = 1e-6 * (math.log10(transform.upper) - math.log10(transform.lower))
    lo = max(math.log10(lam_now) - decades, math.log10(transform.lower) + inside)
    hi = min(math.log10(lam_now) + decades, math.log10(transform.upper) - inside)
    lam = 10.0 ** np.linspace(lo, hi, points)
    stn_theta = read_response(trainer, transform.unconstrained(lam))
    true_theta = problem.best_response(lam)
    return {
        "lam": lam,
        "stn_theta": stn_theta,
        "true_theta": true_theta,
        "stn_loss": problem.valid_loss(stn_theta),
        "true_loss": problem.valid_loss(true_theta),
    }


def along_the_run(
    trajectory: Trajectory, problem: RidgeProblem, transform: LogInterval
) -> dict[str, np.ndarray]:
    """The run against the closed forms at every evaluation: the STN's hypergradient and the
    exact one, both per log λ (each evaluation follows the hyperparameter steps of its cycle);
    and the response [θ̂; dθ̂/dh] of every snapshot against θ*(λ) and dθ*/dλ."""
    lam_run = trajectory.values[trajectory.eval_cycles - 1, 0]
    stn_grad = trajectory.metrics["hypergradient"] / transform.log_slope(
        transform.unconstrained(lam_run)
    )
    k = problem.n_features + 1
    lam_snap = trajectory.values[trajectory.snapshot_cycles - 1, 0]
    snap_theta, snap_slope = trajectory.snapshots[:, :k], trajectory.snapshots[:, k:]
    snap_true_slope = problem.best_response_slope(lam_snap)
    return {
        "eval_cycles": trajectory.eval_cycles,
        "lam": lam_run,
        "stn_hypergradient": stn_grad,
        "true_hypergradient": lam_run * problem.hypergradient(lam_run),
        "snapshot_cycles": trajectory.snapshot_cycles,
        "response_error": relative_error(snap_theta, problem.best_response(lam_snap)),
        "slope_cosine": np.array(
            [cosine(a, b) for a, b in zip(snap_slope, snap_true_slope, strict=True)]
        ),
    }


def measure_run(
    trainer: Trainer,
    trajectory: Trajectory,
    problem: RidgeProblem,
    transform: LogInterval,
    lam_star: float,
    split: bool,
    decades: float = 1.0,
) -> dict[str, object]:
    """One finished run against the closed forms: (a) the response θ̂ and its slope
    dθ̂/dλ = (dθ̂/dh)/(dλ/du) at the final λ against θ*(λ) and dθ*/dλ, and as ``curves`` over
    ``decades`` either side; (b) the hypergradient along the ``run``, dF/du/(d log λ/du),
    against the exact λ·dF(θ*)/dλ; (c) λ_final against λ*, against the fixed point of an STN in
    equilibrium at the final σ (``lambda_predicted``) and against the minimiser of the smoothed
    objective E_ε F(θ*(λ(u + ε))) (``lambda_smoothed``); σ_final against the scale at which the
    entropy term balances the perturbation's cost, σ² = τ/(2 sᵀA_v s), s the slope in u."""
    u = float(trainer.hyperparameters.unconstrained.numpy()[0])
    lam = float(transform.value(u))
    sigma = float(trajectory.stddev[-1, 0])
    eq_theta, eq_slope = problem.stn_equilibrium(u, sigma, transform, split)
    a_v, _ = problem.valid_gram
    tau = trainer.config.entropy_weight
    predicted = problem.stn_fixed_point(sigma, transform, split, lam_star)
    return {
        "seed": trainer.stn.seed,
        "lambda_final": lam,
        "lambda_star": lam_star,
        "lambda_predicted": predicted,
        "lambda_smoothed": problem.smoothed_optimum(sigma, transform),
        "sigma_final": sigma,
        "sigma_predicted": math.sqrt(tau / (2 * eq_slope @ a_v @ eq_slope)) if tau else 0.0,
        "log_lambda_per_u": float(transform.log_slope(u)),
        "log_error": math.log(lam / lam_star),
        "log_error_predicted": math.log(lam / predicted),
        **response_measures(trainer, problem, transform, u, eq_theta, eq_slope),
        "valid_loss_star": float(problem.valid_loss_at(lam_star)),
        "run": along_the_run(trajectory, problem, transform),
        "curves": response_curves(trainer, problem, transform, decades),
    }


def response_measures(
    trainer: Trainer,
    problem: RidgeProblem,
    transform: LogInterval,
    u: float,
    eq_theta: np.ndarray,
    eq_slope: np.ndarray,
) -> dict[str, float]:
    """Part (a) of :func:`measure_run`: the response θ̂ and its slope at ``u`` against the best
    response θ*(λ) and against the STN's equilibrium (``eq_theta``, ``eq_slope`` in u)."""
    lam = float(transform.value(u))
    theta = read_response(trainer, u)[0]
    slope_u = layer_slope(trainer.model.layer).numpy()
    slope_lam = slope_u / float(transform.slope(u))
    true_theta, true_slope = problem.best_response(lam), problem.best_response_slope(lam)
    return {
        "response_error": float(relative_error(theta, true_theta)),
        "slope_cosine": cosine(slope_lam, true_slope),
        "slope_ratio": float(np.linalg.norm(slope_lam) / np.linalg.norm(true_slope)),
        "equilibrium_response_error": float(relative_error(theta, eq_theta)),
        "equilibrium_slope_cosine": cosine(slope_u, eq_slope),
        "valid_loss_final": float(problem.valid_loss(theta)),
    }


def hypergradient_agreement(stn: np.ndarray, exact: np.ndarray, floor: float) -> dict[str, float]:
    """Sign agreement where |exact| exceeds ``floor`` times its largest value (below, its sign
    is a coin toss at the STN's noise), the Pearson correlation over every point, and the
    median relative error |stn − exact|/|exact| where |exact| exceeds the floor."""
    exact, stn = np.asarray(exact, float), np.asarray(stn, float)
    mask = np.abs(exact) > floor * np.max(np.abs(exact))
    return {
        "points": int(mask.sum()),
        "sign_agreement": float(np.mean(np.sign(stn[mask]) == np.sign(exact[mask]))),
        "correlation": float(np.corrcoef(stn, exact)[0, 1]),
        "median_relative_error": float(
            np.median(np.abs(stn[mask] - exact[mask]) / np.abs(exact[mask]))
        ),
    }


def run_seeds(
    experiment: RidgeExperiment,
    seeds: Iterable[int],
    scales: Sequence[float | None] = (None,),
    decades: float = 1.0,
    progress: bool = True,
) -> list[dict[str, object]]:
    """Run ``experiment`` once per seed and scale (one compiled graph, reset in place) and
    measure each run with :func:`measure_run`. A scale σ replaces the initial perturbation
    scale after each reset (None: the experiment's ``scale_init``); with the scale learning
    rate at :data:`FROZEN_SCALE_LR`, it stays there. Rows carry ``variant`` and ``scale``."""
    problem, transform = experiment.problem(), experiment.transform()
    lam_star = problem.optimum(experiment.lower, experiment.upper)
    trainer = experiment.build()
    hp = trainer.hyperparameters
    rows = []
    points = [(scale, seed) for scale in scales for seed in seeds]
    for scale, seed in progress_bar(points, progress, desc=experiment.variant, unit="run"):
        trainer.reset(seed)
        if scale is not None:
            hp.scale.assign([inverse_softplus(scale)])
        trajectory = trainer.run()
        row = measure_run(
            trainer,
            trajectory,
            problem,
            transform,
            lam_star,
            experiment.weight_step != "joint",
            decades,
        )
        rows.append({"variant": experiment.variant, "scale": scale, **row})
    return rows


#: The per-seed numbers summarised by :func:`summarise` (median, minimum and maximum).
SUMMARISED = (
    "response_error",
    "slope_cosine",
    "slope_ratio",
    "log_error",
    "log_error_predicted",
    "sigma_final",
    "sigma_predicted",
)


def summarise(rows: Sequence[dict], sign_floor: float) -> dict[str, object]:
    """Median, minimum and maximum over seeds of each number of :data:`SUMMARISED`, and the
    hypergradient agreement of :func:`hypergradient_agreement` per seed (sign agreement pooled
    over every seed's points, correlation and relative error as medians over seeds)."""
    out: dict[str, object] = {"seeds": len(rows)}
    for key in SUMMARISED:
        values = np.array([r[key] for r in rows], float)
        out[key] = {
            "median": float(np.median(values)),
            "min": float(values.min()),
            "max": float(values.max()),
        }
    agreements = [
        hypergradient_agreement(
            r["run"]["stn_hypergradient"], r["run"]["true_hypergradient"], sign_floor
        )
        for r in rows
    ]
    points = sum(a["points"] for a in agreements)
    out["hypergradient"] = {
        "points": points,
        "sign_agreement": sum(a["sign_agreement"] * a["points"] for a in agreements) / points,
        "correlation_median": float(np.median([a["correlation"] for a in agreements])),
        "correlation_min": float(np.min([a["correlation"] for a in agreements])),
        "median_relative_error": float(np.median([a["median_relative_error"] for a in agreements])),
    }
    return out


def bias_curves(
    problem: RidgeProblem, transform: LogInterval, sigmas: Sequence[float]
) -> dict[str, np.ndarray]:
    """As functions of the perturbation scale σ: the fixed point of an STN in equilibrium with
    the joint weight step (``joint``) and with Delta-STN's split step (``split``), and the
    minimiser of the smoothed objective (``smoothed``); NaN where no fixed point was found."""

    lam_star = problem.optimum(transform.lower, transform.upper)

    def fixed_point(sigma: float, split: bool) -> float:
        try:
            return problem.stn_fixed_point(sigma, transform, split, lam_star)
        except ValueError:
            return math.nan

    sigmas = np.asarray(sigmas, float)
    return {
        "sigma": sigmas,
        "joint": np.array([fixed_point(s, False) for s in sigmas]),
        "split": np.array([fixed_point(s, True) for s in sigmas]),
        "smoothed": np.array([problem.smoothed_optimum(s, transform) for s in sigmas]),
    }


def scalar_rows(rows: Sequence[dict]) -> list[dict[str, object]]:
    """The rows without their arrays (``run``, ``curves``), for a results file."""
    return [{k: v for k, v in r.items() if k not in ("run", "curves")} for r in rows]


# -- the toy's best response, measured ----------------------------------------------------------


class FixedRangeTask:
    """The toy task at a fixed ``x_range`` for ``stn.experiments.baselines.FixedTrainer``: its
    training data, evaluated by the validation loss on the task's grid of [−V, V]."""

    names = ("x_range",)

    def __init__(self, task: ToyTask):
        self.task, self.dtype = task, task.dtype

    def train_batch(self, generator: tf.random.Generator) -> Batch:
        return self.task.train_batch(generator)

    def train_loss(self, model, batch, hnet_input, values, generator) -> tf.Tensor:  # noqa: ANN001
        return self.task.train_loss(model, batch, hnet_input, values, generator)

    def evaluate(self, model: HyperModel, hnet_input: Callable) -> tuple[dict, tf.Tensor]:
        grid = self.task.grid
        prediction = model(grid, None)
        return {"valid_loss": tf.reduce_mean(tf.square(prediction - grid**2))}, prediction


def toy_predicted_losses(trainer: Trainer, x_ranges: Sequence[float]) -> np.ndarray:
    """The validation loss on the task's grid that the frozen hypernetwork predicts at each
    ``x_range``: the network reads the input it would see there (u(x_range), or
    u(x_range) − u_now when centered)."""
    transform = trainer.hyperparameters.transforms[0]
    u = np.array([transform.inverse(float(x)) for x in x_ranges])
    grid = trainer.task.grid
    target = (grid**2).numpy()[:, 0]
    losses = []
    for h in network_input(trainer, u)[:, 0]:
        hnet = tf.fill([grid.shape[0], 1], tf.constant(h, trainer.hyperparameters.dtype))
        prediction = trainer.model(grid, hnet).numpy()[:, 0]
        losses.append(float(np.mean((prediction - target) ** 2)))
    return np.array(losses)


def toy_ground_truth(
    experiment: ToyExperiment,
    x_ranges: Sequence[float],
    seeds: Sequence[int],
    steps: int,
    progress: bool = False,
) -> np.ndarray:
    """Validation loss on the grid of plain networks (the experiment's depth, width and
    activation) trained from scratch for ``steps`` Adam steps at each fixed ``x_range``:
    shape [len(x_ranges), len(seeds)]."""
    model_fn = functools.partial(
        ToyHyperNet,
        depth=experiment.depth,
        width=experiment.width,
        activation=experiment.activation,
        hyper=False,
    )
    trainer = FixedTrainer(
        FixedRangeTask(experiment.task()),
        [x_range_spec()],
        model_fn,
        learning_rate=experiment.weight_lr,
        eval_every_steps=steps,
        jit_compile=experiment.jit_compile,
    )
    losses = np.empty((len(x_ranges), len(seeds)))
    points = [(i, j) for i in range(len(x_ranges)) for j in range(len(seeds))]
    for i, j in progress_bar(points, progress, desc="fixed x_range", unit="run"):
        run = trainer.run({"x_range": float(x_ranges[i])}, steps, seed=int(seeds[j]))
        losses[i, j] = run.metrics["valid_loss"][-1]
    return losses


def toy_sweep(
    experiment: ToyExperiment,
    trainer: Trainer,
    trajectory: Trajectory,
    x_ranges: Sequence[float],
    seeds: Sequence[int],
    progress: bool = False,
) -> dict[str, object]:
    """The toy run's predicted validation loss (φ frozen) and the ground truth (plain networks
    trained from scratch for as many weight steps as the run took) at each ``x_range`` and
    at the run's final value, which joins the grid."""
    x_final = float(trajectory.final()["x_range"])
    grid = np.unique(np.r_[np.asarray(x_ranges, float), x_final])
    steps = experiment.warmup_steps + experiment.train_steps * trajectory.cycles
    return {
        "x_range": grid,
        "x_final": x_final,
        "steps": steps,
        "predicted": toy_predicted_losses(trainer, grid),
        "truth": toy_ground_truth(experiment, grid, seeds, steps, progress),
    }


def agreement_interval(
    x: np.ndarray, predicted: np.ndarray, truth: np.ndarray, at: float, factor: float
) -> tuple[float, float]:
    """The widest run of grid points containing ``at`` on which the prediction lies within
    ``factor`` of the truth (either way); (nan, nan) if it does not hold at ``at`` itself."""
    good = np.abs(np.log(np.asarray(predicted) / np.asarray(truth))) <= math.log(factor)
    i = int(np.argmin(np.abs(np.asarray(x) - at)))
    if not good[i]:
        return math.nan, math.nan
    lo = hi = i
    while lo > 0 and good[lo - 1]:
        lo -= 1
    while hi < len(x) - 1 and good[hi + 1]:
        hi += 1
    return float(x[lo]), float(x[hi])
