"""Dite-HRNet's dynamic convolutions: kernel attention, dynamic kernel aggregation, dynamic split conv."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from blocks.layers import cat_shuffle, dense, is_channels_last, to_channels_last, to_nchw
from blocks.weighting import GlobalAvgPool


class KernelAttention(nn.Module):
    """Per-sample weights of the K kernels: global average, 1x1 + BN + ReLU, 1x1 (bias), sigmoid."""

    def __init__(self, channels: int, num_kernels: int, ratio: int = 4) -> None:
        super().__init__()
        mid = num_kernels if channels == 3 else channels // ratio
        self.avg_pool = GlobalAvgPool()
        self.conv1 = nn.Conv2d(channels, mid, 1, bias=False)
        self.bn = nn.BatchNorm2d(mid)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, num_kernels, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn(self.conv1(self.avg_pool(x))))
        return self.sigmoid(self.conv2(x).flatten(1))


class _FoldBatch(torch.autograd.Function):
    """(B,C,H,W) -> the (1,B*C,H,W) view of the grouped formulation, laid out channels-last; `batch` < 0 unfolds.

    Channels-last (1,B*C,H,W) is (H,W,B,C) in memory: one copy from (B,H,W,C) each way, and the grouped conv over
    it runs on oneDNN's channels-last kernels. The gradient takes the inverse copy, so it reaches the producer of
    x channels-last-dense.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, batch: int) -> torch.Tensor:
        ctx.batch = batch
        if batch > 0:
            _, channels, height, width = x.shape
            folded = x.permute(2, 3, 0, 1).contiguous().view(1, height, width, batch * channels)
            return folded.permute(0, 3, 1, 2)
        _, channels, height, width = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(height, width, -batch, channels // -batch)
        return pixels.permute(2, 3, 0, 1).contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _FoldBatch.apply(grad, -ctx.batch), None


class KernelAggregation(nn.Module):
    """Convolution whose kernel is the attention-weighted sum of K kernels, a different one per sample.

    `formulation` picks how the per-sample convolution is computed; all give the same numbers:
    - "fast" (default): 1x1 dense kernels as one batched matmul in channels-last order; other kernels as the grouped
      conv over the 1x(B*C) view, which for a channels-last x is itself laid out channels-last (`_FoldBatch`) up to
      3x3, and copied to NCHW (output copied back) for larger kernels;
    - "grouped": the official formulation, always one grouped conv over the (NCHW) 1x(B*C) view.
    """

    formulation = "fast"

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, groups: int, num_kernels: int
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.groups = kernel_size, stride, groups
        self.num_kernels = num_kernels
        self.weight = nn.Parameter(
            torch.empty(num_kernels, out_channels, in_channels // groups, kernel_size, kernel_size)
        )
        self.bias = None
        for k in range(num_kernels):
            nn.init.kaiming_uniform_(self.weight.data[k])

    def forward(self, x: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        weight = attention @ self.weight.reshape(self.num_kernels, -1)
        if self.formulation == "grouped":
            return self._grouped(x, weight)
        if self.kernel_size == 1 and self.groups == 1 and self.stride == 1:
            return self._pointwise(x, weight)
        if is_channels_last(x) and self.kernel_size <= 3:
            out = self._conv(_FoldBatch.apply(x, x.shape[0]), weight, x.shape[0])
            return _FoldBatch.apply(out, -x.shape[0])
        if is_channels_last(x):  # oneDNN's channels-last weight gradient is slow for larger kernels
            return to_channels_last(self._grouped(to_nchw(x), weight))
        return self._grouped(x, weight)

    def _conv(self, folded: torch.Tensor, weight: torch.Tensor, batch: int) -> torch.Tensor:
        """The grouped conv over the (1, B*C_in, H, W) view: (1, B*C_out, H', W')."""
        weight = weight.reshape(batch * self.out_channels, self.in_channels // self.groups, *self.weight.shape[-2:])
        return F.conv2d(folded, weight, stride=self.stride, padding=self.kernel_size // 2, groups=self.groups * batch)

    def _grouped(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        out = self._conv(x.reshape(1, batch * self.in_channels, height, width), weight, batch)
        return out.reshape(batch, self.out_channels, *out.shape[-2:])

    def _pointwise(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        batch, _, height, width = x.shape
        pixels = x.permute(0, 2, 3, 1).reshape(batch, height * width, self.in_channels)
        kernels = weight.reshape(batch, self.out_channels, self.in_channels).transpose(1, 2)
        out = torch.bmm(pixels, kernels)
        return out.reshape(batch, height, width, self.out_channels).permute(0, 3, 1, 2)


class DynamicConv(nn.Module):
    """Dynamic kernel aggregation: KernelAttention followed by KernelAggregation (no bias)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        num_kernels: int = 4,
    ) -> None:
        super().__init__()
        self.attention = KernelAttention(in_channels, num_kernels)
        self.aggregation = KernelAggregation(in_channels, out_channels, kernel_size, stride, groups, num_kernels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aggregation(x, self.attention(x))


class DynConvBN(nn.Sequential):
    """A conv (static when num_kernels == 1, dynamic otherwise), BN, optional ReLU: Dite's ConvBN(ReLU)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        num_kernels: int = 1,
        relu: bool = False,
    ) -> None:
        if num_kernels > 1:
            conv: nn.Module = DynamicConv(in_channels, out_channels, kernel_size, stride, groups, num_kernels)
        else:
            conv = nn.Conv2d(
                in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=False
            )
        layers = [conv, nn.BatchNorm2d(out_channels)] + ([nn.ReLU(inplace=True)] if relu else [])
        super().__init__(*layers)


class DynamicSplitConv(nn.Module):
    """Split channels into G groups, group i gets a (3+2i)x(3+2i) depthwise conv (+BN); concat; shuffle."""

    def __init__(self, channels: int, groups: int, num_kernels: int, stride: int = 1) -> None:
        super().__init__()
        self.groups = groups
        self.split = channels // groups
        self.dynamic = num_kernels > 1
        self.conv = nn.ModuleList(
            DynConvBN(self.split, self.split, 3 + 2 * i, stride, groups=self.split, num_kernels=num_kernels)
            for i in range(groups)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups == 1:
            return self.conv[0](x)
        parts = x.split(self.split, dim=1)
        if not self.dynamic:  # static depthwise convs are slow on channel slices; dynamic ones copy them anyway
            parts = [dense(p) for p in parts]
        return cat_shuffle([conv(p) for conv, p in zip(self.conv, parts, strict=True)])
