"""An independent PyTorch implementation of the speech student (VGG-M + BN, paper Table 4).

Used as a numerical reference for `cmemo_jax.models.Student` (tests/test_student_model.py) and as the
PyTorch peer in the student benchmarks (eager NCHW, channels_last, torch.compile).

Layout: input spectrogram `[batch, freq=512, time]` -> NCHW `[batch, 1, 512, time]` (H = frequency,
W = time, the same orientation as the Flax model's NHWC). Pooling rounds down (torch's default).

This module imports no jax/flax: `copy_flax_params` takes the Flax variables as (nested dicts of)
anything `numpy.asarray` accepts, so it also works on a machine without jax.

BatchNorm conventions: torch `momentum=0.1` is Flax `momentum=0.9` (torch: new = (1 - m) old + m batch).
Both normalise with the biased batch variance in training, but the running-variance update differs:
torch stores the *unbiased* batch variance (n / (n - 1)), Flax 0.12 the *biased* one.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _mpool5_size(n: int, pool5_kernel: int, pool5_stride: int) -> int:
    """One spatial axis through conv1 .. mpool5 (floor rounding); <= 0 means the input is too small."""
    n = (n + 2 - 7) // 2 + 1  # conv1 7x7 s2 p1
    n = (n - 3) // 2 + 1  # mpool1 3x3 s2
    n = (n + 2 - 5) // 2 + 1  # conv2 5x5 s2 p1
    n = (n - 3) // 2 + 1  # mpool2 3x3 s2 (conv3-5 keep the size)
    return (n - pool5_kernel) // pool5_stride + 1 if n >= pool5_kernel else 0


class ConvBNReLU(nn.Module):
    """Conv2d (bias) -> BatchNorm2d -> ReLU, NCHW."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0, bn_momentum=0.1, eps=1e-5):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=True)
        self.bn = nn.BatchNorm2d(cout, eps=eps, momentum=bn_momentum)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class TorchStudent(nn.Module):
    """VGG-M/VGGVox + BN speech emotion student, `[batch, 512, time]` -> `[batch, num_classes]`."""

    def __init__(self, conv_features: Sequence[int] = (96, 256, 256, 256, 256), fc6_features: int = 4096,
                 fc7_features: int = 1024, num_classes: int = 8, bn_momentum: float = 0.1,
                 eps: float = 1e-5):
        super().__init__()
        c1, c2, c3, c4, c5 = conv_features
        bn = dict(bn_momentum=bn_momentum, eps=eps)
        self.conv1 = ConvBNReLU(1, c1, 7, stride=2, padding=1, **bn)
        self.conv2 = ConvBNReLU(c1, c2, 5, stride=2, padding=1, **bn)
        self.conv3 = ConvBNReLU(c2, c3, 3, stride=1, padding=1, **bn)
        self.conv4 = ConvBNReLU(c3, c4, 3, stride=1, padding=1, **bn)
        self.conv5 = ConvBNReLU(c4, c5, 3, stride=1, padding=1, **bn)
        self.fc6 = ConvBNReLU(c5, fc6_features, (9, 1), **bn)
        self.fc7 = nn.Linear(fc6_features, fc7_features)
        self.fc7_bn = nn.BatchNorm1d(fc7_features, eps=eps, momentum=bn_momentum)
        self.fc8 = nn.Linear(fc7_features, num_classes)
        self._init_weights()

    def _init_weights(self):
        # Same recipe as the Flax model: N(0, 2 / fan_in), zero bias, BN scale one / shift zero.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, spectrogram: torch.Tensor) -> torch.Tensor:
        if spectrogram.dim() != 3:
            raise ValueError(f"TorchStudent expects [batch, freq, time], got {tuple(spectrogram.shape)}")
        freq, time = _mpool5_size(spectrogram.shape[1], 5, 3), _mpool5_size(spectrogram.shape[2], 3, 2)
        if freq != 9 or time < 1:
            raise ValueError(f"TorchStudent needs 512 frequency bins and >= 65 frames, got "
                             f"{tuple(spectrogram.shape)} (mpool5 would be {freq}x{time})")
        x = spectrogram.unsqueeze(1)  # [B, 1, freq, time]
        x = F.max_pool2d(self.conv1(x), 3, 2)
        x = F.max_pool2d(self.conv2(x), 3, 2)
        x = self.conv5(self.conv4(self.conv3(x)))
        x = F.max_pool2d(x, (5, 3), (3, 2))
        x = self.fc6(x)  # [B, fc6, 1, T']
        x = x.mean(dim=(2, 3))  # apool6 over time (and the singleton frequency axis)
        return F.relu(self.fc7_bn(self.fc7(x)))

    def forward(self, spectrogram: torch.Tensor) -> torch.Tensor:
        return self.fc8(self.features(spectrogram))


def distillation_loss_torch(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                            T: float = 2.0) -> torch.Tensor:
    """Batch mean of `-sum softmax(teacher / T) log_softmax(student / T)` (no T^2 factor)."""
    target = F.softmax(teacher_logits.detach().float() / T, dim=-1)
    return -(target * F.log_softmax(student_logits.float() / T, dim=-1)).sum(-1).mean()


def _np(x: Any) -> np.ndarray:
    return np.array(np.asarray(x, dtype=np.float32))  # writable copy, float32


def _copy(dst: torch.Tensor, src: np.ndarray):
    src = torch.from_numpy(np.ascontiguousarray(src))
    if tuple(dst.shape) != tuple(src.shape):
        raise ValueError(f"shape mismatch: torch {tuple(dst.shape)} vs flax {tuple(src.shape)}")
    with torch.no_grad():
        dst.copy_(src.to(dst.dtype))


def _copy_bn(bn: nn.Module, params: Mapping, stats: Mapping | None):
    _copy(bn.weight, _np(params["scale"]))
    _copy(bn.bias, _np(params["bias"]))
    if stats is not None:
        _copy(bn.running_mean, _np(stats["mean"]))
        _copy(bn.running_var, _np(stats["var"]))


def copy_flax_params(torch_model: TorchStudent, variables: Mapping) -> TorchStudent:
    """Copy Flax `Student` variables `{'params', 'batch_stats'}` into `torch_model` (in place).

    Conv kernels HWIO -> OIHW; Dense kernels `[in, out]` -> `[out, in]`; BN scale/bias -> weight/bias,
    batch_stats mean/var -> running_mean/running_var. Only numpy is used (no jax import needed).
    """
    params = variables["params"]
    stats = variables.get("batch_stats") if hasattr(variables, "get") else None
    for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6"):
        block = getattr(torch_model, name)
        p = params[name]
        _copy(block.conv.weight, _np(p["conv"]["kernel"]).transpose(3, 2, 0, 1))
        _copy(block.conv.bias, _np(p["conv"]["bias"]))
        _copy_bn(block.bn, p["bn"], None if stats is None else stats[name]["bn"])
    for name in ("fc7", "fc8"):
        layer = getattr(torch_model, name)
        _copy(layer.weight, _np(params[name]["kernel"]).T)
        _copy(layer.bias, _np(params[name]["bias"]))
    _copy_bn(torch_model.fc7_bn, params["fc7_bn"], None if stats is None else stats["fc7_bn"])
    return torch_model
