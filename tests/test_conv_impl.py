"""The alternative lowerings (conv 'gemmgrad', 'patches'; max-pool 'argmax') compute the same maths as
XLA's and flax's, and the lowering names are checked."""
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
@pytest.mark.parametrize("impl", ["gemmgrad", "patches"])
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
    for conv_impl in ("gemmgrad", "patches", "auto"):
        for pool_impl in ("argmax", "auto"):
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


def test_lowering_names_are_checked_and_auto_resolves_per_backend():
    from cmemo_jax.models.student import CPU_CONV_IMPLS, CPU_POOL_IMPL, resolve_conv_impls, resolve_pool_impl

    assert jax.default_backend() == "cpu"
    assert resolve_conv_impls("auto") == CPU_CONV_IMPLS and resolve_pool_impl("auto") == CPU_POOL_IMPL
    assert resolve_conv_impls("xla") == ("xla",) * 6
    for bad in ("tapgrad", "xla,xla", "s2d"):
        with pytest.raises(ValueError, match="conv_impl"):
            resolve_conv_impls(bad)
    with pytest.raises(ValueError, match="pool_impl"):
        resolve_pool_impl("fused")
