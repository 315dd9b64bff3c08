"""The variants of Algorithm 1 as small strategy objects that :class:`stn.method.stn.STN` holds.

*What the hypernetwork reads* (``STNConfig.hypernet_input``):

* ``plain`` (STN, MacKay et al. 2019): the perturbed hyperparameters λ + ε, and λ at evaluation;
* ``centered`` (Delta-STN, Bae & Grosse 2020): (λ + ε) − stop_gradient(λ), and 0 at evaluation,
  so predictions at λ use the elementary ("general") weights alone.

*How a weight step updates φ* (``STNConfig.weight_step``):

* ``joint``: every weight on the training loss at λ + ε (Algorithm 1);
* ``split``: one gradient tape, one update: the elementary weights on the loss at λ, the hyper
  ("response") weights on the loss at λ + ε;
* ``delta``: Delta-STN as published: first the elementary weights on the loss at λ with their own
  optimizer, then the response weights with a second optimizer on the loss at λ + ε with the
  *linearized* prediction f(x, ŵ(λ)) + J·((λ + ε) − λ), a forward-mode Jacobian-vector product.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import tensorflow as tf

from stn.method.hyperparameters import Hyperparameters
from stn.method.models import Batch, HyperModel
from stn.method.optimizers import FusedOptimizer
from stn.method.population import MemberMask

OptimizerFactory = Callable[[], FusedOptimizer]


class STN(Protocol):
    """What a weight step needs of the self-tuning network (:class:`stn.method.stn.STN`)."""

    model: HyperModel
    hyperparameters: Hyperparameters
    mask: MemberMask | None

    def train_batch(self) -> tuple[Batch, tf.Tensor]: ...

    def batch_size(self, batch: Batch) -> tf.Tensor: ...

    def network_input(self, perturbed: tf.Tensor) -> tf.Tensor: ...

    def train_loss(
        self, batch: Batch, hnet_input: tf.Tensor, unconstrained: tf.Tensor, model=None
    ) -> tf.Tensor: ...


class PlainInput:
    """The hypernetwork reads λ + ε while training and λ at evaluation."""

    def perturbed(self, perturbed: tf.Tensor, unconstrained: tf.Variable) -> tf.Tensor:
        return perturbed

    def exact(self, exact: tf.Tensor) -> tf.Tensor:
        return exact


class CenteredInput:
    """The hypernetwork reads the perturbation (λ + ε) − sg(λ), and 0 at evaluation."""

    def perturbed(self, perturbed: tf.Tensor, unconstrained: tf.Variable) -> tf.Tensor:
        return perturbed - tf.stop_gradient(unconstrained)

    def exact(self, exact: tf.Tensor) -> tf.Tensor:
        return tf.zeros_like(exact)


HYPERNET_INPUTS = {"plain": PlainInput, "centered": CenteredInput}


class JointStep:
    """φ ← φ − α1 ∂f(λ + ε, ŵ_φ(λ + ε))/∂φ for every weight at once."""

    def __init__(self, make_optimizer: OptimizerFactory):
        self.optimizers = (make_optimizer(),)

    def build(self, stn: STN) -> None:
        self.optimizers[0].build(list(stn.model.weights), stn.mask)

    def __call__(self, stn: STN) -> tf.Tensor:
        batch, perturbed = stn.train_batch()
        with tf.GradientTape() as tape:
            loss = stn.train_loss(batch, stn.network_input(perturbed), perturbed)
        variables = list(stn.model.weights)
        grads = tape.gradient(loss, variables)
        self.optimizers[0].apply_gradients(zip(grads, variables, strict=True))
        return loss


class SplitStep(JointStep):
    """Elementary weights on the loss at λ, hyper weights on the loss at λ + ε, in one update
    (both losses on one tape, before either group moves)."""

    def __call__(self, stn: STN) -> tf.Tensor:
        batch, perturbed = stn.train_batch()
        exact = stn.hyperparameters.exact(stn.batch_size(batch))
        with tf.GradientTape(persistent=True) as tape:
            loss = stn.train_loss(batch, stn.network_input(perturbed), perturbed)
            general_loss = stn.train_loss(batch, tf.zeros_like(exact), exact)
        general, response = list(stn.model.elementary_weights), list(stn.model.hyper_weights)
        grads = tape.gradient(general_loss, general) + tape.gradient(loss, response)
        self.optimizers[0].apply_gradients(zip(grads, general + response, strict=True))
        return loss


class LinearizedModel:
    """``model`` with its output linearized in the hypernetwork input around 0 (the unperturbed
    λ of a centered network): called with the perturbation h, it returns f(x, 0) + J_f(x, 0)·h
    from one call of the model (so dropout masks and other draws are shared between the value
    and its derivative). Everything else, such as the kernels a weight-decay penalty reads, is
    the model's own, at the perturbation the task passes.

    J·h is the derivative in u of the vector-Jacobian product uᵀJ, taken along h (reverse mode
    twice). ``tf.autodiff.ForwardAccumulator`` gives the same numbers, but inside an XLA loop
    with a gradient step it makes XLA recompile the chunk on every call (about 10 s and 600
    memory maps each), which ran a 330-run robustness study out of memory maps."""

    def __init__(self, model: tf.Module):
        self.model = model

    def __call__(self, x: tf.Tensor, hnet_input: tf.Tensor, *args, **kwargs) -> tf.Tensor:
        origin = tf.zeros_like(hnet_input)
        zero = tf.UnconnectedGradients.ZERO
        with tf.GradientTape(watch_accessed_variables=False) as outer:
            with tf.GradientTape(watch_accessed_variables=False) as inner:
                inner.watch(origin)
                output = self.model(x, origin, *args, **kwargs)
            u = tf.zeros_like(output)
            outer.watch(u)
            vjp = inner.gradient(output, origin, output_gradients=u, unconnected_gradients=zero)
        jvp = outer.gradient(vjp, u, output_gradients=hnet_input, unconnected_gradients=zero)
        return output + jvp

    def __getattr__(self, name: str) -> object:
        return getattr(self.model, name)


class DeltaStep:
    """Delta-STN's published weight step: general weights at λ, then response weights on the
    linearized prediction at λ + ε, each group with its own optimizer."""

    def __init__(self, make_optimizer: OptimizerFactory):
        self.optimizers = (make_optimizer(), make_optimizer())

    def build(self, stn: STN) -> None:
        self.optimizers[0].build(list(stn.model.elementary_weights), stn.mask)
        self.optimizers[1].build(list(stn.model.hyper_weights), stn.mask)

    def __call__(self, stn: STN) -> tf.Tensor:
        general, response = list(stn.model.elementary_weights), list(stn.model.hyper_weights)
        batch, perturbed = stn.train_batch()
        exact = stn.hyperparameters.exact(stn.batch_size(batch))
        with tf.GradientTape() as tape:
            general_loss = stn.train_loss(batch, tf.zeros_like(exact), exact)
        grads = tape.gradient(general_loss, general)
        self.optimizers[0].apply_gradients(zip(grads, general, strict=True))
        linearized = LinearizedModel(stn.model)
        with tf.GradientTape() as tape:
            loss = stn.train_loss(batch, stn.network_input(perturbed), perturbed, model=linearized)
        grads = tape.gradient(loss, response)
        self.optimizers[1].apply_gradients(zip(grads, response, strict=True))
        return loss


WEIGHT_STEPS = {"joint": JointStep, "split": SplitStep, "delta": DeltaStep}
