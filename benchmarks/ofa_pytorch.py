"""PyTorch port of once-for-all's OFAMobileNetV3 supernet training path: the same-run baseline of supernet_step.py.

A self-contained port (torch and numpy only; the `ofa` package's data loaders pull in torchvision) of what MIT Han
Lab's `ofa` 0.1.0 runs in a train step of OFAMobileNetV3 with ks_list [3, 5, 7], expand_ratio_list [3, 4, 6] and
depth_list [2, 3, 4]: the same modules, parameter names and operations (centre-cropped 7x7 depthwise kernels passed
through the learned `7to5` / `5to3` transformation matrices, channel-sliced convolutions, BatchNorm with sliced
running statistics, squeeze-excite with its width from make_divisible, h-swish), OFA's default strides and no dropout.
Its state dict loads into OFA's OFAMobileNetV3 and back. `stepper` runs OFA's sandwich step: per subnet
set_active_subnet, forward, cross-entropy, backward (gradients accumulate), then one SGD-Nesterov update.
"""

from __future__ import annotations

from collections import OrderedDict

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError as e:
    raise ImportError("benchmarks/ofa_pytorch.py needs PyTorch; check importlib.util.find_spec('torch') before "
                      "importing it") from e

from search_spaces.ofa_mbv3 import DEFAULT_STAGE_STRIDES, DEPTH, EXPAND, KERNEL, make_divisible

KS_LIST = (3, 5, 7)
EXPAND_RATIO_LIST = (3, 4, 6)
DEPTH_LIST = (2, 3, 4)
BASE_STAGE_WIDTH = (16, 16, 24, 40, 80, 112, 160, 960, 1280)  # first conv, first block, 5 stages, final expand, mix
STRIDE_STAGES = (1, 2, 2, 2, 1, 2)  # first block, then the 5 elastic stages
ACT_STAGES = ("relu", "relu", "relu", "h_swish", "h_swish", "h_swish")
SE_STAGES = (False, False, True, False, True, True)
SE_REDUCTION = 4


class HSwish(nn.Module):
    def forward(self, x):
        return x * F.relu6(x + 3.0, inplace=True) / 6.0


class HSigmoid(nn.Module):
    def forward(self, x):
        return F.relu6(x + 3.0, inplace=True) / 6.0


def _activation(name: str) -> nn.Module:
    return nn.ReLU(inplace=True) if name == "relu" else HSwish()


def _sequential(**layers) -> nn.Sequential:
    return nn.Sequential(OrderedDict(layers))


def _conv_layer(cin: int, cout: int, kernel_size: int = 1, stride: int = 1, use_bn: bool = True) -> nn.Sequential:
    """OFA's ConvLayer as MobileNetV3 uses it: bias-free convolution, BatchNorm unless `use_bn` is false, h-swish."""
    conv = nn.Conv2d(cin, cout, kernel_size, stride, kernel_size // 2, bias=False)
    if use_bn:
        return _sequential(conv=conv, bn=nn.BatchNorm2d(cout), act=HSwish())
    return _sequential(conv=conv, act=HSwish())


class DynamicSeparableConv2d(nn.Module):
    """Depthwise convolution on the first x.size(1) channels of a max-kernel weight; a smaller kernel is the centre
    crop, mapped at each step down (7 to 5, 5 to 3) through a learned k^2 x k^2 matrix, as OFA's mode 1 does."""

    def __init__(self, channels: int, kernel_size_list, stride: int):
        super().__init__()
        self.kernel_sizes = sorted(set(kernel_size_list))
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels, self.kernel_sizes[-1], stride, groups=channels, bias=False)
        for small, large in zip(self.kernel_sizes[:-1], self.kernel_sizes[1:]):
            self.register_parameter(f"{large}to{small}_matrix", nn.Parameter(torch.eye(small ** 2)))
        self.active_kernel_size = self.kernel_sizes[-1]

    def active_filter(self, channels: int, kernel_size: int):
        filters = self.conv.weight[:channels]
        for small, large in reversed(list(zip(self.kernel_sizes[:-1], self.kernel_sizes[1:]))):
            if large <= kernel_size:
                break
            start = (large - small) // 2
            crop = filters[:, :, start:start + small, start:start + small].contiguous()
            mixed = F.linear(crop.view(-1, small ** 2), getattr(self, f"{large}to{small}_matrix"))
            filters = mixed.view(channels, 1, small, small)
        return filters

    def forward(self, x):
        channels, k = x.size(1), self.active_kernel_size
        filters = self.active_filter(channels, k).contiguous()
        return F.conv2d(x, filters, None, self.stride, k // 2, 1, channels)


class DynamicConv2d(nn.Module):
    """1x1 convolution with the weight sliced to [:active_out_channel, :x.size(1)]."""

    def __init__(self, max_in: int, max_out: int):
        super().__init__()
        self.conv = nn.Conv2d(max_in, max_out, 1, bias=False)
        self.active_out_channel = max_out

    def forward(self, x):
        return F.conv2d(x, self.conv.weight[:self.active_out_channel, :x.size(1)].contiguous())


class DynamicBatchNorm2d(nn.Module):
    """BatchNorm over the first x.size(1) channels of a max-width BatchNorm (OFA's bn_forward)."""

    def __init__(self, max_channels: int):
        super().__init__()
        self.bn = nn.BatchNorm2d(max_channels)

    def forward(self, x):
        bn, dim = self.bn, x.size(1)
        if dim == bn.num_features:
            return bn(x)
        if bn.training:
            bn.num_batches_tracked += 1
        return F.batch_norm(x, bn.running_mean[:dim], bn.running_var[:dim], bn.weight[:dim], bn.bias[:dim],
                            bn.training, bn.momentum if bn.training else 0.0, bn.eps)


class DynamicSE(nn.Module):
    """Squeeze-excite on x.size(1) channels with make_divisible(channels // 4) hidden units, weights sliced."""

    def __init__(self, max_channels: int):
        super().__init__()
        mid = make_divisible(max_channels // SE_REDUCTION)
        self.fc = _sequential(reduce=nn.Conv2d(max_channels, mid, 1), relu=nn.ReLU(inplace=True),
                              expand=nn.Conv2d(mid, max_channels, 1), h_sigmoid=HSigmoid())

    def forward(self, x):
        channels = x.size(1)
        mid = make_divisible(channels // SE_REDUCTION)
        reduce, expand = self.fc.reduce, self.fc.expand
        y = x.mean(3, keepdim=True).mean(2, keepdim=True)
        y = self.fc.relu(F.conv2d(y, reduce.weight[:mid, :channels].contiguous(), reduce.bias[:mid]))
        y = F.conv2d(y, expand.weight[:channels, :mid].contiguous(), expand.bias[:channels])
        return x * self.fc.h_sigmoid(y)


class DynamicMBConvLayer(nn.Module):
    """Inverted bottleneck with elastic kernel (active_kernel_size) and expand ratio (active_expand_ratio)."""

    def __init__(self, cin: int, cout: int, stride: int, act: str, use_se: bool):
        super().__init__()
        mid = make_divisible(round(cin * max(EXPAND_RATIO_LIST)))
        self.inverted_bottleneck = _sequential(conv=DynamicConv2d(cin, mid), bn=DynamicBatchNorm2d(mid),
                                               act=_activation(act))
        depth = OrderedDict(conv=DynamicSeparableConv2d(mid, KS_LIST, stride), bn=DynamicBatchNorm2d(mid),
                            act=_activation(act))
        if use_se:
            depth["se"] = DynamicSE(mid)
        self.depth_conv = nn.Sequential(depth)
        self.point_linear = _sequential(conv=DynamicConv2d(mid, cout), bn=DynamicBatchNorm2d(cout))
        self.active_kernel_size = max(KS_LIST)
        self.active_expand_ratio = max(EXPAND_RATIO_LIST)

    def forward(self, x):
        self.inverted_bottleneck.conv.active_out_channel = make_divisible(round(x.size(1) * self.active_expand_ratio))
        self.depth_conv.conv.active_kernel_size = self.active_kernel_size
        return self.point_linear(self.depth_conv(self.inverted_bottleneck(x)))


class ResidualBlock(nn.Module):
    """conv(x), plus x where OFA gives the block an identity shortcut."""

    def __init__(self, conv: nn.Module, identity: bool):
        super().__init__()
        self.conv = conv
        self.identity = identity

    def forward(self, x):
        return self.conv(x) + x if self.identity else self.conv(x)


def _first_block(channels: int) -> ResidualBlock:
    """OFA's fixed first block: MBConvLayer with expand ratio 1 (3x3 depthwise, BN, ReLU; 1x1, BN), identity."""
    depth_conv = _sequential(conv=nn.Conv2d(channels, channels, 3, STRIDE_STAGES[0], 1, groups=channels, bias=False),
                             bn=nn.BatchNorm2d(channels), act=_activation(ACT_STAGES[0]))
    point_linear = _sequential(conv=nn.Conv2d(channels, channels, 1, bias=False), bn=nn.BatchNorm2d(channels))
    return ResidualBlock(_sequential(depth_conv=depth_conv, point_linear=point_linear), identity=True)


def _per_block(value, n: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


class OFAMobileNetV3Torch(nn.Module):
    """OFA's OFAMobileNetV3 supernet (ks 3/5/7, expand 3/4/6, depth 2/3/4, no dropout) with its parameter names."""

    def __init__(self, n_classes: int = 10, width_mult: float = 1.0):
        super().__init__()
        widths = [make_divisible(w * width_mult) for w in BASE_STAGE_WIDTH]
        self.first_conv = _conv_layer(3, widths[0], kernel_size=3, stride=2)
        blocks, self.block_group_info, cin = [_first_block(widths[1])], [], widths[1]
        for cout, stride, act, use_se in zip(widths[2:7], STRIDE_STAGES[1:], ACT_STAGES[1:], SE_STAGES[1:]):
            self.block_group_info.append(list(range(len(blocks), len(blocks) + max(DEPTH_LIST))))
            for i in range(max(DEPTH_LIST)):
                s = stride if i == 0 else 1
                blocks.append(ResidualBlock(DynamicMBConvLayer(cin, cout, s, act, use_se), s == 1 and cin == cout))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.final_expand_layer = _conv_layer(cin, widths[7])
        self.feature_mix_layer = _conv_layer(widths[7], widths[8], use_bn=False)
        self.classifier = _sequential(linear=nn.Linear(widths[8], n_classes))
        self.runtime_depth = [len(group) for group in self.block_group_info]

    def set_active_subnet(self, ks, e, d):
        """Per-block kernel sizes and expand ratios (20 each, or one for all), per-stage depths (5, or one)."""
        n = len(self.blocks) - 1
        for block, k, ratio in zip(self.blocks[1:], _per_block(ks, n), _per_block(e, n)):
            block.conv.active_kernel_size = k
            block.conv.active_expand_ratio = ratio
        for i, depth in enumerate(_per_block(d, len(self.block_group_info))):
            self.runtime_depth[i] = min(len(self.block_group_info[i]), depth)

    def forward(self, x):
        x = self.blocks[0](self.first_conv(x))
        for group, depth in zip(self.block_group_info, self.runtime_depth):
            for idx in group[:depth]:
                x = self.blocks[idx](x)
        x = self.final_expand_layer(x).mean(3, keepdim=True).mean(2, keepdim=True)
        x = self.feature_mix_layer(x)
        return self.classifier(x.view(x.size(0), -1))


def ofa_setting(space, arch) -> dict:
    """OFA's set_active_subnet arguments (ks, e: 20 ints; d: 5 ints) of one architecture of our ofa_mbv3 space."""
    if space.name != "ofa_mbv3" or space.stage_strides != DEFAULT_STAGE_STRIDES:
        raise ValueError("ofa_setting needs an ofa_mbv3 space with OFA's default stage strides "
                         f"{list(DEFAULT_STAGE_STRIDES)}")
    v = space.values(space.validate(arch))[0]
    return {"ks": v[KERNEL].tolist(), "e": v[EXPAND].tolist(), "d": v[DEPTH].tolist()}


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=4e-5)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x, y, settings: list[dict]) -> None:
    """One OFA step: for each setting, set_active_subnet, forward, cross-entropy, backward; then one update."""
    for setting in settings:
        model.set_active_subnet(**setting)
        F.cross_entropy(model(x), y).backward()
    optimizer.step()
    optimizer.zero_grad()


def stepper(res: int, batch: int, width: float, classes: int, seed: int = 0):
    """step(settings): one `train_step` of a fresh supernet in train mode (SGD-Nesterov) on one fixed random batch."""
    torch.manual_seed(seed)
    model = OFAMobileNetV3Torch(classes, width).train()
    optimizer = sgd(model)
    x = torch.randn(batch, 3, res, res)
    y = torch.randint(0, classes, (batch,))
    return lambda settings: train_step(model, optimizer, x, y, settings)
