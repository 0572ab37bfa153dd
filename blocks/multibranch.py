"""Multi-branch module (parallel branches + fuse) and the transitions between stages."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from blocks.layers import ConvBNAct


class PerBranch(nn.ModuleList):
    """One sequence of blocks per branch, applied to a list of branch tensors."""

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        return [branch(s) for branch, s in zip(self, x, strict=True)]


class AcrossBranches(nn.Sequential):
    """Blocks that each take and return the whole list of branches (channel weighting)."""


def downsample(in_channels: int, out_channels: int, style: str, relu: bool, stride: int = 2) -> nn.Sequential:
    """Stride-2 resolution step: depthwise 3x3 + BN + 1x1 + BN (`dw`) or a full 3x3 + BN (`conv`)."""
    act = "relu" if relu else None
    if style == "dw":
        return nn.Sequential(
            *ConvBNAct(in_channels, in_channels, 3, stride, groups=in_channels, act=None),
            *ConvBNAct(in_channels, out_channels, 1, act=act),
        )
    return nn.Sequential(*ConvBNAct(in_channels, out_channels, 3, stride, act=act))


def make_transition(previous: Sequence[int], current: Sequence[int], style: str) -> nn.ModuleList:
    """Width changes of existing branches and new lower-resolution branches grown from the last one."""
    layers: list[nn.Module | None] = []
    for i, width in enumerate(current):
        if i < len(previous):
            layers.append(downsample(previous[i], width, style, relu=True, stride=1) if width != previous[i] else None)
        else:
            steps = i + 1 - len(previous)
            source = previous[-1]
            layers.append(
                nn.Sequential(
                    *(downsample(source, width if s == steps - 1 else source, style, relu=True) for s in range(steps))
                )
            )
    return nn.ModuleList(layers)


def apply_transition(transition: nn.ModuleList, branches: list[torch.Tensor]) -> list[torch.Tensor]:
    out = []
    for i, layer in enumerate(transition):
        source = branches[min(i, len(branches) - 1)]
        out.append(source if layer is None else layer(source))
    return out


class Fuse(nn.Module):
    """Exchange information between branches.

    modes:
    - `sum`: HRNet, each output adds every branch once, out of place;
    - `official`: Lite-HRNet, branch 0 is added twice and the lower outputs read the fused (pre-ReLU) branch 0;
    - `official-relu`: Dite-HRNet, the same, but its in-place ReLU has already run on the fused branch 0.
    In both official modes `layers[i][0]` of branch 0 is computed once and doubled (the official code calls it
    twice with the same input; the result is identical).
    """

    def __init__(self, channels: Sequence[int], mode: str, style: str, outputs: int) -> None:
        super().__init__()
        self.mode = mode
        rows = []
        for i in range(outputs):
            row: list[nn.Module | None] = []
            for j, width in enumerate(channels):
                if j > i:
                    row.append(
                        nn.Sequential(
                            *ConvBNAct(width, channels[i], 1, act=None),
                            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
                        )
                    )
                elif j == i:
                    row.append(None)
                else:
                    steps = i - j
                    row.append(
                        nn.Sequential(
                            *(
                                downsample(width, channels[i] if s == steps - 1 else width, style, relu=s < steps - 1)
                                for s in range(steps)
                            )
                        )
                    )
            rows.append(nn.ModuleList(row))
        self.layers = nn.ModuleList(rows)
        self.relu = nn.ReLU()

    def _term(self, i: int, j: int, x: torch.Tensor) -> torch.Tensor:
        layer = self.layers[i][j]
        return x if layer is None else layer(x)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        if self.mode == "sum":
            return [self.relu(sum(self._term(i, j, s) for j, s in enumerate(x))) for i in range(len(self.layers))]
        first = 2 * x[0]
        for j in range(1, len(x)):
            first = first + self._term(0, j, x[j])
        out = [self.relu(first)]
        source = out[0] if self.mode == "official-relu" else first
        for i in range(1, len(self.layers)):
            y = 2 * self._term(i, 0, source)
            for j in range(1, len(x)):
                y = y + self._term(i, j, x[j])
            out.append(self.relu(y))
        return out


def make_fuse(channels: Sequence[int], fuse: str, style: str, multiscale_output: bool) -> Fuse | None:
    """The fuse after a module's layers: all outputs, or only branch 0 when not multiscale; none for one branch."""
    outputs = len(channels) if multiscale_output else 1
    return Fuse(channels, fuse, style, outputs) if len(channels) > 1 else None


class MultiBranchModule(nn.Module):
    """Its layers (blocks on every branch, or across them), then its fuse (if any)."""

    def __init__(self, layers: nn.Module, fuse: nn.Module | None) -> None:
        super().__init__()
        self.layers = layers
        self.fuse = fuse

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        out = self.layers(x)
        return out if self.fuse is None else self.fuse(out)
