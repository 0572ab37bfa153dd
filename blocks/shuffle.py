"""ShuffleNetV2 unit with stride 1, the block of Naive Lite-HRNet."""

from __future__ import annotations

import torch
from torch import nn

from blocks.layers import ConvBNAct, cat_shuffle, dw_conv_bn, split_halves


class ShuffleUnit(nn.Module):
    """Split channels in two; one half goes through 1x1 -> dw3x3 -> 1x1; concatenate; shuffle."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.branch2 = nn.Sequential(
            ConvBNAct(half, half, 1),
            dw_conv_bn(half, 3),
            ConvBNAct(half, half, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = split_halves(x)
        return cat_shuffle([x1, self.branch2(x2)])
