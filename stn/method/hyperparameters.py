"""Hyperparameter spaces, their transforms, and the perturbed hyperparameter container.

A hyperparameter lives in two spaces (the design document's *h_space* and *m_space*):
the constrained value that changes behaviour (a dropout rate, the toy's ``x_range``) and an
unconstrained value in R that the optimizer updates and the hypernetwork reads. A transform maps
one to the other; the container draws the per-example perturbation ε ~ N(0, softplus(s)²).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import tensorflow as tf

from stn.util.checks import is_positive_int

#: The precision of the toy problem and of every model unless told otherwise (the real-data
#: experiments choose theirs: ``RealDataExperiment.dtype``).
DEFAULT_DTYPE = tf.float64


class Transform:
    """An invertible map between R (unconstrained) and a hyperparameter's constrained space."""

    def forward(self, u: tf.Tensor) -> tf.Tensor:
        """Unconstrained → constrained."""
        raise NotImplementedError

    def inverse(self, v: float) -> float:
        """Constrained → unconstrained (used once, at initialisation)."""
        raise NotImplementedError

    def contains(self, v: float) -> bool:
        """Whether ``v`` lies strictly inside the constrained space."""
        return math.isfinite(v)

    def describe(self) -> str:
        return "a finite number"


class Identity(Transform):
    """No bounds: the value is its own unconstrained representation."""

    def forward(self, u: tf.Tensor) -> tf.Tensor:
        return u

    def inverse(self, v: float) -> float:
        return float(v)


@dataclass(frozen=True)
class ScaledSigmoid(Transform):
    """Two bounds: v = (hi − lo)·sigmoid(u) + lo, inverse u = log(v − lo) − log(hi − v).

    The forward value is clipped to [lo, hi] (a saturated sigmoid can round past ``hi``), and the
    inverse avoids forming (v − lo)/(hi − lo), which rounds to 0 or 1 next to a bound."""

    lower: float
    upper: float

    def forward(self, u: tf.Tensor) -> tf.Tensor:
        v = (self.upper - self.lower) * tf.math.sigmoid(u) + self.lower
        return tf.clip_by_value(v, self.lower, self.upper)

    def inverse(self, v: float) -> float:
        return math.log(v - self.lower) - math.log(self.upper - v)

    def contains(self, v: float) -> bool:
        return self.lower < v < self.upper

    def describe(self) -> str:
        return f"strictly inside ({self.lower}, {self.upper})"


@dataclass(frozen=True)
class LowerSoftplus(Transform):
    """Lower bound only: v = lo + softplus(u)."""

    lower: float

    def forward(self, u: tf.Tensor) -> tf.Tensor:
        return self.lower + tf.math.softplus(u)

    def inverse(self, v: float) -> float:
        return inverse_softplus(v - self.lower)

    def contains(self, v: float) -> bool:
        return self.lower < v < math.inf

    def describe(self) -> str:
        return f"strictly above {self.lower}"


@dataclass(frozen=True)
class UpperSoftplus(Transform):
    """Upper bound only: v = hi − softplus(u)."""

    upper: float

    def forward(self, u: tf.Tensor) -> tf.Tensor:
        return self.upper - tf.math.softplus(u)

    def inverse(self, v: float) -> float:
        return inverse_softplus(self.upper - v)

    def contains(self, v: float) -> bool:
        return -math.inf < v < self.upper

    def describe(self) -> str:
        return f"strictly below {self.upper}"


@dataclass(frozen=True)
class Exponential(Transform):
    """Positive values on a log scale: v = exp(u) (an explicit alternative to softplus)."""

    def forward(self, u: tf.Tensor) -> tf.Tensor:
        return tf.math.exp(u)

    def inverse(self, v: float) -> float:
        return math.log(v)

    def contains(self, v: float) -> bool:
        return 0.0 < v < math.inf

    def describe(self) -> str:
        return "strictly above 0"


TRANSFORMS = ("sigmoid", "softplus", "exp", "identity")


def inverse_softplus(x: float) -> float:
    """log(exp(x) − 1), stable for large x; the official code's scale initialisation."""
    if x <= 0:
        raise ValueError(f"inverse_softplus needs x > 0, got {x}")
    return x + math.log(-math.expm1(-x))


def make_transform(
    lower: float | None, upper: float | None, transform: str | Transform | None, name: str
) -> Transform:
    """The design document's map for the given bounds, or the explicitly requested one."""
    if isinstance(transform, Transform):
        return transform
    if transform is not None and transform not in TRANSFORMS:
        raise ValueError(
            f"hyperparameter {name!r}: transform={transform!r} is unknown; "
            f"allowed: {', '.join(TRANSFORMS)} or a stn.method.hyperparameters.Transform instance"
        )
    if transform is None:
        if lower is not None and upper is not None:
            transform = "sigmoid"
        elif lower is not None or upper is not None:
            transform = "softplus"
        else:
            transform = "identity"
    if transform == "sigmoid":
        if lower is None or upper is None:
            raise ValueError(
                f"hyperparameter {name!r}: transform='sigmoid' needs both bounds, "
                f"got lower={lower}, upper={upper}"
            )
        return ScaledSigmoid(float(lower), float(upper))
    if transform == "softplus":
        if (lower is None) == (upper is None):
            raise ValueError(
                f"hyperparameter {name!r}: transform='softplus' needs exactly one bound, "
                f"got lower={lower}, upper={upper}"
            )
        return LowerSoftplus(float(lower)) if lower is not None else UpperSoftplus(float(upper))
    if lower is not None or upper is not None:
        raise ValueError(
            f"hyperparameter {name!r}: transform={transform!r} takes no bounds, "
            f"got lower={lower}, upper={upper}; use 'sigmoid' or 'softplus' for bounded values"
        )
    return Exponential() if transform == "exp" else Identity()


@dataclass(frozen=True)
class HyperparameterSpec:
    """One hyperparameter: its name, initial value, space and initial perturbation scale σ0."""

    name: str
    initial: float
    lower: float | None = None
    upper: float | None = None
    transform: str | Transform | None = None
    scale: float = 0.5
    discrete: bool = False

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"name={self.name!r} must be a non-empty string")
        for field in ("initial", "lower", "upper", "scale"):
            value = getattr(self, field)
            if value is not None and not (isinstance(value, int | float) and math.isfinite(value)):
                raise ValueError(
                    f"hyperparameter {self.name!r}: {field}={value!r} must be a finite number"
                )
        if self.lower is not None and self.upper is not None and self.lower >= self.upper:
            raise ValueError(
                f"hyperparameter {self.name!r}: lower={self.lower} must be below upper={self.upper}"
            )
        if self.scale <= 0:
            raise ValueError(
                f"hyperparameter {self.name!r}: scale={self.scale} must be a positive number"
            )
        space = self.space
        if not space.contains(self.initial):
            raise ValueError(
                f"hyperparameter {self.name!r}: initial={self.initial} is not allowed; "
                f"it must be {space.describe()}"
            )

    @property
    def space(self) -> Transform:
        return make_transform(self.lower, self.upper, self.transform, self.name)


class Hyperparameters(tf.Module):
    """The hyperparameters λ (unconstrained), their scales s, perturbations and entropy.

    Batch tensors have one row per example and one column per hyperparameter; their batch size is
    whatever the caller passes, never stored.
    """

    def __init__(
        self,
        specs: Sequence[HyperparameterSpec],
        population: int | None = None,
        dtype: tf.DType = DEFAULT_DTYPE,
        name: str = "hyperparameters",
    ):
        super().__init__(name=name)
        if population is not None and not is_positive_int(population):
            raise ValueError(f"population={population!r} must be a positive integer or None")
        self.population = population
        if not specs:
            raise ValueError("specs=[] is not allowed: give at least one HyperparameterSpec")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"specs have duplicate names {names}; names must be unique")
        self.specs = tuple(specs)
        self.transforms = tuple(s.space for s in specs)
        initial, scale = self._initial()
        self.unconstrained = tf.Variable(initial, dtype=dtype, name="unconstrained")
        self.scale = tf.Variable(scale, dtype=dtype, name="scale")

    def _initial(self) -> tuple[list, list]:
        """The specs' initial λ (unconstrained) and s, one row per member in a population."""
        specs = self.specs
        initial = [t.inverse(s.initial) for s, t in zip(specs, self.transforms, strict=True)]
        scale = [inverse_softplus(s.scale) for s in specs]
        if self.population is not None:  # one row per member: [P, H]
            initial, scale = [initial] * self.population, [scale] * self.population
        return initial, scale

    def reset(self) -> None:
        """λ and s back to the specs' initial values, in place."""
        initial, scale = self._initial()
        self.unconstrained.assign(tf.constant(initial, self.dtype))
        self.scale.assign(tf.constant(scale, self.dtype))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    @property
    def dtype(self) -> tf.DType:
        """The precision of λ, s and their perturbations (the model's)."""
        return self.unconstrained.dtype

    @property
    def size(self) -> int:
        return len(self.specs)

    def stddev(self) -> tf.Tensor:
        """The perturbation standard deviation softplus(s), one per hyperparameter."""
        return tf.math.softplus(self.scale)

    def per_example(self, x: tf.Tensor) -> tf.Tensor:
        """A per-hyperparameter tensor ([H], or [P, H] in a population) shaped to broadcast over
        a batch ([batch, H], or [P, batch, H])."""
        return x if self.population is None else x[:, tf.newaxis, :]

    def perturbed(self, noise: tf.Tensor) -> tf.Tensor:
        """λ + softplus(s)·n for standard-normal noise n of shape [batch, H] ([P, batch, H])."""
        return self.per_example(self.unconstrained) + self.per_example(self.stddev()) * noise

    def sample(self, batch_size: tf.Tensor | int, generator: tf.random.Generator) -> tf.Tensor:
        """Unconstrained batch λ + ε, ε ~ N(0, softplus(s)²), one draw per example."""
        noise = generator.normal([batch_size, self.size], dtype=self.dtype)
        return self.perturbed(noise)

    def exact(self, batch_size: tf.Tensor | int) -> tf.Tensor:
        """Unconstrained batch at the unperturbed λ (evaluation mode)."""
        if self.population is None:
            return tf.tile(self.unconstrained[tf.newaxis, :], [batch_size, 1])
        return tf.tile(self.per_example(self.unconstrained), [1, batch_size, 1])

    def constrain(self, unconstrained: tf.Tensor) -> tf.Tensor:
        """Map an unconstrained batch [batch, H] (or vector [H]) to the constrained space."""
        columns = [self._constrain_one(i, unconstrained[..., i]) for i in range(self.size)]
        return tf.stack(columns, axis=-1)

    def _constrain_one(self, i: int, u: tf.Tensor) -> tf.Tensor:
        v = self.transforms[i].forward(u)
        if self.specs[i].discrete:
            v = tf.math.floor(v)
        return v

    def values(self) -> tf.Tensor:
        """The current constrained values, one per hyperparameter."""
        return self.constrain(self.unconstrained)

    def entropy(self) -> tf.Tensor:
        """Entropy of N(0, diag(softplus(s))²): Σ log(softplus(s)·sqrt(2πe)) (one per member
        in a population)."""
        return tf.reduce_sum(
            tf.math.log(self.stddev() * tf.constant(math.sqrt(2 * math.pi * math.e), self.dtype)),
            axis=-1,
        )
