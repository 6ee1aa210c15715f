"""cmemo_jax.losses against float64 numpy references (paper eq. 1-2: softmax at T = 2, no T^2 factor)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cmemo_jax import losses


def _softmax(z):
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _log_softmax(z):
    z = np.asarray(z, np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def _ref_distill(s, t, T=2.0):
    return -(_softmax(np.asarray(t, np.float64) / T) * _log_softmax(np.asarray(s, np.float64) / T)).sum(-1)


@pytest.fixture
def logits():
    rng = np.random.default_rng(0)
    s = (3 * rng.standard_normal((16, 8))).astype(np.float32)
    t = (5 * rng.standard_normal((16, 8))).astype(np.float32)
    return s, t


def test_distillation_matches_numpy(logits):
    s, t = logits
    got = np.asarray(losses.distillation_loss(s, t))  # default T = 2
    assert got.shape == (16,) and got.dtype == np.float32
    np.testing.assert_allclose(got, _ref_distill(s, t, 2.0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(losses.distillation_loss(s, t, temperature=1.0)),
                               _ref_distill(s, t, 1.0), rtol=1e-5, atol=1e-6)
    # No T^2 factor: T = 2 is the plain cross entropy of the softened distributions.
    np.testing.assert_allclose(np.asarray(losses.distillation_loss(s, t, 2.0)),
                               np.asarray(losses.soft_cross_entropy(s / 2, _softmax(t / 2).astype(np.float32))),
                               rtol=1e-6)


def test_distillation_special_values(logits):
    _, t = logits
    # Identical logits: the loss is the entropy of softmax(t / 2), its minimum over student logits.
    p = _softmax(t / 2.0)
    entropy = -(p * np.log(p)).sum(-1)
    np.testing.assert_allclose(np.asarray(losses.distillation_loss(t, t)), entropy, rtol=1e-5)
    # Uniform teacher and uniform student: log(8).
    z = np.zeros((3, 8), np.float32)
    np.testing.assert_allclose(np.asarray(losses.distillation_loss(z, z)), math.log(8), rtol=1e-6)
    # Shifting either side's logits by a constant changes nothing.
    s = logits[0]
    np.testing.assert_allclose(np.asarray(losses.distillation_loss(s + 7.0, t - 3.0)),
                               np.asarray(losses.distillation_loss(s, t)), rtol=1e-5)


def test_distillation_gradients(logits):
    s, t = logits
    T = 2.0
    grad_s = jax.grad(lambda s: jnp.sum(losses.distillation_loss(s, t, T)))(jnp.asarray(s))
    expected = (_softmax(s / T) - _softmax(t / T)) / T
    np.testing.assert_allclose(np.asarray(grad_s), expected, rtol=1e-4, atol=1e-6)
    # Batch mean (the trainer's reduction) scales it by 1 / batch.
    grad_mean = jax.grad(lambda s: jnp.mean(losses.distillation_loss(s, t, T)))(jnp.asarray(s))
    np.testing.assert_allclose(np.asarray(grad_mean), expected / len(s), rtol=1e-4, atol=1e-7)
    # The teacher is a fixed target: no gradient flows into its logits.
    grad_t = jax.grad(lambda t: jnp.sum(losses.distillation_loss(s, t, T)))(jnp.asarray(t))
    np.testing.assert_array_equal(np.asarray(grad_t), 0.0)


def test_distillation_bfloat16_student_logits(logits):
    s, t = logits
    got = losses.distillation_loss(jnp.asarray(s, jnp.bfloat16), t)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), _ref_distill(s, t), rtol=2e-2)


def test_logit_l2_loss(logits):
    s, t = logits
    got = np.asarray(losses.logit_l2_loss(s, t))
    np.testing.assert_allclose(got, ((s.astype(np.float64) - t) ** 2).sum(-1), rtol=1e-5)
    g_s, g_t = jax.grad(lambda s, t: jnp.sum(losses.logit_l2_loss(s, t)), argnums=(0, 1))(jnp.asarray(s),
                                                                                         jnp.asarray(t))
    np.testing.assert_allclose(np.asarray(g_s), 2 * (s - t), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(g_t), 0.0)
    np.testing.assert_array_equal(np.asarray(losses.logit_l2_loss(s, s)), 0.0)


def test_masked_mean():
    values = jnp.asarray([1.0, 2.0, 3.0, 1e6, 5.0])
    mask = jnp.asarray([True, True, True, False, False])
    assert float(losses.masked_mean(values, mask)) == pytest.approx(2.0)
    assert float(losses.masked_mean(values, jnp.ones(5, bool))) == pytest.approx(float(np.mean(values)))
    # Nothing valid: 0, not NaN.
    assert float(losses.masked_mean(values, jnp.zeros(5, bool))) == 0.0
    # Masked entries get no gradient.
    g = jax.grad(lambda v: losses.masked_mean(v, mask))(values)
    np.testing.assert_allclose(np.asarray(g), [1 / 3, 1 / 3, 1 / 3, 0, 0], rtol=1e-6)
    # Float masks (0/1) work the same.
    assert float(losses.masked_mean(values, mask.astype(jnp.float32))) == pytest.approx(2.0)


def test_masked_max_pool():
    rng = np.random.default_rng(1)
    frames = rng.standard_normal((4, 10, 8)).astype(np.float32)
    num_rows = np.array([1, 4, 10, 7], np.int32)
    # Rows past num_rows hold huge values that must be ignored.
    poisoned = frames.copy()
    for b, n in enumerate(num_rows):
        poisoned[b, n:] = 1e9
    got = np.asarray(losses.masked_max_pool(jnp.asarray(poisoned), jnp.asarray(num_rows)))
    expected = np.stack([frames[b, :n].max(0) for b, n in enumerate(num_rows)])
    np.testing.assert_array_equal(got, expected)
    assert got.shape == (4, 8)
    # A padding example (num_rows = 0) gives zeros, not -inf.
    got0 = np.asarray(losses.masked_max_pool(jnp.asarray(poisoned), jnp.asarray([0, 1, 2, 3])))
    np.testing.assert_array_equal(got0[0], 0.0)
    np.testing.assert_array_equal(got0[1], frames[1, :1].max(0))
    # Jit-able with traced num_rows.
    got_jit = np.asarray(jax.jit(losses.masked_max_pool)(poisoned, num_rows))
    np.testing.assert_array_equal(got_jit, expected)


def test_get_loss(logits):
    s, t = logits
    np.testing.assert_allclose(np.asarray(losses.get_loss("distill")(s, t, temperature=2.0)),
                               np.asarray(losses.distillation_loss(s, t, 2.0)))
    np.testing.assert_allclose(np.asarray(losses.get_loss("l2")(s, t, temperature=2.0)),
                               np.asarray(losses.logit_l2_loss(s, t)))
    with pytest.raises(ValueError, match="unknown loss"):
        losses.get_loss("kl_nonsense")
