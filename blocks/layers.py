"""Small helpers shared by every block: conv+BN+activation and channel shuffle."""

from __future__ import annotations

import torch
from torch import nn


class ConvBNAct(nn.Sequential):
    """Conv2d, optional BatchNorm2d, optional activation (mmcv's ConvModule: a bias only without norm).

    Kept as a Sequential of leaf modules so that hook-based complexity counting sees the same leaves as the
    official Lite-HRNet / Dite-HRNet code.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        norm: bool = True,
        act: str | None = "relu",
        bias: bool | None = None,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=(not norm) if bias is None else bias,
            )
        ]
        if norm:
            layers.append(nn.BatchNorm2d(out_channels))
        if act is not None:
            layers.append(ACTIVATIONS[act]())
        super().__init__(*layers)


ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid}


def conv_bn(in_channels: int, out_channels: int, kernel_size: int = 1, stride: int = 1, groups: int = 1):
    return ConvBNAct(in_channels, out_channels, kernel_size, stride, groups, act=None)


def dw_conv_bn(channels: int, kernel_size: int = 3, stride: int = 1) -> ConvBNAct:
    return ConvBNAct(channels, channels, kernel_size, stride, groups=channels, act=None)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: channel c*groups + g of the output is channel g*(C/groups) + c of x."""
    return cat_shuffle(list(x.chunk(groups, dim=1)))


def cat_shuffle(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate equal-width parts along channels, then channel-shuffle with len(parts) groups, in one copy.

    The result is laid out channels-last (NHWC in memory), which keeps depthwise convs on their fast path.
    """
    batch, width, height, wid = parts[0].shape
    stacked = torch.stack([p.permute(0, 2, 3, 1) for p in parts], dim=-1)
    return stacked.view(batch, height, wid, width * len(parts)).permute(0, 3, 1, 2)
