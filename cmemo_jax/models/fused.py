"""Batch norm (batch statistics) -> ReLU -> max pool as one op with a hand-written backward pass.

The student's conv1 block writes a `[batch, 254, 198, 96]` map (309 MB at batch 16); autodiff of
flax's BatchNorm + ReLU + pooling passes over maps of that size about ten times (the centred input,
the normalised output, the ReLU mask, the pool's scatter, two reductions, the BN input gradient).
Here the forward pass reads the conv output for the statistics and once more for the pool (the
normalisation and ReLU are applied to each window tap as it is read), and keeps only the pooled
map, the index of each window's maximum and the conv output itself. In the backward pass the
gradient reaching the map is nonzero only at window maxima, so the batch-norm reductions (sum of
dL/du and of dL/du * xhat) run over the pooled map, and one pass writes dL/dz.

Maths (per channel, N = batch * h * w, biased variance as flax's fast variance):
  mean = E[z], var = max(0, E[z^2] - mean^2), xhat = (z - mean) / sqrt(var + eps)
  u = scale * xhat + bias,  y = maxpool(relu(u)) = relu(maxpool(u))
  backward, g_u = dL/du (the pooled gradient times relu' routed to each window's first maximum):
  dL/dz = scale / sqrt(var + eps) * (g_u - sum(g_u) / N - xhat * sum(g_u * xhat) / N)
  dL/dscale = sum(g_u * xhat), dL/dbias = sum(g_u)
The returned batch mean and variance (for the running averages) carry no gradient, as in flax
where they only feed the `batch_stats` collection.

Status: correct (tests/test_conv_impl.py checks it against flax in float64) but not the default:
on XLA:CPU (jax 0.10.2) the whole step measured 0.93x of pool_impl='argmax' (BENCHMARKS.md), as
XLA recomputes the per-tap normalisation in each of its output fusions. Kept as an option for
backends whose fusion keeps the single pass (unmeasured on GPU/TPU).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from cmemo_jax.models.pooling import first_argmax, scatter_to_argmax, window_taps


def _stats_dtype(z):
    """float32, or float64 for float64 input: statistics are never reduced in bf16 (as in flax)."""
    return jnp.promote_types(z.dtype, jnp.float32)


def batch_stats(z):
    """Per-channel mean and biased variance of `z` `[n, h, w, c]`, at least float32 (flax's fast variance)."""
    zf = z.astype(_stats_dtype(z))
    mean = jnp.mean(zf, axis=(0, 1, 2))
    mean2 = jnp.mean(zf * zf, axis=(0, 1, 2))
    return mean, jnp.maximum(0.0, mean2 - mean * mean)


def _affine_taps(z, a, b, window, strides):
    """The pooling window's taps of z and of u = z * a + b (per-channel a, b, in a's dtype)."""
    taps = window_taps(z, window, strides)
    return taps, [t.astype(a.dtype) * a + b for t in taps]


def _pool_affine(z, a, b, window, strides):
    """Window maxima of u = z * a + b (per-channel a, b): (max u, its first tap index, z there)."""
    taps, us = _affine_taps(z, a, b, window, strides)
    p = functools.reduce(jnp.maximum, us)
    index = first_argmax(us, p)
    z_at = lax.select_n(index.astype(jnp.int32), *[t.astype(a.dtype) for t in taps])
    return p, index, z_at


def bn_relu_max_pool_eval(z, scale, bias, mean, var, epsilon, window, strides):
    """Inference: `maxpool(relu(scale * (z - mean) / sqrt(var + eps) + bias))` with given statistics."""
    a = (scale * lax.rsqrt(var + epsilon)).astype(_stats_dtype(z))
    _, us = _affine_taps(z, a, bias - mean * a, window, strides)
    return jnp.maximum(functools.reduce(jnp.maximum, us), 0.0).astype(z.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def bn_relu_max_pool_train(z, scale, bias, epsilon, window, strides):
    """Training: normalise `z` `[n, h, w, c]` with its own batch statistics, scale/shift, ReLU, max pool.

    Returns (y `[n, oh, ow, c]` in z's dtype, batch mean `[c]`, batch variance `[c]`), statistics and
    normalisation in float32 (float64 for float64 input), also under bf16 compute.
    """
    y, (mean, var), _ = _train_forward(z, scale, bias, epsilon, window, strides)
    return y, mean, var


def _train_forward(z, scale, bias, epsilon, window, strides):
    mean, var = batch_stats(z)
    rstd = lax.rsqrt(var + epsilon)
    a = scale * rstd
    # One example per loop step: the loop's outputs (pooled map, index, z at the maximum) are
    # written once. Computed as plain ops, XLA:CPU fuses their producer (all kh*kw normalised taps)
    # into each of the backward pass's kh*kw scatter pads, recomputing it per pad (measured 9x
    # slower); an optimization_barrier does not stop that (it is expanded before fusion).
    b = bias - mean * a
    p, index, z_at = lax.map(lambda zi: tuple(o[0] for o in _pool_affine(zi[None], a, b, window, strides)), z)
    y = jnp.maximum(p, 0.0).astype(z.dtype)
    return y, (mean, var), (z, scale, mean, rstd, p, index, z_at)


def _train_fwd(z, scale, bias, epsilon, window, strides):
    y, (mean, var), residuals = _train_forward(z, scale, bias, epsilon, window, strides)
    return (y, mean, var), residuals


def _train_bwd(epsilon, window, strides, residuals, cotangents):
    z, scale, mean, rstd, p, index, z_at = residuals
    g_y = cotangents[0]  # the statistics' cotangents are dropped: they carry no gradient
    n, h, w, _ = z.shape
    count = n * h * w
    g_p = jnp.where(p > 0, g_y.astype(p.dtype), 0.0)   # through the ReLU (relu(max) = max(relu))
    xhat_at = (z_at - mean) * rstd
    sum_g = jnp.sum(g_p, axis=(0, 1, 2))                     # = sum of g_u over the whole map
    sum_gx = jnp.sum(g_p * xhat_at, axis=(0, 1, 2))          # = sum of g_u * xhat
    g_u = scatter_to_argmax(g_p, index, z.shape, window, strides)
    xhat = (z.astype(p.dtype) - mean) * rstd
    g_z = (scale * rstd) * (g_u - sum_g / count - xhat * (sum_gx / count))
    return g_z.astype(z.dtype), sum_gx.astype(scale.dtype), sum_g.astype(scale.dtype)


bn_relu_max_pool_train.defvjp(_train_fwd, _train_bwd)
