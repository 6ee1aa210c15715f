"""The alternative lowerings (conv 'tapgrad', max-pool 'slices') compute the same maths as XLA's."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmemo_jax.models.conv import conv2d
from cmemo_jax.models.student import Student, max_pool


@pytest.mark.parametrize("kernel,strides,padding,cin", [
    ((7, 7), (2, 2), ((1, 1), (1, 1)), 1),
    ((5, 5), (2, 2), ((1, 1), (1, 1)), 6),
    ((3, 3), (1, 1), ((1, 1), (1, 1)), 5),
    ((9, 1), (1, 1), ((0, 0), (0, 0)), 4),
])
@pytest.mark.parametrize("impl", ["tapgrad", "patches", "s2d"])
def test_conv_lowering_matches_xla_values_and_gradients(kernel, strides, padding, cin, impl):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 23, 19, cin)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((*kernel, cin, 7)) * 0.1, jnp.float32)

    def loss(impl):
        return lambda x, k: jnp.sum(jnp.sin(conv2d(x, k, strides, padding, impl)))

    np.testing.assert_allclose(conv2d(x, k, strides, padding, impl),
                               conv2d(x, k, strides, padding, "xla"), rtol=1e-5, atol=1e-5)
    gx_ref, gk_ref = jax.grad(loss("xla"), argnums=(0, 1))(x, k)
    gx, gk = jax.jit(jax.grad(loss(impl), argnums=(0, 1)))(x, k)
    np.testing.assert_allclose(gk, gk_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-4, atol=1e-4)


def test_unknown_impl_raises():
    with pytest.raises(ValueError, match="unknown convolution"):
        conv2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), (1, 1), ((0, 0), (0, 0)), "nope")
    with pytest.raises(ValueError, match="unknown max-pool"):
        max_pool(jnp.zeros((1, 4, 4, 1)), (3, 3), (2, 2), "nope")


def test_slices_max_pool_matches_reduce_window_with_numeric_gradient():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 13, 11, 3)), jnp.float32)
    for window, strides in (((3, 3), (2, 2)), ((5, 3), (3, 2))):
        np.testing.assert_array_equal(max_pool(x, window, strides, "slices"),
                                      max_pool(x, window, strides, "reduce_window"))
        g_s = jax.grad(lambda x: jnp.sum(max_pool(x, window, strides, "slices") ** 2))(x)
        g_r = jax.grad(lambda x: jnp.sum(max_pool(x, window, strides, "reduce_window") ** 2))(x)
        np.testing.assert_allclose(g_s, g_r, rtol=1e-6)  # no ties in continuous random data


def test_student_lowerings_give_the_same_loss_gradient():
    kw = dict(conv_features=(4, 8, 8, 8, 8), fc6_features=8, fc7_features=8)
    # 200 frames and batch 4: with fewer, the 1x1 fc6 map and batch-norm over 3 values make the
    # gradients so ill-conditioned that float32 rounding alone changes them (float64 agrees).
    x = jnp.asarray(np.random.default_rng(2).standard_normal((4, 512, 200)), jnp.float32)
    ref = Student(**kw, conv_impl="xla", pool_impl="reduce_window")
    variables = ref.init(jax.random.key(0), x, train=False)

    def grads(model):
        def loss(p):
            out, _ = model.apply({"params": p, "batch_stats": variables["batch_stats"]}, x, train=True,
                                 mutable=["batch_stats"])
            return jnp.sum(jax.nn.log_softmax(out)[:, 0])
        return jax.jit(jax.grad(loss))(variables["params"])

    g_ref = grads(ref)
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(g_ref))
    for conv_impl in ("tapgrad", "patches", "auto"):
        g_new = grads(Student(**kw, conv_impl=conv_impl, pool_impl="slices"))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * scale), g_new, g_ref)
