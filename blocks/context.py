"""Dite-HRNet's adaptive context modeling: dense (across resolutions) and global (within one branch)."""

from __future__ import annotations

import torch
from torch import nn

from blocks.layers import ConvBNAct, is_channels_last, to_nchw
from blocks.weighting import upsample_nearest


def context_shift(channels: int, mid_channels: int) -> nn.Sequential:
    """1x1 (no bias) + BN + ReLU, 1x1 (bias) + sigmoid: the channel attention of both context modules."""
    return nn.Sequential(
        *ConvBNAct(channels, mid_channels, 1, act="relu"),
        *ConvBNAct(mid_channels, channels, 1, norm=False, act="sigmoid"),
    )


def attention_pool(x: torch.Tensor, mask: torch.Tensor, cells: int) -> torch.Tensor:
    """Softmax-weighted sum of x (B,C,H,W) over `cells` equal runs of its raw flattened memory.

    This is the official Dite-HRNet pooling: the map is reshaped, not windowed, so a "cell" is a run of the
    flat (C, H*W) buffer regrouped as (cells, C, H*W/cells). `mask` is the already soft-maxed (B,1,H*W) weight.
    Returns (B, C, cells).
    """
    batch, channels, height, width = x.shape
    if cells == 1 and is_channels_last(x):  # the plain weighted sum over pixels, read in place
        pixels = x.permute(0, 2, 3, 1).reshape(batch, height * width, channels)
        return torch.matmul(mask.reshape(batch, 1, height * width), pixels).transpose(1, 2)
    run = height * width // cells
    values = to_nchw(x).reshape(batch, cells, channels, run)
    weights = mask.reshape(batch, cells, run, 1)
    return torch.matmul(values, weights).reshape(batch, cells, channels).transpose(1, 2)


class DenseContextModeling(nn.Module):
    """Context of every branch pooled to the smallest resolution, shared channel attention, reweighting.

    One mask conv per branch is created, as in the official code, although the last one never runs.
    """

    def __init__(self, channels: list[int], ratio: int) -> None:
        super().__init__()
        self.channels = list(channels)
        total = sum(channels)
        self.conv_mask = nn.ModuleList(nn.Conv2d(c, 1, 1) for c in channels)
        self.softmax = nn.Softmax(dim=2)
        self.channel_attention = context_shift(total, total // ratio)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        mini_h, mini_w = x[-1].shape[-2:]
        pooled = []
        for s, conv_mask in zip(x[:-1], self.conv_mask, strict=False):
            mask = self.softmax(conv_mask(s).reshape(s.shape[0], 1, -1))
            pooled.append(attention_pool(s, mask, mini_h * mini_w).reshape(*s.shape[:2], mini_h, mini_w))
        weights = self.channel_attention(torch.cat([*pooled, x[-1]], dim=1)).split(self.channels, dim=1)
        return [s * upsample_nearest(a, s.shape[-2:]) for s, a in zip(x, weights, strict=True)]


class GlobalContextModeling(nn.Module):
    """GCNet-style global context of one branch: attention pooling, channel attention, multiply, BN."""

    def __init__(self, channels: int, ratio: int) -> None:
        super().__init__()
        self.conv_mask = nn.Conv2d(channels, 1, 1)
        self.softmax = nn.Softmax(dim=2)
        self.channel_attention = context_shift(channels, channels // ratio)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = self.softmax(self.conv_mask(x).reshape(x.shape[0], 1, -1))
        context = attention_pool(x, mask, 1).unsqueeze(-1)
        return self.bn(x * self.channel_attention(context))
