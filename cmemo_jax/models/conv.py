"""2-D convolution with the parameters and maths of `flax.linen.Conv`, and a choice of lowering.

impl='xla'      `lax.conv_general_dilated` for the forward pass and XLA's own gradients.
impl='gemmgrad' XLA's forward convolution; a backward pass built from the operations XLA:CPU runs
                near its matmul rate. Kernel gradient: im2col GEMMs `patches^T @ dy` accumulated
                over chunks of the batch in a `lax.scan`, each chunk's patch matrix a few tens of
                MB (the whole batch's would be 457 MB for conv2 at batch 16). Input gradient of a
                strided convolution: split by output phase, the layer is a sum of stride-1
                convolutions of the input's phases `x[a::sh, b::sw]` with the kernel's phases
                `k[a::sh, b::sw]` (exactly the same products, no zero taps), whose transposes are
                ordinary stride-1 convolutions; XLA's own transposed convolution of a stride-2
                layer runs over a zero-dilated map. Stride 1: XLA's transposed convolution.
impl='patches'  im2col: the kh*kw strided slices of the padded input are concatenated on the
                channel axis, `[n, oh, ow, kh*kw*cin]` (below 8 input channels: tap-major,
                `[kh*kw*cin, n*oh*ow]`, built by one gather), and multiplied by the kernel
                reshaped to `[kh*kw*cin, cout]`, the bias riding in the GEMM as a row of ones;
                autodiff turns this into two more GEMMs and a col2im of pads. Costs memory for
                the patches, runs at the GEMM rate.
All give the same values up to float rounding; parameters ('kernel' HWIO, 'bias') are identical.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")


def _conv(x, kernel, strides, padding):
    return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_DIMS)


def strided_taps(x, kh, kw, strides, out_hw):
    """The kh*kw strided slices `[n, oh, ow, c]` of (padded) x `[n, h, w, c]`, one per window tap.

    Slice (i, j) holds x[:, i + sh * r, j + sw * q] for every output position (r, q): the building
    block of im2col convolution, the chunked kernel gradient and the argmax max pool.
    """
    n, _, _, c = x.shape
    (sh, sw), (oh, ow) = strides, out_hw
    return [lax.slice(x, (0, i, j, 0), (n, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, c), (1, sh, sw, 1))
            for i in range(kh) for j in range(kw)]


# Below this many input channels 'patches' lays the patch matrix out tap-major, `[kh*kw*cin, n*oh*ow]`:
# concatenating taps on a channel axis this short writes a few bytes per strided run (conv1 has
# one channel: 49 slices of `[n, oh, ow, 1]`); tap-major, every tap's row is contiguous.
TAP_MAJOR_MAX_CHANNELS = 8


def _tap_major_patches(x, kh, kw, strides, out_hw):
    """`[kh*kw, cin, n, oh, ow]` patches of padded x `[n, h, w, cin]`: entry (i*kw + j, c, b, r, q) is
    x[b, i + sh*r, j + sw*q, c].

    One gather with constant indices per image: XLA:CPU writes it in a single pass (56 ms for conv1
    at batch 16), where kh*kw strided slices and a concatenate take two (144 ms).
    """
    (sh, sw), (oh, ow) = strides, out_hw
    taps = np.arange(kh * kw)
    rows = (taps // kw)[:, None, None] + sh * np.arange(oh)[None, :, None]   # [kh*kw, oh, 1]
    cols = (taps % kw)[:, None, None] + sw * np.arange(ow)[None, None, :]    # [kh*kw, 1, ow]
    per_image = lambda image: image[rows, cols]                               # [h, w] -> [kh*kw, oh, ow]
    per_batch = jax.vmap(per_image, in_axes=0, out_axes=1)                   # [n, h, w] -> [kh*kw, n, oh, ow]
    return jax.vmap(per_batch, in_axes=3, out_axes=1)(x)                     # -> [kh*kw, cin, n, oh, ow]


def _conv_patches(x, kernel, strides, padding, bias=None):
    """im2col + one GEMM; with `bias`, a row of ones in the patches and the bias as a kernel row, so
    the bias costs no separate pass over the output."""
    kh, kw, cin, cout = kernel.shape
    n = x.shape[0]
    x = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    oh = (x.shape[1] - kh) // strides[0] + 1
    ow = (x.shape[2] - kw) // strides[1] + 1
    weights = kernel.reshape(kh * kw * cin, cout)
    if bias is not None:
        weights = jnp.concatenate([weights, bias.reshape(1, cout).astype(weights.dtype)], axis=0)
    if cin < TAP_MAJOR_MAX_CHANNELS:
        patches = _tap_major_patches(x, kh, kw, strides, (oh, ow))       # [kh*kw, cin, n, oh, ow]
        patches = patches.reshape(kh * kw * cin, n, oh, ow)
        if bias is not None:
            patches = jnp.concatenate([patches, jnp.ones((1, n, oh, ow), x.dtype)], axis=0)
        return lax.dot_general(patches.reshape(weights.shape[0], n * oh * ow), weights,
                               (((0,), (0,)), ((), ()))).reshape(n, oh, ow, cout)
    taps = strided_taps(x, kh, kw, strides, (oh, ow))
    if bias is not None:
        taps.append(jnp.ones((n, oh, ow, 1), x.dtype))
    patches = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)
    return jnp.dot(patches, weights)


def _conv_with_backward(backward):
    """XLA's forward convolution with a hand-written backward pass
    `backward(x, kernel, g, strides, padding) -> (dx, dkernel)`; residuals are x and the kernel."""

    @functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
    def conv(x, kernel, strides, padding):
        return _conv(x, kernel, strides, padding)

    def fwd(x, kernel, strides, padding):
        return _conv(x, kernel, strides, padding), (x, kernel)

    def bwd(strides, padding, residuals, g):
        x, kernel = residuals
        return backward(x, kernel, g, strides, padding)

    conv.defvjp(fwd, bwd)
    return conv


# Target size of one chunk's patch matrix in the 'gemmgrad' kernel gradient: large enough for
# efficient GEMMs, small enough to stay near the caches (measured on conv1/conv2, BENCHMARKS.md).
KERNEL_GRAD_CHUNK_BYTES = 32 * 2 ** 20


def _largest_divisor_at_most(n: int, cap: int) -> int:
    return max(d for d in range(1, max(1, min(n, cap)) + 1) if n % d == 0)


def _kernel_grad_by_chunks(x, g, kernel_shape, strides, padding):
    """dL/dkernel `[kh, kw, cin, cout]` from x `[n, h, w, cin]` and dy `[n, oh, ow, cout]`, as im2col GEMMs
    over chunks of the batch, accumulated in float32."""
    kh, kw, cin, cout = kernel_shape
    n, oh, ow, _ = g.shape
    per_example = oh * ow * kh * kw * cin * jnp.dtype(x.dtype).itemsize
    chunk = _largest_divisor_at_most(n, KERNEL_GRAD_CHUNK_BYTES // per_example)
    steps = n // chunk
    x = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    # Step j takes examples j, j + steps, j + 2 steps, ...: when the batch is split over devices in
    # contiguous blocks, every chunk spans the devices and the scanned axis itself is not sharded.
    xs = x.reshape(chunk, steps, *x.shape[1:]).swapaxes(0, 1)
    gs = g.reshape(chunk, steps, *g.shape[1:]).swapaxes(0, 1)

    def accumulate(dk, xg):
        xc, gc = xg
        patches = jnp.concatenate(strided_taps(xc, kh, kw, strides, (oh, ow)), axis=-1)
        dk = dk + lax.dot_general(patches.reshape(-1, kh * kw * cin), gc.reshape(-1, cout),
                                  (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
        return dk, None

    dk, _ = lax.scan(accumulate, jnp.zeros((kh * kw * cin, cout), jnp.float32), (xs, gs))
    return dk.reshape(kernel_shape)


def _conv_by_phases(x, kernel, strides, padding):
    """The same convolution as a sum over the sh*sw output phases of stride-1 convolutions
    `x_pad[a::sh, b::sw] * kernel[a::sh, b::sw]` (no zero taps; used for its transpose)."""
    kh, kw = kernel.shape[:2]
    sh, sw = strides
    x = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    out = None
    for a in range(min(sh, kh)):
        for b in range(min(sw, kw)):
            k = kernel[a::sh, b::sw]
            th, tw = k.shape[:2]
            y = _conv(x[:, a::sh, b::sw][:, :oh + th - 1, :ow + tw - 1], k, (1, 1), ((0, 0), (0, 0)))
            out = y if out is None else out + y
    return out


def _gemmgrad_backward(x, kernel, g, strides, padding):
    conv = _conv if strides == (1, 1) else _conv_by_phases
    # Linear in x: its transpose applied to g is the input gradient (dropped by XLA when x needs
    # no gradient, as for the first layer).
    (dx,) = jax.linear_transpose(lambda x_: conv(x_, kernel, strides, padding),
                                 jax.ShapeDtypeStruct(x.shape, x.dtype))(g.astype(x.dtype))
    dk = _kernel_grad_by_chunks(x, g, kernel.shape, strides, padding).astype(kernel.dtype)
    return dx, dk


conv_gemmgrad = _conv_with_backward(_gemmgrad_backward)


_LOWERINGS = {
    "xla": _conv,
    "gemmgrad": conv_gemmgrad,
}
# Every valid convolution lowering name (the alternatives measured slower on every backend tried,
# 'tapgrad' and 's2d', are in BENCHMARKS.md and git history, not in the code).
CONV_IMPLS = ("xla", "gemmgrad", "patches")


def conv2d(x, kernel, strides, padding, impl: str = "xla", bias=None):
    """NHWC x HWIO convolution (+ bias `[cout]` if given); padding is explicit ((top, bottom), (left, right)).

    `[n, h, w, cin]` -> `[n, (h + pad - kh) // sh + 1, (w + pad - kw) // sw + 1, cout]`.
    """
    strides = tuple(int(s) for s in strides)
    padding = tuple(tuple(int(p) for p in pair) for pair in padding)
    if impl == "patches":  # the bias rides in the GEMM
        return _conv_patches(x, kernel, strides, padding, bias)
    if impl not in _LOWERINGS:
        raise ValueError(f"unknown convolution implementation {impl!r} (use one of {', '.join(CONV_IMPLS)})")
    out = _LOWERINGS[impl](x, kernel, strides, padding)
    return out if bias is None else out + bias


class Conv2D(nn.Module):
    """Drop-in for `nn.Conv` (same 'kernel' [kh, kw, cin, cout] and 'bias' [cout] parameters)."""

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] = (1, 1)
    padding: Any = ((0, 0), (0, 0))
    impl: str = "xla"
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        kh, kw = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (kh, kw, x.shape[-1], self.features), self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        return conv2d(x, kernel, self.strides, self.padding, self.impl, bias=bias)
