"""The three optimizers of Algorithm 1, applied with TensorFlow's fused training kernels.

Keras optimizers rebuild their update from a dozen small ops per variable (and recompute β^t per
variable), which dominates the traced graph of a hypertraining cycle: hundreds of tiny variables,
thousands of steps. TensorFlow's own training kernels (``ResourceApplyAdam``,
``ResourceApplyKerasMomentum``, ``ResourceApplyRMSProp``, all XLA-compilable) do the same update
in one op per variable. The interface is the small part of Keras's that STN uses: ``build``,
``variables`` and ``apply_gradients``; ``tests/test_optimizers.py`` checks the updates against
Keras.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import tensorflow as tf

from stn.method.population import MemberMask

OPTIMIZERS = ("adam", "sgd", "rmsprop")


class FusedOptimizer(tf.Module):
    """Adam (β1 0.9, β2 0.999, ε 1e-7), SGD with momentum 0.9, or RMSprop (ρ 0.9, ε 1e-7)."""

    def __init__(self, kind: str, learning_rate: float):
        super().__init__(name=f"{kind}_optimizer")
        if kind not in OPTIMIZERS:
            raise ValueError(f"optimizer={kind!r} is not allowed; choose one of {OPTIMIZERS}")
        self.kind, self.learning_rate = kind, float(learning_rate)
        self.slots: dict[int, tuple[tf.Variable, ...]] = {}
        self.powers: tuple[tf.Variable, ...] = ()
        #: a population's members still training (:class:`stn.method.population.MemberMask`);
        #: the updates of the others are undone, slots included
        self.mask: MemberMask | None = None

    def build(self, var_list: Sequence[tf.Variable], mask: MemberMask | None = None) -> None:
        """Create the slot variables (zeros) for ``var_list``; a population's ``mask`` keeps
        its stopped members' variables and slots as they are."""
        self.mask = mask
        n_slots = {"adam": 2, "sgd": 1, "rmsprop": 2}[self.kind]
        for var in var_list:
            self.slots[id(var)] = tuple(
                tf.Variable(tf.zeros_like(var), trainable=False, name=f"slot{i}")
                for i in range(n_slots)
            )
        if self.kind == "adam" and var_list:
            dtype = var_list[0].dtype
            self.powers = (
                tf.Variable(tf.constant(0.9, dtype), trainable=False, name="beta1_power"),
                tf.Variable(tf.constant(0.999, dtype), trainable=False, name="beta2_power"),
            )

    @property
    def variables(self) -> list[tf.Variable]:
        """Every state variable (slots and β powers), for saving and resetting."""
        return [v for slots in self.slots.values() for v in slots] + list(self.powers)

    def apply_gradients(self, grads_and_vars: Iterable[tuple[tf.Tensor, tf.Variable]]) -> None:
        """One update of every variable with its gradient."""
        pairs = list(grads_and_vars)
        for grad, var in pairs:
            self._apply(grad, var)
        if self.powers:
            self.powers[0].assign(self.powers[0] * 0.9)
            self.powers[1].assign(self.powers[1] * 0.999)

    def _apply(self, grad: tf.Tensor, var: tf.Variable) -> None:
        if self.mask is None:
            return self._kernel(grad, var)
        state = (var, *self.slots[id(var)])
        before = [v.read_value() for v in state]
        self._kernel(grad, var)
        for v, old in zip(state, before, strict=True):
            self.mask.keep_stopped(v, old)

    def _kernel(self, grad: tf.Tensor, var: tf.Variable) -> None:
        slots = self.slots[id(var)]
        lr = tf.constant(self.learning_rate, var.dtype)

        def c(x: float) -> tf.Tensor:
            return tf.constant(x, var.dtype)

        if self.kind == "adam":
            tf.raw_ops.ResourceApplyAdam(
                var=var.handle, m=slots[0].handle, v=slots[1].handle,
                beta1_power=self.powers[0], beta2_power=self.powers[1], lr=lr,
                beta1=c(0.9), beta2=c(0.999), epsilon=c(1e-7), grad=grad,
            )  # fmt: skip
        elif self.kind == "sgd":
            tf.raw_ops.ResourceApplyKerasMomentum(
                var=var.handle, accum=slots[0].handle, lr=lr, grad=grad, momentum=c(0.9)
            )
        else:
            tf.raw_ops.ResourceApplyRMSProp(
                var=var.handle, ms=slots[0].handle, mom=slots[1].handle, lr=lr,
                rho=c(0.9), momentum=c(0.0), epsilon=c(1e-7), grad=grad,
            )  # fmt: skip


def make_optimizer(name: str, learning_rate: float) -> FusedOptimizer:
    """Adam, SGD with momentum 0.9 (the official CNN setting), or RMSprop."""
    return FusedOptimizer(name, learning_rate)
