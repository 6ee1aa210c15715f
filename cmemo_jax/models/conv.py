"""2-D convolution with the parameters and maths of `flax.linen.Conv`, and a choice of lowering.

impl='xla'      `lax.conv_general_dilated` for the forward pass and XLA's own gradients.
impl='tapgrad'  same forward; in the backward pass the input gradient is XLA's transposed
                convolution, and the kernel gradient is computed tap by tap as kh*kw matrix
                products `slice_ij(x)^T @ dy` -> `[cin, cout]`. XLA:CPU lowers the kernel
                gradient of a strided convolution to a convolution whose window is the whole
                output map (e.g. 62x48), which runs far below the machine's matmul rate; the
                per-tap products are plain GEMMs (BENCHMARKS.md has the numbers).
impl='patches'  im2col: the kh*kw strided slices of the padded input are concatenated on the
                channel axis, `[n, oh, ow, kh*kw*cin]`, and multiplied by the kernel reshaped to
                `[kh*kw*cin, cout]`; autodiff turns this into two more GEMMs and a col2im of
                pads. Costs memory for the patches, runs at the GEMM rate.
impl='s2d'      space-to-depth for stride-2 convolutions: the input's 2x2 blocks become channels
                and the kernel, zero-padded to even size, is rearranged to match, so the layer
                is a stride-1 convolution over 4x the channels (1.44x the FLOPs for 5x5);
                XLA:CPU runs stride-1 convolutions faster. Stride 1 falls back to 'xla'.
All give the same values up to float rounding; parameters ('kernel' HWIO, 'bias') are identical.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")


def _conv(x, kernel, strides, padding):
    return lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=_DIMS)


def strided_taps(x, kh, kw, strides, out_hw):
    """The kh*kw strided slices `[n, oh, ow, c]` of (padded) x `[n, h, w, c]`, one per window tap.

    Slice (i, j) holds x[:, i + sh * r, j + sw * q] for every output position (r, q): the building
    block of im2col convolution, tap-wise kernel gradients and slice-based max pooling.
    """
    n, _, _, c = x.shape
    (sh, sw), (oh, ow) = strides, out_hw
    return [lax.slice(x, (0, i, j, 0), (n, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, c), (1, sh, sw, 1))
            for i in range(kh) for j in range(kw)]


def _conv_patches(x, kernel, strides, padding):
    kh, kw, cin, cout = kernel.shape
    x = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    oh = (x.shape[1] - kh) // strides[0] + 1
    ow = (x.shape[2] - kw) // strides[1] + 1
    taps = strided_taps(x, kh, kw, strides, (oh, ow))
    patches = taps[0] if len(taps) == 1 else jnp.concatenate(taps, axis=-1)
    return jnp.dot(patches, kernel.reshape(kh * kw * cin, cout))


def _kernel_grad_by_taps(x, g, kernel_shape, strides, padding):
    """dL/dkernel `[kh, kw, cin, cout]` from input x `[n, h, w, cin]` and output grad g `[n, oh, ow, cout]`."""
    kh, kw, cin, cout = kernel_shape
    oh, ow = g.shape[1:3]
    x = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
    # [n*oh*ow, cin]^T @ [n*oh*ow, cout]: one GEMM per kernel tap.
    taps = [lax.dot_general(xs.reshape(-1, cin), g.reshape(-1, cout), (((0,), (0,)), ((), ())),
                            preferred_element_type=jnp.float32)
            for xs in strided_taps(x, kh, kw, strides, (oh, ow))]
    return jnp.stack(taps).reshape(kh, kw, cin, cout)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_tapgrad(x, kernel, strides, padding):
    return _conv(x, kernel, strides, padding)


def _tapgrad_fwd(x, kernel, strides, padding):
    return _conv(x, kernel, strides, padding), (x, kernel)


def _tapgrad_bwd(strides, padding, residuals, g):
    x, kernel = residuals
    _, input_vjp = jax.vjp(lambda x_: _conv(x_, kernel, strides, padding), x)
    (dx,) = input_vjp(g)  # dropped by XLA when x needs no gradient (the first layer)
    dk = _kernel_grad_by_taps(x, g, kernel.shape, strides, padding).astype(kernel.dtype)
    return dx, dk


conv_tapgrad.defvjp(_tapgrad_fwd, _tapgrad_bwd)


def _conv_space_to_depth(x, kernel, strides, padding):
    if tuple(strides) != (2, 2):
        return _conv(x, kernel, strides, padding)
    kh, kw, cin, cout = kernel.shape
    n, h, w, _ = x.shape
    oh = (h + sum(padding[0]) - kh) // 2 + 1
    ow = (w + sum(padding[1]) - kw) // 2 + 1
    th, tw = -(-kh // 2), -(-kw // 2)               # taps per axis after space-to-depth
    hp, wp = 2 * (oh - 1) + 2 * th, 2 * (ow - 1) + 2 * tw
    # Pad (or crop rows no output reads) to exactly hp x wp; extra rows meet zero kernel taps.
    x = jnp.pad(x, ((0, 0), (padding[0][0], max(hp - h - padding[0][0], 0)),
                    (padding[1][0], max(wp - w - padding[1][0], 0)), (0, 0)))[:, :hp, :wp]
    x = x.reshape(n, hp // 2, 2, wp // 2, 2, cin).transpose(0, 1, 3, 2, 4, 5).reshape(n, hp // 2, wp // 2, 4 * cin)
    k = jnp.pad(kernel, ((0, 2 * th - kh), (0, 2 * tw - kw), (0, 0), (0, 0)))
    k = k.reshape(th, 2, tw, 2, cin, cout).transpose(0, 2, 1, 3, 4, 5).reshape(th, tw, 4 * cin, cout)
    return _conv(x, k, (1, 1), ((0, 0), (0, 0)))


def conv2d(x, kernel, strides, padding, impl: str = "xla"):
    """NHWC x HWIO convolution; padding is explicit ((top, bottom), (left, right))."""
    strides = tuple(int(s) for s in strides)
    padding = tuple(tuple(int(p) for p in pair) for pair in padding)
    if impl == "xla":
        return _conv(x, kernel, strides, padding)
    if impl == "tapgrad":
        return conv_tapgrad(x, kernel, strides, padding)
    if impl == "patches":
        return _conv_patches(x, kernel, strides, padding)
    if impl == "s2d":
        return _conv_space_to_depth(x, kernel, strides, padding)
    raise ValueError(f"unknown convolution implementation {impl!r} (use 'xla', 'tapgrad', 'patches' or 's2d')")


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
        return conv2d(x, kernel, self.strides, self.padding, self.impl) + bias
