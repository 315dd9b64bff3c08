import numpy as np
import pytest
import tensorflow as tf

from stn.method.optimizers import make_optimizer

KERAS = {
    "adam": lambda: tf.keras.optimizers.Adam(0.01),
    "sgd": lambda: tf.keras.optimizers.SGD(0.01, momentum=0.9),
    "rmsprop": lambda: tf.keras.optimizers.RMSprop(0.01),
}


@pytest.mark.parametrize("kind", list(KERAS))
def test_fused_updates_match_keras(kind):
    """Ten steps on a quadratic land where Keras's optimizer lands."""
    rng = np.random.default_rng(0)
    start = rng.normal(size=(3, 2))
    target = tf.constant(rng.normal(size=(3, 2)))
    ours, theirs = tf.Variable(start), tf.Variable(start)
    fused, keras = make_optimizer(kind, 0.01), KERAS[kind]()
    fused.build([ours])
    keras.build([theirs])

    @tf.function(jit_compile=True)
    def step():
        for var, opt in ((ours, fused), (theirs, keras)):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum((var - target) ** 3 * 0.1 + (var - target) ** 2)
            opt.apply_gradients([(tape.gradient(loss, var), var)])

    for _ in range(10):
        step()
    assert not np.allclose(ours.numpy(), start)
    # Keras keeps its learning rate and β constants in float32 (differences ~1e-7); RMSprop:
    # TF's kernel divides by sqrt(ms + ε), Keras by sqrt(ms) + ε.
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-6)


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="optimizer='adamw' is not allowed"):
        make_optimizer("adamw", 0.1)
