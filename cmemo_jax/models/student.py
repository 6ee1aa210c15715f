"""The speech student: VGG-M / VGGVox with batch norm (paper Table 4), 8 emotion logits out.

Layout: input spectrogram `[batch, freq=512, time]` -> NHWC `[batch, freq, time, 1]`.
For a 4.024 s clip (400 frames) the feature maps are, with pooling rounding down (design.md §2):

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

from cmemo_jax.models import fused
from cmemo_jax.models.conv import Conv2D
from cmemo_jax.models.pooling import max_pool

# N(0, 2 / fan_in): untruncated normal, as MatConvNet's `randn * sqrt(2 / (h w cin))`.
he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


# Convolution lowering per layer (conv1..conv5, fc6) for conv_impl='auto', chosen by measuring the
# whole train step (BENCHMARKS.md, "conv lowering"). On XLA:CPU the im2col GEMM beats XLA's own
# convolution for conv1 (one input channel: +13 % on the step) and fc6 (a 9x1 conv over the whole
# pooled frequency axis, i.e. a dense layer); for conv2 it wins in isolation but halves the speed
# of the whole step (a 457 MB patch matrix at batch 16), and XLA's convolution is the faster one
# for the 3x3 convs. On GPU/TPU XLA's own convolutions (cuDNN, the TPU emitter) are used throughout.
CPU_CONV_IMPLS = ("patches", "gemmgrad", "xla", "xla", "xla", "patches")
NUM_CONV_LAYERS = 6


def resolve_conv_impls(conv_impl: str) -> tuple[str, ...]:
    """'auto' | one lowering for all layers | six comma-separated lowerings -> 6-tuple."""
    if conv_impl == "auto":
        return CPU_CONV_IMPLS if jax.default_backend() == "cpu" else ("xla",) * NUM_CONV_LAYERS
    impls = tuple(part.strip() for part in conv_impl.split(","))
    if len(impls) == 1:
        return impls * NUM_CONV_LAYERS
    if len(impls) != NUM_CONV_LAYERS:
        raise ValueError(f"conv_impl {conv_impl!r}: give one lowering or {NUM_CONV_LAYERS} (conv1..conv5, fc6)")
    return impls


class BatchNormReLUMaxPool(nn.Module):
    """BatchNorm -> ReLU -> max pool as one op (cmemo_jax.models.fused): the variables and maths of
    `nn.BatchNorm` (params 'scale', 'bias'; batch_stats 'mean', 'var', biased batch variance,
    running averages with `momentum`) followed by `nn.relu` and a `window`/`strides` max pool."""

    window: tuple[int, int]
    strides: tuple[int, int]
    use_running_average: bool
    momentum: float = 0.9
    epsilon: float = 1e-5

    @nn.compact
    def __call__(self, z):
        c = z.shape[-1]
        ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32), (c,))
        ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32), (c,))
        scale = self.param("scale", nn.initializers.ones, (c,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        window, strides = tuple(self.window), tuple(self.strides)
        if self.use_running_average:
            return fused.bn_relu_max_pool_eval(z, scale, bias, ra_mean.value, ra_var.value, self.epsilon,
                                               window, strides)
        y, mean, var = fused.bn_relu_max_pool_train(z, scale, bias, self.epsilon, window, strides)
        if not self.is_initializing():
            ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
            ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
        return y


class ConvBNReLU(nn.Module):
    """Conv (bias, zero-initialised) -> BatchNorm -> ReLU [-> max pool `pool` = (window, strides)], NHWC.

    With a pool and pool_impl='fused' the BatchNorm, ReLU and pool run as one op
    (`BatchNormReLUMaxPool`, same variables under the name 'bn'); otherwise flax's BatchNorm, ReLU
    and `max_pool(..., pool_impl)`.
    """

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
        if self.pool is not None and self.pool_impl == "fused":
            window, strides = self.pool
            return BatchNormReLUMaxPool(window, strides, use_running_average=not train, momentum=self.bn_momentum,
                                        epsilon=self.bn_epsilon, name="bn")(x)
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
      pool_impl: how BatchNorm -> ReLU -> max pool is lowered: flax's BatchNorm and ReLU followed by
        a max pool lowered as 'argmax' (default), 'slices' or 'reduce_window'
        (cmemo_jax.models.pooling), or 'fused', all three as one op with a hand-written backward pass
        (cmemo_jax.models.fused; slower on XLA:CPU, see BENCHMARKS.md). Same values and parameters
        whichever is chosen.
      conv_impl: how convolutions are lowered (see cmemo_jax.models.conv): 'auto' (per backend,
        `resolve_conv_impls`), one of 'xla' | 'gemmgrad' | 'patches' | 'tapgrad' | 's2d', or six comma-separated
        names for conv1..conv5, fc6. Same values and parameters whichever is chosen.
    """

    conv_features: Sequence[int] = (96, 256, 256, 256, 256)
    fc6_features: int = 4096
    fc7_features: int = 1024
    num_classes: int = 8
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    pool_impl: str = "argmax"
    conv_impl: str = "auto"

    def features(self, spectrogram, train: bool = False):
        """Embedding before fc8: `[batch, freq, time]` -> `[batch, fc7_features]`."""
        if spectrogram.ndim != 3:
            raise ValueError(f"Student expects a spectrogram [batch, freq, time], got shape {spectrogram.shape}")
        c1, c2, c3, c4, c5 = self.conv_features
        block = dict(dtype=self.dtype, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                     pool_impl=self.pool_impl)
        impl = dict(zip(("conv1", "conv2", "conv3", "conv4", "conv5", "fc6"), resolve_conv_impls(self.conv_impl)))
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


def student_kwargs(model_config) -> dict:
    """Student constructor arguments from `config.model` (a ConfigDict) or an export's
    `meta['model']` (a plain dict from JSON): the one place both are turned into a model."""
    get = model_config.get
    return {
        "conv_features": tuple(int(c) for c in model_config["conv_features"]),
        "fc6_features": int(model_config["fc6_features"]),
        "fc7_features": int(model_config["fc7_features"]),
        "num_classes": int(model_config["num_classes"]),
        "dtype": jnp.dtype(get("dtype", "float32")),  # 'bfloat16' included
        "pool_impl": str(get("pool_impl", "argmax")),
        "conv_impl": str(get("conv_impl", "auto")),
    }
