"""Small helpers shared by every block: conv+BN+activation, channel shuffle, memory-layout helpers.

Layout: a network prepared with `blocks.network.prepare_for_training` runs channels-last (NHWC in memory). Every
CPU kernel is fastest when all its tensors, gradients included, are contiguous in one layout: a BatchNorm backward
or a ReLU backward whose gradient is NCHW while its input is NHWC is 5-30x slower than the copy that would have
aligned them. The helpers here keep activations and gradients channels-last-contiguous; on NCHW tensors they
do exactly what the official code does, so the reference configuration (and export) is unchanged.
"""

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


def is_channels_last(x: torch.Tensor) -> bool:
    """Whether x (N,C,H,W) is laid out channels-last (also a channel slice of a channels-last tensor)."""
    return x.dim() == 4 and x.stride(1) < x.stride(3)


class _Relayout(torch.autograd.Function):
    """x copied into one layout, its gradient copied back into the other (the layout x's producer uses)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, to_channels_last: bool) -> torch.Tensor:
        ctx.to_channels_last = to_channels_last
        return x.contiguous(memory_format=torch.channels_last if to_channels_last else torch.contiguous_format)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        back = torch.contiguous_format if ctx.to_channels_last else torch.channels_last
        return grad.contiguous(memory_format=back), None


def to_nchw(x: torch.Tensor) -> torch.Tensor:
    """A channels-last x as a contiguous NCHW copy whose gradient goes back channels-last; other x unchanged."""
    return _Relayout.apply(x, False) if is_channels_last(x) else x


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """A contiguous NCHW x as a channels-last copy whose gradient goes back NCHW; other x unchanged."""
    return _Relayout.apply(x, True) if x.is_contiguous() and not is_channels_last(x) else x


def dense(x: torch.Tensor) -> torch.Tensor:
    """x, or a channels-last-contiguous copy when x is a channel slice of a channels-last tensor.

    Convolutions and BatchNorm on such slices are slow (and their gradients come back in another layout).
    """
    if is_channels_last(x) and not x.is_contiguous(memory_format=torch.channels_last):
        return x.contiguous(memory_format=torch.channels_last)
    return x


def split_halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x.chunk(2, dim=1) where only the second half is computed on: the first stays a view (for cat_shuffle)."""
    first, second = x.chunk(2, dim=1)
    return first, dense(second)


class _ChannelsLastMean(torch.autograd.Function):
    """Mean over H and W whose gradient (the spread mean) is channels-last, like x, rather than NCHW."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return x.mean(dim=(2, 3), keepdim=True)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        height, width = ctx.shape[-2:]
        return (grad / (height * width)).expand(ctx.shape).contiguous(memory_format=torch.channels_last)


def global_mean(x: torch.Tensor) -> torch.Tensor:
    """x.mean(dim=(2, 3), keepdim=True); for a channels-last x its gradient comes back channels-last too."""
    if is_channels_last(x):
        return _ChannelsLastMean.apply(x)
    return x.mean(dim=(2, 3), keepdim=True)


class _CatShuffleChannelsLast(torch.autograd.Function):
    """cat_shuffle of channels-last parts in one copy; the gradient of each part comes back channels-last-dense."""

    @staticmethod
    def forward(ctx, *parts: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = parts[0].shape
        pixels = [p.permute(0, 2, 3, 1) for p in parts]
        if len(parts) == 2 and parts[0].dtype in (torch.float32, torch.float64):
            # (real, imag) pairs are the interleaving wanted, written by one vectorised kernel (2-3x faster)
            stacked = torch.view_as_real(torch.complex(*pixels))
        else:
            stacked = torch.stack(pixels, dim=-1)
        return stacked.reshape(batch, height, width, channels * len(parts)).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        batch, total, height, width = grad.shape
        groups = len(ctx.needs_input_grad)
        grad = grad.contiguous(memory_format=torch.channels_last).permute(0, 2, 3, 1)
        split = grad.reshape(batch, height, width, total // groups, groups).permute(4, 0, 1, 2, 3).contiguous()
        return tuple(g.permute(0, 3, 1, 2) for g in split)


def cat_shuffle(parts: list[torch.Tensor]) -> torch.Tensor:
    """Concatenate equal-width parts along channels, then channel-shuffle with len(parts) groups.

    Channel c*G + g of the result is channel c of parts[g]. Channels-last parts are interleaved in one copy into
    a channels-last result; NCHW parts take the official route (concatenate, then view-transpose-copy).
    """
    if any(is_channels_last(p) for p in parts):
        return _CatShuffleChannelsLast.apply(*parts)
    batch, channels, height, width = parts[0].shape
    x = torch.cat(parts, dim=1).view(batch, len(parts), channels, height, width)
    return x.transpose(1, 2).contiguous().view(batch, channels * len(parts), height, width)
