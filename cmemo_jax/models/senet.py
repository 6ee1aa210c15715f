"""The face teacher: SE-ResNet-50 as the authors used it (VGGFace2 / FERPlus `senet50_ferplus_dag`,
converted from Caffe), 8 emotion logits out (paper §3.1, docs/method.md §2 "Teacher").

Layout NHWC. For a 224x224 RGB face (0-255, the model subtracts MEAN_RGB itself) the maps are:

  conv1_7x7_s2 64 7x7 s2 p3 + BN + ReLU -> 112x112   pool1 max 3x3 s2, ceil mode -> 56x56
  conv2_x  3 blocks, width  64 -> 256 ch, 56x56
  conv3_x  4 blocks, width 128 -> 512 ch, 28x28      (stride 2 on the first block's 1x1_reduce)
  conv4_x  6 blocks, width 256 -> 1024 ch, 14x14     (idem)
  conv5_x  3 blocks, width 512 -> 2048 ch, 7x7       (idem)
  pool5 7x7 average (here: the global mean, equal at 224 and valid at any size) -> 2048
  dropout 0.5 (training only) -> classifier 8 (Dense with bias)

Each bottleneck block `conv{S}_{B}`: 1x1_reduce (stride s) + BN + ReLU -> 3x3 p1 + BN + ReLU ->
1x1_increase (4x width) + BN -> squeeze-and-excitation (global mean -> 1x1_down + bias -> ReLU ->
1x1_up + bias -> sigmoid -> channel scale) -> + shortcut (identity, or 1x1_proj stride s + BN on a
stage's first block) -> ReLU. Submodule names follow the authors' parameter names, so that
`{block}_{layer}` is the name of the same tensor in their PyTorch state_dict (cmemo_jax.convert).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

# VGGFace2 mean face colour, RGB order, pixel units (0-255); subtracted inside the model.
MEAN_RGB = (131.0912, 103.8827, 91.4953)

# N(0, 2 / fan_in) (He et al.): untruncated normal, as in the student.
he_normal = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


def ceil_pool_padding(size: int, window: int, stride: int) -> int:
    """Extra trailing padding that makes a VALID max pool produce Caffe/PyTorch `ceil_mode` output.

    Output length ceil((size - window) / stride) + 1, minus one if the last window would start past
    the input (PyTorch's rule), e.g. 112 -> 56 for a 3x3 stride-2 pool (floor mode: 55). The padded
    cells hold -inf (flax's max pool pads with the reduction's identity), so they never win.
    """
    out = -(-(size - window) // stride) + 1
    if (out - 1) * stride >= size:
        out -= 1
    return max((out - 1) * stride + window - size, 0)


def max_pool_ceil(x, window: int, stride: int):
    """`[n, h, w, c]` -> `[n, ceil((h - k) / s) + 1, ..., c]` max pool without leading padding."""
    pad_h = ceil_pool_padding(x.shape[1], window, stride)
    pad_w = ceil_pool_padding(x.shape[2], window, stride)
    return nn.max_pool(x, (window, window), (stride, stride), padding=((0, pad_h), (0, pad_w)))


class SEBottleneck(nn.Module):
    """One SE-ResNet bottleneck block, `[n, h, w, c_in]` -> `[n, h / stride, w / stride, 4 width]`.

    Caffe-style: the stride sits on the first 1x1 conv (`1x1_reduce`), not on the 3x3, as in the
    authors' converted model (torchvision's ResNet puts it on the 3x3; the weights would not match).
    """

    width: int
    stride: int = 1
    project: bool = False
    se_reduction: int = 16
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    def _conv_bn(self, x, features: int, kernel: int, stride: int, name: str, train: bool):
        """Conv `name` (no bias: the BN's bias replaces it) -> BatchNorm `name`_bn."""
        pad = kernel // 2
        x = nn.Conv(features, (kernel, kernel), (stride, stride), padding=((pad, pad), (pad, pad)),
                    use_bias=False, kernel_init=he_normal, dtype=self.dtype, param_dtype=jnp.float32,
                    name=name)(x)
        # Batch statistics are reduced in float32 even under bf16 compute (flax's default).
        return nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                            dtype=self.dtype, param_dtype=jnp.float32, name=f"{name}_bn")(x)

    def _squeeze_excite(self, x):
        """Per-channel gates in (0, 1) `[n, 1, 1, c]` from the global mean of x `[n, h, w, c]`."""
        c = x.shape[-1]
        hidden = max(c // self.se_reduction, 1)
        # Spatial mean in float32: under bf16 a 56x56 sum would lose most of its mantissa.
        s = jnp.mean(x.astype(jnp.float32), axis=(1, 2), keepdims=True).astype(self.dtype)
        conv = dict(kernel_size=(1, 1), kernel_init=he_normal, bias_init=nn.initializers.zeros,
                    dtype=self.dtype, param_dtype=jnp.float32)
        s = nn.relu(nn.Conv(hidden, name="1x1_down", **conv)(s))
        return nn.sigmoid(nn.Conv(c, name="1x1_up", **conv)(s))

    @nn.compact
    def __call__(self, x, train: bool):
        out_features = 4 * self.width
        r = nn.relu(self._conv_bn(x, self.width, 1, self.stride, "1x1_reduce", train))
        r = nn.relu(self._conv_bn(r, self.width, 3, 1, "3x3", train))
        r = self._conv_bn(r, out_features, 1, 1, "1x1_increase", train)
        # SE recalibrates the residual branch only, before the addition (Hu et al., Fig. 3).
        r = r * self._squeeze_excite(r)
        shortcut = self._conv_bn(x, out_features, 1, self.stride, "1x1_proj", train) if self.project else x
        return nn.relu(r + shortcut)


class SENet50(nn.Module):
    """SE-ResNet-50 face emotion teacher (Caffe-style strides, ceil-mode stem pool, SE reduction 16).

    Attributes (all JSON-able; `cmemo_jax.models.registry` rebuilds the model from them):
      num_classes: logits out (8 emotions, cmemo_jax.constants.EMOTIONS order; 8631 identities for
        the VGGFace2 model).
      stage_sizes: bottleneck blocks per stage (conv2_x .. conv5_x); (3, 4, 6, 3) is ResNet-50.
      width: stem channels and the first stage's bottleneck width; stage s has width * 2**s and
        outputs 4x that, so the embedding has 4 * width * 2**(len(stage_sizes) - 1) = 2048 channels
        at the default.
      se_reduction: squeeze-and-excitation bottleneck ratio (channels / hidden units).
      dropout_rate: dropout before the classifier, training only (rng name 'dropout').
      dtype: compute dtype (float32, or bfloat16 on GPU/TPU); parameters and batch-norm statistics
        stay float32 and the logits are returned as float32.
      bn_momentum, bn_epsilon: BatchNorm running-average decay and variance epsilon.
    """

    num_classes: int = 8
    stage_sizes: tuple = (3, 4, 6, 3)
    width: int = 64
    se_reduction: int = 16
    dropout_rate: float = 0.5
    dtype: Any = jnp.float32
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5

    @property
    def num_features(self) -> int:
        """Channels of the pooled embedding: 4 * width * 2**(stages - 1) (2048 at the default)."""
        return 4 * self.width * 2 ** (len(self.stage_sizes) - 1)

    def _check_input(self, images):
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"SENet50 expects RGB images [batch, height, width, 3], got shape {images.shape}")
        # Four stride-2 stages after the stride-4 stem: anything under 32 px collapses to nothing.
        min_size = 2 ** (len(self.stage_sizes) + 1)
        if min(images.shape[1:3]) < min_size:
            raise ValueError(f"SENet50 needs images of at least {min_size}x{min_size}, got {images.shape[1:3]}")

    def _stem(self, x, train: bool):
        x = nn.Conv(self.width, (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False, kernel_init=he_normal,
                    dtype=self.dtype, param_dtype=jnp.float32, name="conv1_7x7_s2")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                         dtype=self.dtype, param_dtype=jnp.float32, name="conv1_7x7_s2_bn")(x)
        # Ceil mode, as the authors' Caffe pool1: 112 -> 56 at 224 input (floor mode would give 55).
        return max_pool_ceil(nn.relu(x), 3, 2)

    @nn.compact
    def _forward(self, images, train: bool, head: bool):
        """The whole network; `head=False` stops at the pooled embedding (no classifier call, so
        `features` needs no dropout rng in training mode)."""
        self._check_input(images)
        # Mean subtraction in float32 before any cast: bf16 has too few bits for 131.09.
        x = (images.astype(jnp.float32) - jnp.asarray(MEAN_RGB, jnp.float32)).astype(self.dtype)
        x = self._stem(x, train)
        for s, num_blocks in enumerate(self.stage_sizes):
            for b in range(num_blocks):
                # The first stage follows the stride-2 pool, so only later stages downsample.
                stride = 2 if s > 0 and b == 0 else 1
                x = SEBottleneck(self.width * 2 ** s, stride=stride, project=b == 0, se_reduction=self.se_reduction,
                                 dtype=self.dtype, bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon,
                                 name=f"conv{s + 2}_{b + 1}")(x, train)
        # pool5: the authors' 7x7 average pool covers the whole 7x7 map at 224; the global mean is
        # the same there and works at any input size. Reduced in float32.
        embedding = jnp.mean(x.astype(jnp.float32), axis=(1, 2))
        if not head:
            return embedding
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(embedding.astype(self.dtype))
        logits = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="classifier")(x)
        return logits.astype(jnp.float32)

    def __call__(self, images, train: bool = False):
        """`[batch, H, W, 3]` RGB in 0-255 (224x224 as trained) -> `[batch, num_classes]` float32 logits."""
        return self._forward(images, train, head=True)

    def features(self, images, train: bool = False):
        """`[batch, H, W, 3]` RGB in 0-255 -> `[batch, num_features]` float32 pooled embedding (pool5).

        Use as `model.apply(variables, images, method='features')`.
        """
        return self._forward(images, train, head=False)

