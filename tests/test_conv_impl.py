"""The alternative lowerings (conv 'gemmgrad', 'tapgrad', 'patches', 's2d'; max-pool 'argmax', 'slices';
BN+ReLU+pool 'fused') compute the same maths as XLA's and flax's."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmemo_jax.models import conv as conv_lib
from cmemo_jax.models.conv import conv2d
from cmemo_jax.models.pooling import max_pool
from cmemo_jax.models.student import Student


@pytest.mark.parametrize("kernel,strides,padding,cin", [
    ((7, 7), (2, 2), ((1, 1), (1, 1)), 1),
    ((5, 5), (2, 2), ((1, 1), (1, 1)), 6),
    ((3, 3), (1, 1), ((1, 1), (1, 1)), 5),
    ((9, 1), (1, 1), ((0, 0), (0, 0)), 4),
])
@pytest.mark.parametrize("impl", ["gemmgrad", "tapgrad", "patches", "s2d"])
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


@pytest.mark.parametrize("chunk_examples", [1, 2, 3])
def test_gemmgrad_kernel_gradient_over_several_batch_chunks(monkeypatch, chunk_examples):
    """The chunked im2col kernel gradient covers every example once, whatever the chunk size."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((6, 17, 15, 3)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((5, 5, 3, 4)) * 0.1, jnp.float32)
    strides, padding = (2, 2), ((1, 1), (1, 1))
    per_example = 8 * 7 * 5 * 5 * 3 * 4  # oh * ow * kh * kw * cin * 4 bytes
    monkeypatch.setattr(conv_lib, "KERNEL_GRAD_CHUNK_BYTES", chunk_examples * per_example)
    w = jnp.asarray(rng.standard_normal((6, 8, 7, 4)), jnp.float32)  # a fixed output weighting

    def loss(impl):
        return lambda x, k: jnp.sum(w * conv2d(x, k, strides, padding, impl))

    gx_ref, gk_ref = jax.grad(loss("xla"), argnums=(0, 1))(x, k)
    gx, gk = jax.jit(jax.grad(loss("gemmgrad"), argnums=(0, 1)))(x, k)
    np.testing.assert_allclose(gk, gk_ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-5, atol=1e-5)


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


@pytest.mark.parametrize("window,strides", [((3, 3), (2, 2)), ((5, 3), (3, 2)), ((2, 2), (2, 2))])
def test_argmax_max_pool_matches_reduce_window_including_ties(window, strides):
    """'argmax' gives each output's gradient to the first maximal input of its window, as
    reduce_window's select-and-scatter does: identical gradients even when windows hold ties."""
    rng = np.random.default_rng(4)
    x_cont = jnp.asarray(rng.standard_normal((2, 14, 11, 3)), jnp.float32)
    x_ties = jnp.asarray(rng.integers(0, 3, (2, 14, 11, 3)), jnp.float32)  # many ties
    w = jnp.asarray(rng.standard_normal(max_pool(x_cont, window, strides, "reduce_window").shape), jnp.float32)
    for x in (x_cont, x_ties):
        y = jax.jit(max_pool, static_argnums=(1, 2, 3))(x, window, strides, "argmax")
        np.testing.assert_array_equal(y, max_pool(x, window, strides, "reduce_window"))
        g_a = jax.jit(jax.grad(lambda x: jnp.sum(w * max_pool(x, window, strides, "argmax"))))(x)
        g_r = jax.grad(lambda x: jnp.sum(w * max_pool(x, window, strides, "reduce_window")))(x)
        # Equal up to the order in which overlapping windows' gradients are summed; a tie sent to
        # another input would differ by O(1).
        np.testing.assert_allclose(g_a, g_r, rtol=1e-6, atol=1e-6)
    # The gradient of a max is a selection: every output's weight lands on exactly one input.
    np.testing.assert_allclose(float(jnp.sum(g_a)), float(jnp.sum(w)), rtol=1e-5)


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
    for conv_impl in ("gemmgrad", "tapgrad", "patches", "auto"):
        for pool_impl in ("fused", "argmax", "slices"):
            g_new = grads(Student(**kw, conv_impl=conv_impl, pool_impl=pool_impl))
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * scale), g_new, g_ref)


@pytest.mark.parametrize("cin", [1, 3, 12])  # tap-major patches below 8 channels, channel-last above
def test_conv_with_bias_matches_xla_values_and_gradients(cin):
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((2, 21, 17, cin)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((7, 7, cin, 5)) * 0.1, jnp.float32)
    b = jnp.asarray(rng.standard_normal((5,)), jnp.float32)
    strides, padding = (2, 2), ((1, 1), (1, 1))

    def loss(impl):
        return lambda x, k, b: jnp.sum(jnp.sin(conv2d(x, k, strides, padding, impl, bias=b)))

    for impl in ("patches", "gemmgrad"):
        np.testing.assert_allclose(conv2d(x, k, strides, padding, impl, bias=b),
                                   conv2d(x, k, strides, padding, "xla") + b, rtol=1e-5, atol=1e-5)
        ref = jax.grad(loss("xla"), argnums=(0, 1, 2))(x, k, b)
        new = jax.jit(jax.grad(loss(impl), argnums=(0, 1, 2)))(x, k, b)
        for g, g_ref in zip(new, ref):
            np.testing.assert_allclose(g, g_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("window,strides", [((3, 3), (2, 2)), ((5, 3), (3, 2))])
def test_fused_bn_relu_pool_matches_flax_batchnorm_relu_reduce_window(window, strides):
    """Values, batch statistics and gradients (input, scale, bias) of the fused op against flax's
    BatchNorm + ReLU + nn.max_pool, in float64 so that only the maths can differ."""
    import flax.linen as nn

    from cmemo_jax.models import fused

    with jax.enable_x64(True):
        rng = np.random.default_rng(6)
        z = jnp.asarray(rng.standard_normal((3, 17, 13, 4)) * 2 + 0.5, jnp.float64)
        scale = jnp.asarray([1.3, -0.7, 0.0, 2.0], jnp.float64)  # negative and zero scales too
        bias = jnp.asarray([0.1, 0.4, -0.2, -1.0], jnp.float64)
        eps = 1e-5

        def reference(z, scale, bias):
            bn = nn.BatchNorm(use_running_average=False, momentum=0.9, epsilon=eps, dtype=jnp.float64,
                              param_dtype=jnp.float64)
            variables = {"params": {"scale": scale, "bias": bias},
                         "batch_stats": {"mean": jnp.zeros(4, jnp.float64), "var": jnp.ones(4, jnp.float64)}}
            u, updates = bn.apply(variables, z, mutable=["batch_stats"])
            return nn.max_pool(nn.relu(u), window, strides), updates["batch_stats"]

        y_ref, stats = reference(z, scale, bias)
        y, mean, var = jax.jit(fused.bn_relu_max_pool_train, static_argnums=(3, 4, 5))(
            z, scale, bias, eps, window, strides)
        np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
        # flax's running averages after one step from (0, 1) with momentum 0.9
        np.testing.assert_allclose(0.1 * mean, stats["mean"], rtol=1e-12)
        np.testing.assert_allclose(0.9 + 0.1 * var, stats["var"], rtol=1e-12)
        w = jnp.asarray(rng.standard_normal(y.shape), jnp.float64)
        g_ref = jax.grad(lambda *a: jnp.sum(w * reference(*a)[0]), argnums=(0, 1, 2))(z, scale, bias)
        g = jax.jit(jax.grad(lambda *a: jnp.sum(w * fused.bn_relu_max_pool_train(*a, eps, window, strides)[0]),
                             argnums=(0, 1, 2)))(z, scale, bias)
        for a, b in zip(g, g_ref):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-10)
        # Inference with given statistics: flax's BatchNorm in eval mode + ReLU + pool.
        y_eval = fused.bn_relu_max_pool_eval(z, scale, bias, mean, var, eps, window, strides)
        y_eval_ref = nn.max_pool(nn.relu((z - mean) / jnp.sqrt(var + eps) * scale + bias), window, strides)
        np.testing.assert_allclose(y_eval, y_eval_ref, rtol=1e-12, atol=1e-12)
