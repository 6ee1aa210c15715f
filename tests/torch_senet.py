"""Independent PyTorch SE-ResNet-50 with the authors' parameter names (the `senet50_ferplus_dag` /
`senet50_ft_dag` models converted from Caffe): the reference of tests/test_senet.py and the peer of
benchmarks/bench_teacher.py.

Written from the architecture description (docs/method.md §2 "Teacher", Hu et al. 2018), not from the
Flax code. Every layer is an attribute of the top module under the authors' flat name
(`conv3_1_1x1_reduce`, `conv3_1_1x1_reduce_bn`, ...), so `state_dict()` keys are exactly theirs.

Input: NCHW float, RGB, already mean-subtracted (the authors' models keep the mean in `meta` and
leave the subtraction to the caller). Output: `[batch, num_classes]` logits.
"""
from __future__ import annotations

import torch
from torch import nn

SE_LAYERS = ("1x1_reduce", "3x3", "1x1_increase", "1x1_down", "1x1_up")


class TorchSENet50(nn.Module):
    """SE-ResNet-50, Caffe flavour: stride 2 on the first 1x1 conv of a stage's first block,
    ceil-mode stem max pool, SE on the residual branch before the addition.

    Args:
      width: stem channels = first stage's bottleneck width (stage s: width * 2**s, outputs 4x).
      stage_sizes: blocks per stage conv2_x .. conv5_x.
      num_classes: classifier outputs.
      se_reduction: SE hidden units = block channels // se_reduction.
      head: 'conv' (the authors' 1x1 Conv2d classifier on the pooled map) or 'linear' (nn.Linear).
      pool_size: kernel of the final average pool (7 at 224 input, the authors' pool5_7x7_s1); it
        must cover the whole final map, whose size it is for smaller inputs.
    """

    def __init__(self, width: int = 64, stage_sizes=(3, 4, 6, 3), num_classes: int = 8, se_reduction: int = 16,
                 head: str = "conv", pool_size: int = 7):
        super().__init__()
        if head not in ("conv", "linear"):
            raise ValueError(f"head must be 'conv' or 'linear', got {head!r}")
        self.head = head
        self.conv1_7x7_s2 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.conv1_7x7_s2_bn = nn.BatchNorm2d(width, eps=1e-5)
        self.pool1_3x3_s2 = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
        self.blocks: list[tuple[str, bool]] = []  # (name prefix, has projection shortcut)
        channels = width
        for s, n in enumerate(stage_sizes):
            mid = width * 2 ** s
            out = 4 * mid
            hidden = max(out // se_reduction, 1)
            for b in range(1, n + 1):
                prefix = f"conv{s + 2}_{b}"
                stride = 2 if s > 0 and b == 1 else 1
                self._conv_bn(f"{prefix}_1x1_reduce", channels, mid, 1, stride, 0)
                self._conv_bn(f"{prefix}_3x3", mid, mid, 3, 1, 1)
                self._conv_bn(f"{prefix}_1x1_increase", mid, out, 1, 1, 0)
                setattr(self, f"{prefix}_1x1_down", nn.Conv2d(out, hidden, kernel_size=1, bias=True))
                setattr(self, f"{prefix}_1x1_up", nn.Conv2d(hidden, out, kernel_size=1, bias=True))
                if b == 1:
                    self._conv_bn(f"{prefix}_1x1_proj", channels, out, 1, stride, 0)
                self.blocks.append((prefix, b == 1))
                channels = out
        self.pool5_7x7_s1 = nn.AvgPool2d(kernel_size=pool_size, stride=1)
        if head == "conv":
            self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1, bias=True)
        else:
            self.classifier = nn.Linear(channels, num_classes, bias=True)

    def _conv_bn(self, name: str, cin: int, cout: int, k: int, stride: int, pad: int) -> None:
        setattr(self, name, nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=pad, bias=False))
        setattr(self, f"{name}_bn", nn.BatchNorm2d(cout, eps=1e-5))

    def _apply_conv_bn(self, name: str, x):
        return getattr(self, f"{name}_bn")(getattr(self, name)(x))

    def _block(self, prefix: str, project: bool, x):
        r = torch.relu(self._apply_conv_bn(f"{prefix}_1x1_reduce", x))
        r = torch.relu(self._apply_conv_bn(f"{prefix}_3x3", r))
        r = self._apply_conv_bn(f"{prefix}_1x1_increase", r)
        gate = torch.mean(r, dim=(2, 3), keepdim=True)
        gate = torch.relu(getattr(self, f"{prefix}_1x1_down")(gate))
        gate = torch.sigmoid(getattr(self, f"{prefix}_1x1_up")(gate))
        shortcut = self._apply_conv_bn(f"{prefix}_1x1_proj", x) if project else x
        return torch.relu(r * gate + shortcut)

    def features(self, x):
        """NCHW mean-subtracted RGB -> `[batch, channels]` pooled embedding."""
        x = self.pool1_3x3_s2(torch.relu(self._apply_conv_bn("conv1_7x7_s2", x)))
        for prefix, project in self.blocks:
            x = self._block(prefix, project, x)
        x = self.pool5_7x7_s1(x)
        if x.shape[2:] != (1, 1):
            raise ValueError(f"pool_size does not cover the final {tuple(x.shape[2:])} map")
        return x.flatten(1)

    def forward(self, x):
        x = self.features(x)
        if self.head == "conv":
            return self.classifier(x[:, :, None, None]).flatten(1)
        return self.classifier(x)


def randomize_(model: nn.Module, images, seed: int = 0) -> nn.Module:
    """Random non-trivial weights and BN statistics in place, so a converter that dropped or
    swapped any of them (scale / bias, mean / var, a transposed kernel) gives different outputs.

    Convs and the classifier: He normal; their biases N(0, 0.1); BN scale U(0.5, 1.5), bias N(0, 0.1).
    BN running statistics: first measured on `images` (NCHW, mean-subtracted), then perturbed
    (mean + 0.2 std N(0, 1), var x U(0.7, 1.4)). Statistics drawn from nowhere would let the
    activations of 50 layers grow or shrink without bound (logits ~1e4, and PyTorch's own float32
    forward 20 % away from its float64 one): no comparison could then tell a bug from rounding.
    """
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.copy_(torch.randn(module.bias.shape, generator=g) * 0.1)
        for bn in bns:
            bn.weight.copy_(0.5 + torch.rand(bn.num_features, generator=g))
            bn.bias.copy_(torch.randn(bn.num_features, generator=g) * 0.1)
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average: after one batch, exactly that batch's statistics
        was_training = model.training
        model.train()
        model(images)
        model.train(was_training)
        for bn in bns:
            bn.momentum = 0.1
            std = bn.running_var.sqrt()
            bn.running_mean.add_(0.2 * std * torch.randn(bn.num_features, generator=g))
            bn.running_var.mul_(0.7 + 0.7 * torch.rand(bn.num_features, generator=g))
    return model
