"""The speech student: VGG-M / VGGVox with batch norm (paper Table 4), 8 emotion logits out.

Layout: input spectrogram `[batch, freq=512, time]` -> NHWC `[batch, freq, time, 1]`.
For a 4.024 s clip (400 frames) the feature maps are, with pooling rounding down (docs/method.md §2):

  conv1 96 7x7 s2 p1 -> 254x198   mpool1 3x3 s2 -> 126x98
  conv2 256 5x5 s2 p1 -> 62x48    mpool2 3x3 s2 -> 30x23
  conv3/4/5 3x3 p1 -> 30x23       mpool5 5x3 s(3,2) -> 9x11
  fc6 4096 as a 9x1 conv -> 1x11  apool6: mean over time (any length) -> 1x1
  fc7 1024 -> fc8 8

Batch norm + ReLU follow every conv and fc6/fc7. Weights are initialised as in MatConvNet's
from-scratch recipe, N(0, 2 / (kh kw cin)), biases zero, BN scale one.
"""
from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from cmemo_jax.models.conv import CONV_IMPLS, Conv2D
from cmemo_jax.models.pooling import POOL_IMPLS, max_pool

# N(0, 2 / fan_in): untruncated normal, as MatConvNet's `randn * sqrt(2 / (h w cin))`.
he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


# Convolution lowering per layer (conv1..conv5, fc6) for conv_impl='auto', chosen by measuring the
# whole train step (BENCHMARKS.md, "conv lowering"). On XLA:CPU the im2col GEMM beats XLA's own
# convolution for conv1 (one input channel) and fc6 (a 9x1 conv over the whole pooled frequency
# axis, i.e. a dense layer); conv2 trains faster with XLA's forward and the chunked-GEMM backward
# ('gemmgrad'), and XLA's convolution is the faster one for the 3x3 convs. On GPU/TPU XLA's own
# convolutions (cuDNN, the TPU emitter) are used throughout until a measurement there says otherwise.
CPU_CONV_IMPLS = ("patches", "gemmgrad", "xla", "xla", "xla", "patches")
CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6")
# Max-pool lowering for pool_impl='auto': the argmax pool was measured faster on XLA:CPU only
# (BENCHMARKS.md); elsewhere XLA's own reduce_window and select-and-scatter.
CPU_POOL_IMPL = "argmax"


def resolve_conv_impls(conv_impl: str) -> tuple[str, ...]:
    """'auto' | one lowering for all layers | six comma-separated lowerings -> 6-tuple."""
    if conv_impl == "auto":
        return CPU_CONV_IMPLS if jax.default_backend() == "cpu" else ("xla",) * len(CONV_LAYERS)
    impls = tuple(part.strip() for part in conv_impl.split(","))
    if len(impls) == 1:
        impls = impls * len(CONV_LAYERS)
    if len(impls) != len(CONV_LAYERS) or not set(impls) <= set(CONV_IMPLS):
        raise ValueError(f"conv_impl {conv_impl!r}: give 'auto', one of {', '.join(CONV_IMPLS)}, "
                         f"or {len(CONV_LAYERS)} of them comma-separated ({', '.join(CONV_LAYERS)})")
    return impls


def resolve_pool_impl(pool_impl: str) -> str:
    """'auto' -> the measured best lowering for this backend; otherwise one of POOL_IMPLS."""
    if pool_impl == "auto":
        return CPU_POOL_IMPL if jax.default_backend() == "cpu" else "reduce_window"
    if pool_impl not in POOL_IMPLS:
        raise ValueError(f"pool_impl {pool_impl!r}: give 'auto' or one of {', '.join(POOL_IMPLS)}")
    return pool_impl


class ConvBNReLU(nn.Module):
    """Conv (bias, zero-initialised) -> BatchNorm -> ReLU [-> max pool `pool` = (window, strides)], NHWC."""

    features: int
    kernel: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: Any = ((0, 0), (0, 0))
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    conv_impl: str = "xla"
    pool: Any = None
    pool_impl: str = "argmax"

    @nn.compact
    def __call__(self, x, train: bool):
        x = Conv2D(self.features, self.kernel, strides=self.strides, padding=self.padding,
                   impl=self.conv_impl, kernel_init=he_normal, bias_init=nn.initializers.zeros,
                   dtype=self.dtype, param_dtype=jnp.float32, name="conv")(x)
        # Batch statistics are reduced in float32 even under bf16 compute (flax's default).
        x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                         epsilon=self.bn_epsilon, dtype=self.dtype, param_dtype=jnp.float32,
                         name="bn")(x)
        x = nn.relu(x)
        if self.pool is not None:
            x = max_pool(x, *self.pool, impl=self.pool_impl)
        return x


class Student(nn.Module):
    """VGG-M/VGGVox + BN speech emotion student.

    Attributes:
      conv_features: output channels of conv1..conv5; the paper's Table 4 has conv3 = 256
        (VGGVox uses 384), so it is a config field.
      fc6_features, fc7_features: widths of the 9x1 fc6 conv and the fc7 layer.
      num_classes: logits out (8 emotions, cmemo_jax.constants.EMOTIONS order).
      dtype: compute dtype (float32, or bfloat16 for mixed precision); parameters and
        batch-norm statistics stay float32.
      bn_momentum, bn_epsilon: batch-norm running-average momentum and variance epsilon.
      pool_impl: how the max pools are lowered (cmemo_jax.models.pooling): 'auto' (per backend,
        `resolve_pool_impl`) or one of POOL_IMPLS. Same values and parameters whichever is chosen.
      conv_impl: how convolutions are lowered (cmemo_jax.models.conv): 'auto' (per backend,
        `resolve_conv_impls`), one of CONV_IMPLS, or six comma-separated names for conv1..conv5,
        fc6. Same values and parameters whichever is chosen.
    """

    conv_features: Sequence[int] = (96, 256, 256, 256, 256)
    fc6_features: int = 4096
    fc7_features: int = 1024
    num_classes: int = 8
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    pool_impl: str = "auto"
    conv_impl: str = "auto"

    def features(self, spectrogram, train: bool = False):
        """Embedding before fc8: `[batch, freq, time]` -> `[batch, fc7_features]`."""
        if spectrogram.ndim != 3:
            raise ValueError(f"Student expects a spectrogram [batch, freq, time], got shape {spectrogram.shape}")
        c1, c2, c3, c4, c5 = self.conv_features
        block = dict(dtype=self.dtype, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                     pool_impl=resolve_pool_impl(self.pool_impl))
        impl = dict(zip(CONV_LAYERS, resolve_conv_impls(self.conv_impl)))
        x = spectrogram[..., None].astype(self.dtype)  # NHWC: H = frequency, W = time.
        x = ConvBNReLU(c1, (7, 7), (2, 2), ((1, 1), (1, 1)), name="conv1", conv_impl=impl["conv1"],
                       pool=((3, 3), (2, 2)), **block)(x, train)
        x = ConvBNReLU(c2, (5, 5), (2, 2), ((1, 1), (1, 1)), name="conv2", conv_impl=impl["conv2"],
                       pool=((3, 3), (2, 2)), **block)(x, train)
        x = ConvBNReLU(c3, (3, 3), (1, 1), ((1, 1), (1, 1)), name="conv3", conv_impl=impl["conv3"], **block)(x, train)
        x = ConvBNReLU(c4, (3, 3), (1, 1), ((1, 1), (1, 1)), name="conv4", conv_impl=impl["conv4"], **block)(x, train)
        x = ConvBNReLU(c5, (3, 3), (1, 1), ((1, 1), (1, 1)), name="conv5", conv_impl=impl["conv5"],
                       pool=((5, 3), (3, 2)), **block)(x, train)
        if x.shape[1] != 9 or x.shape[2] < 1:
            raise ValueError(
                f"Student needs 512 frequency bins and >= 65 frames (got spectrogram {spectrogram.shape}, "
                f"mpool5 output {x.shape[1:3]}); the 9x1 fc6 spans the 9 pooled frequency rows")
        # fc6: a 9x1 conv over the whole pooled frequency axis, one output per time step.
        x = ConvBNReLU(self.fc6_features, (9, 1), name="fc6", conv_impl=impl["fc6"], **block)(x, train)
        # apool6: average over time, so any clip length gives one vector (paper §5.1).
        x = jnp.mean(x, axis=(1, 2))
        x = nn.Dense(self.fc7_features, kernel_init=he_normal, bias_init=nn.initializers.zeros,
                     dtype=self.dtype, param_dtype=jnp.float32, name="fc7")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum,
                         epsilon=self.bn_epsilon, dtype=self.dtype, param_dtype=jnp.float32,
                         name="fc7_bn")(x)
        return nn.relu(x)

    @nn.compact
    def __call__(self, spectrogram, train: bool = False):
        """`[batch, 512, time]` normalised magnitude spectrogram -> `[batch, num_classes]` float32 logits."""
        x = self.features(spectrogram, train)
        logits = nn.Dense(self.num_classes, kernel_init=he_normal, bias_init=nn.initializers.zeros,
                          dtype=self.dtype, param_dtype=jnp.float32, name="fc8")(x)
        return logits.astype(jnp.float32)
