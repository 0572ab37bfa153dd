"""Heads: Lite/Dite IterativeHead (inside the backbone) and the 1x1 keypoint conv (HRNet's simple head)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from blocks.layers import ConvBNAct


class IterativeHead(nn.Module):
    """From the lowest resolution up: add the bilinear-upsampled previous output, then dw3x3+BN, 1x1+BN+ReLU."""

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        rev = list(channels)[::-1]
        outs = rev[1:] + rev[-1:]
        self.projects = nn.ModuleList(
            nn.Sequential(
                ConvBNAct(c, c, 3, groups=c, act=None),
                ConvBNAct(c, o, 1, act="relu"),
            )
            for c, o in zip(rev, outs, strict=True)
        )
        self.out_channels = rev[-1]

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        last = None
        for s, project in zip(x[::-1], self.projects, strict=True):
            if last is not None:
                s = s + F.interpolate(last, size=s.shape[-2:], mode="bilinear", align_corners=True)
            last = project(s)
        return last


class KeypointHead(nn.Module):
    """1x1 conv (with bias) from the highest-resolution features to one heatmap per joint."""

    def __init__(self, in_channels: int, joints: int) -> None:
        super().__init__()
        self.final_layer = nn.Conv2d(in_channels, joints, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(x)
