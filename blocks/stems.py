"""The three stems: HRNet (two strided 3x3 + bottleneck layer1), Lite-HRNet shuffle stem, Dite dynamic stem."""

from __future__ import annotations

import torch
from torch import nn

from blocks.context import GlobalContextModeling
from blocks.dynamic import DynConvBN
from blocks.layers import ConvBNAct, cat_shuffle, dense, dw_conv_bn
from blocks.residual import Bottleneck


class HRNetStem(nn.Module):
    """conv3x3/2 (64) + BN + ReLU, conv3x3/2 + BN + ReLU, then layer1: four Bottlenecks to 256 channels."""

    out_channels = 256

    def __init__(self, in_channels: int = 3, channels: int = 64, bottlenecks: int = 4) -> None:
        super().__init__()
        self.conv1 = ConvBNAct(in_channels, channels, 3, 2)
        self.conv2 = ConvBNAct(channels, channels, 3, 2)
        self.layer1 = nn.Sequential(
            *(Bottleneck(channels if i == 0 else channels * 4, channels) for i in range(bottlenecks))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(self.conv2(self.conv1(x)))


class LiteStem(nn.Module):
    """conv3x3/2 then a stride-2 shuffle unit (expand ratio 1): the Lite-HRNet stem, 1/4 resolution."""

    def __init__(self, in_channels: int = 3, channels: int = 32, expand_ratio: float = 1.0) -> None:
        super().__init__()
        self.out_channels = channels
        half = channels // 2
        mid = int(round(channels * expand_ratio))
        self.conv1 = ConvBNAct(in_channels, channels, 3, 2)
        self.branch1 = nn.Sequential(dw_conv_bn(half, 3, 2), ConvBNAct(half, channels - half, 1))
        self.expand_conv = ConvBNAct(half, mid, 1)
        self.depthwise_conv = dw_conv_bn(mid, 3, 2)
        self.linear_conv = ConvBNAct(mid, half, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = map(dense, self.conv1(x).chunk(2, dim=1))
        x2 = self.linear_conv(self.depthwise_conv(self.expand_conv(x2)))
        return cat_shuffle([self.branch1(x1), x2])


class DiteStem(nn.Module):
    """Dite-HRNet's dynamic stem: conv3x3/2, then two half-width branches of dynamic convs (K=4) with GCM."""

    def __init__(self, in_channels: int = 3, channels: int = 32, num_kernels: int = 4, ratio: int = 4) -> None:
        super().__init__()
        self.out_channels = channels
        half = channels // 2
        mid = half // 4
        k = num_kernels
        self.conv1 = DynConvBN(in_channels, channels, 3, 2, relu=True)
        self.branch1 = nn.Sequential(
            DynConvBN(half, half, 3, 2, groups=half, num_kernels=k),
            GlobalContextModeling(half, ratio),
            DynConvBN(half, half, 1, num_kernels=k, relu=True),
        )
        self.branch2 = nn.Sequential(
            DynConvBN(half, half, 3, 1, groups=half, num_kernels=k),
            GlobalContextModeling(half, ratio),
            DynConvBN(half, mid, 1, num_kernels=k, relu=True),
            DynConvBN(mid, half, 1, num_kernels=k),
            DynConvBN(half, half, 3, 2, groups=half, num_kernels=k, relu=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.conv1(x).chunk(2, dim=1)
        return cat_shuffle([self.branch1(x1), self.branch2(x2)])


STEMS: dict[str, type[nn.Module]] = {"hrnet": HRNetStem, "lite": LiteStem, "dite": DiteStem}
