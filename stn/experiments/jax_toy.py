"""The toy in JAX: the benchmark's JAX row (install the ``bench`` extra).

It does the work of one of the project's toy runs (:class:`stn.experiments.toy.ToyExperiment`)
per cycle, so its cost compares with the compiled TensorFlow loop: float64 throughout, the same
network (a linear input layer, ``depth`` hidden layers with the activation, a linear output,
every layer's weights affine in λ), the same x_range space, TensorFlow's Adam kernel,
``train_steps`` weight steps on λ + ε and ``valid_steps`` hyperparameter steps on the validation
loss minus τ·entropy per cycle,
and the sup-norm distance on the evaluation grid after each cycle. It covers the variants with
a plain or centered hypernetwork input and a joint or split weight step (Delta-STN's linearized
step is TensorFlow's only).

It is written the way JAX runs fastest on a CPU: ``chunk`` cycles per compiled ``lax.scan``,
with the chunk's random numbers drawn up front, and the tiny matrix products as
broadcast-multiply-sums that XLA fuses. Its random stream is JAX's, so a seed's trajectory
differs from the TensorFlow run's; only the cost is compared.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from stn.experiments.toy import ToyExperiment
from stn.method.layers import HYPER_INIT_STD
from stn.tasks.toy import ToyTask, x_range_spec

jax.config.update("jax_enable_x64", True)

State = dict[str, Any]
ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "leaky_relu": functools.partial(jax.nn.leaky_relu, negative_slope=0.2),  # TF's default
    "tanh": jnp.tanh,
}
#: TensorFlow's Adam (``ApplyAdam``): β1, β2, ε
BETA1, BETA2, EPSILON = 0.9, 0.999, 1e-7


class JaxToy:
    """One toy experiment, compiled ahead of time when built: ``run(seed, cycles)``."""

    def __init__(self, experiment: ToyExperiment, chunk: int = 1000):
        for name, allowed in (
            ("hypernet_input", ("plain", "centered")),
            ("weight_step", ("joint", "split")),
            ("activation", tuple(ACTIVATIONS)),
        ):
            if getattr(experiment, name) not in allowed:
                raise ValueError(
                    f"{name}={getattr(experiment, name)!r} is not in the JAX toy; "
                    f"allowed: {', '.join(allowed)}"
                )
        self.centered = experiment.hypernet_input == "centered"
        self.split = experiment.weight_step == "split"
        if not (isinstance(chunk, int) and chunk > 0):
            raise ValueError(f"chunk={chunk!r} must be a positive integer")
        self.exp, self.chunk_cycles = experiment, chunk
        self.spec = x_range_spec(experiment.x_range_init, experiment.scale_init)
        task: ToyTask = experiment.task()
        self.grid = jnp.asarray(task.grid.numpy())
        sizes = [1, *[experiment.width] * (experiment.depth + 1), 1]
        self.layer_sizes = list(zip(sizes[:-1], sizes[1:], strict=True))
        self.activation = ACTIVATIONS[experiment.activation]
        layers = self._layers(jax.random.PRNGKey(0))
        self._unravel = ravel_pytree(layers)[1]
        #: 1 for the elementary weights W, b of the flat vector, 0 for the hyper weights
        self.elementary = ravel_pytree(
            [{k: jnp.full_like(v, k in ("w", "b")) for k, v in p.items()} for p in layers]
        )[0]
        state = self.init(experiment.seed)
        self.warmup = jax.jit(self._warmup).lower(state).compile()
        self.chunk = jax.jit(self._chunk).lower(state).compile()

    # -- the model -------------------------------------------------------------------------------

    def _layers(self, key: jax.Array) -> list[dict[str, jax.Array]]:
        """W, b, W_hyper, b_hyper ~ U(±1/sqrt(fan_in)); V, C ~ N(0, std²), one scalar per layer
        or per unit, as :class:`stn.method.layers.HyperDense` initialises them."""
        std = HYPER_INIT_STD[self.exp.hyper_init]
        layers = []
        for n_in, n_out in self.layer_sizes:
            key, *k = jax.random.split(key, 7)
            bound = 1.0 / math.sqrt(n_in)
            uniform = functools.partial(jax.random.uniform, minval=-bound, maxval=bound)
            scaled = n_out if self.exp.per_unit else 1
            layers.append(
                dict(
                    w=uniform(k[0], (n_in, n_out)),
                    b=uniform(k[1], (n_out,)),
                    w_hyper=uniform(k[2], (n_in, n_out)),
                    b_hyper=uniform(k[3], (n_out,)),
                    v=std * jax.random.normal(k[4], (1, scaled)),
                    c=std * jax.random.normal(k[5], (1, scaled)),
                )
            )
        return layers

    def model(self, flat: jax.Array, x: jax.Array, lam: jax.Array) -> jax.Array:
        """x [n, 1] and the hypernetwork's input λ [n, 1] → [n, 1]:
        y = x·W + b + (λV) ⊙ (x·W_hyper) + (λC) ⊙ b_hyper per layer."""
        layers = self._unravel(flat)
        for i, p in enumerate(layers):
            x = (
                _matmul(x, p["w"])
                + p["b"]
                + (lam * p["v"]) * _matmul(x, p["w_hyper"])
                + (lam * p["c"]) * p["b_hyper"]
            )
            if 0 < i < len(layers) - 1:
                x = self.activation(x)
        return x

    def x_range(self, u: jax.Array) -> jax.Array:
        """The constrained x_range for unconstrained u (the spec's logistic transform)."""
        lo, hi = self.spec.space.lower, self.spec.space.upper
        return jnp.clip((hi - lo) * jax.nn.sigmoid(u) + lo, lo, hi)

    # -- Algorithm 1 ------------------------------------------------------------------------------

    def network_input(self, lam: jax.Array, u: jax.Array) -> jax.Array:
        """What the hypernetwork reads at λ + ε: itself (plain), or (λ + ε) − sg(λ) (centered)."""
        return lam - jax.lax.stop_gradient(u) if self.centered else lam

    def train_loss(self, flat, u, s, noise, unit):
        """f at λ + ε per example: x = x_range(λ + ε)·U(−1, 1), squared error against x²."""
        lam = u + jax.nn.softplus(s) * noise
        x = self.x_range(lam) * unit
        prediction = self.model(flat, x, self.network_input(lam, u))
        return jnp.mean(jnp.square(prediction - jnp.square(x)))

    def general_loss(self, flat, u, unit):
        """f at the unperturbed λ with the hypernetwork reading 0 (the split step's loss for the
        elementary weights)."""
        x = self.x_range(u) * unit
        prediction = self.model(flat, x, jnp.zeros_like(x))
        return jnp.mean(jnp.square(prediction - jnp.square(x)))

    def hyper_objective(self, u, s, flat, noise, x):
        """F at λ + ε on a validation batch, minus τ times the perturbation's entropy."""
        lam = u + jax.nn.softplus(s) * noise
        prediction = self.model(flat, x, self.network_input(lam, u))
        loss = jnp.mean(jnp.square(prediction - jnp.square(x)))
        entropy = jnp.log(jax.nn.softplus(s) * math.sqrt(2 * math.pi * math.e))
        return loss - self.exp.entropy_weight * entropy

    def weight_step(self, state: State, noise, unit) -> tuple[State, jax.Array]:
        loss, grad = jax.value_and_grad(self.train_loss)(
            state["phi"], state["u"], state["s"], noise, unit
        )
        if self.split:  # the elementary weights descend the loss at λ instead
            general = jax.grad(self.general_loss)(state["phi"], state["u"], unit)
            grad = self.elementary * general + (1 - self.elementary) * grad
        state["phi"], state["phi_adam"] = _adam(
            state["phi"], grad, state["phi_adam"], self.exp.weight_lr
        )
        return state, loss

    def hyper_step(self, state: State, noise, x) -> tuple[State, jax.Array]:
        objective, (grad_u, grad_s) = jax.value_and_grad(self.hyper_objective, (0, 1))(
            state["u"], state["s"], state["phi"], noise, x
        )
        state["u"], state["u_adam"] = _adam(state["u"], grad_u, state["u_adam"], self.exp.hyper_lr)
        state["s"], state["s_adam"] = _adam(state["s"], grad_s, state["s_adam"], self.exp.scale_lr)
        return state, objective

    def cycle(self, state: State, draws: dict[str, jax.Array]) -> tuple[State, jax.Array]:
        """Weight steps, hyperparameter steps, then the distance at the unperturbed λ."""
        state = dict(state)
        for i in range(self.exp.train_steps):
            state, weight_loss = self.weight_step(state, draws["train_noise"][i], draws["unit"][i])
        for i in range(self.exp.valid_steps):
            state, objective = self.hyper_step(state, draws["valid_noise"][i], draws["valid_x"][i])
        exact = jnp.zeros_like(self.grid) if self.centered else jnp.full_like(self.grid, state["u"])
        prediction = self.model(state["phi"], self.grid, exact)
        distance = jnp.max(jnp.abs(jnp.square(self.grid) - prediction))
        stddev = jax.nn.softplus(state["s"])
        return state, jnp.stack(
            [distance, self.x_range(state["u"]), stddev, weight_loss, objective]
        )

    # -- runs -------------------------------------------------------------------------------------

    def init(self, seed: int) -> State:
        """Fresh weights, λ at x_range_init, softplus(s) at scale_init, zeroed Adam slots."""
        init_key, run_key = jax.random.split(jax.random.PRNGKey(seed))
        phi = ravel_pytree(self._layers(init_key))[0]
        u = jnp.asarray(self.spec.space.inverse(self.spec.initial), jnp.float64)
        s = jnp.asarray(math.log(math.expm1(self.spec.scale)), jnp.float64)
        return dict(
            phi=phi, u=u, s=s, key=run_key,
            phi_adam=_adam_slots(phi), u_adam=_adam_slots(u), s_adam=_adam_slots(s),
        )  # fmt: skip

    def _draws(self, key: jax.Array, cycles: int) -> dict[str, jax.Array]:
        """The random numbers of ``cycles`` cycles: per example, a training input on [−1, 1]
        and a perturbation; a validation input on [−V, V] and a perturbation."""
        b, v = self.exp.batch_size, self.exp.validation_range
        k = jax.random.split(key, 4)
        train, valid = (cycles, self.exp.train_steps, b, 1), (cycles, self.exp.valid_steps, b, 1)
        return dict(
            unit=jax.random.uniform(k[0], train, minval=-1.0, maxval=1.0),
            train_noise=jax.random.normal(k[1], train),
            valid_x=jax.random.uniform(k[2], valid, minval=-v, maxval=v),
            valid_noise=jax.random.normal(k[3], valid),
        )

    def _warmup(self, state: State) -> State:
        """``warmup_steps`` weight steps before the first cycle."""
        state = dict(state)
        state["key"], key = jax.random.split(state["key"])
        draws = self._draws(key, max(self.exp.warmup_steps, 1))

        def step(state: State, i: jax.Array) -> tuple[State, None]:
            return self.weight_step(dict(state), draws["train_noise"][i, 0], draws["unit"][i, 0])[
                0
            ], None

        return jax.lax.scan(step, state, jnp.arange(self.exp.warmup_steps))[0]

    def _chunk(self, state: State) -> tuple[State, jax.Array]:
        """``chunk`` cycles in one scan; the record is [chunk, 5]: distance, x_range, stddev,
        the last weight step's loss and the last hyperparameter step's objective."""
        state = dict(state)
        state["key"], key = jax.random.split(state["key"])
        return jax.lax.scan(self.cycle, state, self._draws(key, self.chunk_cycles))

    def run(self, seed: int, cycles: int) -> np.ndarray:
        """A run of ``cycles`` cycles (rounded up to whole chunks) from ``seed``; its record."""
        state = self.warmup(self.init(seed))
        records = []
        for _ in range(-(-cycles // self.chunk_cycles)):
            state, record = self.chunk(state)
            records.append(np.asarray(record))  # waits for the chunk
        return np.concatenate(records)


def time_run(experiment: ToyExperiment, cycles: int, repeats: int) -> dict[str, float]:
    """The JAX toy's costs: its first run of ``cycles`` cycles end to end (building and
    compiling included), its compile time, and its median µs per cycle over ``repeats`` runs
    from fresh seeds."""
    start = time.perf_counter()
    toy = JaxToy(experiment)
    compile_seconds = time.perf_counter() - start
    record = toy.run(experiment.seed, cycles)
    first = time.perf_counter() - start
    samples = []
    for r in range(1, repeats + 1):
        start = time.perf_counter()
        record = toy.run(experiment.seed + r, cycles)
        samples.append((time.perf_counter() - start) / len(record) * 1e6)
    return {
        "us_per_cycle": float(np.median(samples)),
        "us_per_cycle_samples": samples,
        "compile_seconds": compile_seconds,
        "first_run_seconds": first,
        "cycles": len(record),
        "final_distance": float(record[-1, 0]),
    }


def _matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """x [n, k] · w [k, m] as a broadcast-multiply-sum, which XLA fuses at these sizes."""
    return jnp.sum(x[:, :, None] * w[None, :, :], axis=1)


def _adam_slots(p: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """m, v and the step count t."""
    return jnp.zeros_like(p), jnp.zeros_like(p), jnp.zeros((), p.dtype)


def _adam(p, grad, slots, lr: float):
    """TensorFlow's ``ApplyAdam``: ε added to sqrt(v), the bias correction folded into the
    step size lr·sqrt(1 − β2^t)/(1 − β1^t)."""
    m, v, t = slots
    t = t + 1
    m = m + (grad - m) * (1 - BETA1)
    v = v + (jnp.square(grad) - v) * (1 - BETA2)
    step = lr * jnp.sqrt(1 - BETA2**t) / (1 - BETA1**t)
    return p - step * m / (jnp.sqrt(v) + EPSILON), (m, v, t)
