"""Max pooling over H, W of NHWC maps, no padding, output size rounded down, with a choice of lowering.

impl='argmax'         forward: the maximum of the window's kh*kw strided slices, plus the index (int8)
                      of the first slice that holds it; backward: each output's gradient goes to that
                      one input (as `reduce_window`'s select-and-scatter and PyTorch do, ties
                      included), written as kh*kw masked, strided pads that XLA fuses into one pass.
                      The residual is the index map only (1 byte per output), not the forward's
                      chain of partial maxima.
impl='reduce_window'  flax's `nn.max_pool`; XLA:CPU differentiates it through select-and-scatter.
Same forward values in both (a third lowering, 'slices', lost: BENCHMARKS.md); BENCHMARKS.md has the measured cost of each.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from cmemo_jax.models.conv import strided_taps

# Every valid max-pool lowering name.
POOL_IMPLS = ("argmax", "reduce_window")


def _output_hw(x_shape, window, strides):
    _, h, w, _ = x_shape
    (kh, kw), (sh, sw) = window, strides
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"max_pool window {window} does not fit input of size {(h, w)}")
    return oh, ow


def window_taps(x, window, strides):
    """The kh*kw strided slices `[n, oh, ow, c]` of x `[n, h, w, c]` a pooling window reads."""
    return strided_taps(x, *window, strides, _output_hw(x.shape, window, strides))


def first_argmax(taps, y):
    """int8 index of the first of `taps` that equals their maximum `y` (ties go to the lowest tap)."""
    index = jnp.zeros(y.shape, jnp.int8)
    for t in reversed(range(len(taps))):
        index = jnp.where(taps[t] == y, jnp.int8(t), index)
    return index


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _max_pool_argmax(x, window, strides):
    return functools.reduce(jnp.maximum, window_taps(x, window, strides))


def _argmax_fwd(x, window, strides):
    taps = window_taps(x, window, strides)
    y = functools.reduce(jnp.maximum, taps)
    return y, (first_argmax(taps, y), x.shape)


def scatter_to_argmax(g, index, x_shape, window, strides):
    """Routes each output's gradient `g` `[n, oh, ow, c]` to the input its window `index` points at
    (tap number i * kw + j) -> `[n, h, w, c]`: kh*kw masked, strided pads, summed where windows
    overlap; XLA fuses them into one pass."""
    (kh, kw), (sh, sw) = window, strides
    _, h, w, _ = x_shape
    oh, ow = g.shape[1:3]
    zero = jnp.zeros((), g.dtype)
    dx = None
    for t in range(kh * kw):
        i, j = divmod(t, kw)
        # Output (r, q) of tap (i, j) read input (i + sh r, j + sw q): put it back there.
        placed = lax.pad(jnp.where(index == t, g, zero), zero,
                         ((0, 0, 0), (i, h - i - (oh - 1) * sh - 1, sh - 1),
                          (j, w - j - (ow - 1) * sw - 1, sw - 1), (0, 0, 0)))
        dx = placed if dx is None else dx + placed
    return dx


def _argmax_bwd(window, strides, residuals, g):
    index, x_shape = residuals
    return (scatter_to_argmax(g, index, x_shape, window, strides),)


_max_pool_argmax.defvjp(_argmax_fwd, _argmax_bwd)


def max_pool(x, window: tuple[int, int], strides: tuple[int, int], impl: str = "argmax"):
    """Max pooling of NHWC `x` `[n, h, w, c]` -> `[n, (h - kh) // sh + 1, (w - kw) // sw + 1, c]`."""
    window = (int(window[0]), int(window[1]))
    strides = (int(strides[0]), int(strides[1]))
    if impl == "reduce_window":
        return nn.max_pool(x, window, strides)
    if impl == "argmax":
        _output_hw(x.shape, window, strides)
        return _max_pool_argmax(x, window, strides)
    raise ValueError(f"unknown max-pool implementation {impl!r} (use one of {', '.join(POOL_IMPLS)})")
