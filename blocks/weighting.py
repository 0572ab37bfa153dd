"""Lite-HRNet's conditional channel weighting parts: cross-resolution weighting and spatial weighting."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blocks.layers import ConvBNAct, global_mean


def pool_to(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Average-pool x to `size`: a plain strided pooling when the ratio is whole (exports to ONNX everywhere)."""
    height, width = x.shape[-2:]
    if height % size[0] == 0 and width % size[1] == 0:
        kernel = (height // size[0], width // size[1])
        return F.avg_pool2d(x, kernel, kernel)
    return F.adaptive_avg_pool2d(x, size)


def global_pool(x: torch.Tensor) -> torch.Tensor:
    return global_mean(x)  # x.mean(dim=(2, 3), keepdim=True), with a channels-last gradient for channels-last x


class GlobalAvgPool(nn.AdaptiveAvgPool2d):
    """AdaptiveAvgPool2d(1) computed as a mean (same numbers, exports to ONNX as ReduceMean)."""

    def __init__(self) -> None:
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_pool(x)


def upsample_nearest(a: torch.Tensor, size: torch.Size) -> torch.Tensor:
    """Nearest upsampling of per-channel weights; a 1x1 map just broadcasts."""
    if a.shape[-2:] == (1, 1):
        return a
    # Plain ints: with traced sizes the legacy ONNX exporter loses the output shape (and dynamic kernels need it).
    return F.interpolate(a, size=(int(size[0]), int(size[1])), mode="nearest")


class CrossResolutionWeighting(nn.Module):
    """Pool every branch to the smallest resolution, 1x1 reduce + ReLU, 1x1 expand + sigmoid, reweight."""

    def __init__(self, channels: list[int], ratio: int) -> None:
        super().__init__()
        self.channels = list(channels)
        total = sum(channels)
        self.conv1 = ConvBNAct(total, int(total / ratio), 1, act="relu")
        self.conv2 = ConvBNAct(int(total / ratio), total, 1, act="sigmoid")

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        mini = x[-1].shape[-2:]
        pooled = torch.cat([pool_to(s, mini) for s in x[:-1]] + [x[-1]], dim=1)
        weights = self.conv2(self.conv1(pooled)).split(self.channels, dim=1)
        return [s * upsample_nearest(a, s.shape[-2:]) for s, a in zip(x, weights, strict=True)]


class SpatialWeighting(nn.Module):
    """Squeeze-excitation on one branch: global average, 1x1 (bias) + ReLU, 1x1 (bias) + sigmoid."""

    def __init__(self, channels: int, ratio: int) -> None:
        super().__init__()
        self.global_avgpool = GlobalAvgPool()
        self.conv1 = ConvBNAct(channels, int(channels / ratio), 1, norm=False, act="relu")
        self.conv2 = ConvBNAct(int(channels / ratio), channels, 1, norm=False, act="sigmoid")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv2(self.conv1(self.global_avgpool(x)))
