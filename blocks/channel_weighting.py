"""The channel-weighting block shared by Lite-HRNet (CCW) and Dite-HRNet (dynamic multi-scale context).

Each branch is split in two; one half passes through cross-branch context -> depthwise (split, dynamic) conv ->
within-branch context; the halves are concatenated and shuffled. Which context modules run is a choice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from blocks.layers import cat_shuffle, split_halves

CrossBranch = Callable[[list[int], int], nn.Module]  # (half widths of every branch, ratio) -> module on all branches
WithinBranch = Callable[[int, int], nn.Module]  # (half width of one branch, ratio) -> module on that branch


class ChannelWeightingBlock(nn.Module):
    """Put together from its built modules (so that it can be assembled from counted parts, see
    `blocks.network.channel_weighting`): the cross-branch context module (None: none), one split depthwise conv per
    branch and one within-branch context module per branch (None: none). The block adds no parameters of its own.
    """

    def __init__(
        self,
        cross: nn.Module | None,
        depthwise_convs: Sequence[nn.Module],
        within: Sequence[nn.Module] | None,
    ) -> None:
        super().__init__()
        self.cross = cross
        self.depthwise_convs = nn.ModuleList(depthwise_convs)
        self.within = nn.ModuleList(within) if within is not None else None

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        halves = [split_halves(s) for s in x]
        kept = [h[0] for h in halves]
        work = [h[1] for h in halves]
        if self.cross is not None:
            work = self.cross(work)
        work = [conv(s) for conv, s in zip(self.depthwise_convs, work, strict=True)]
        if self.within is not None:
            work = [w(s) for w, s in zip(self.within, work, strict=True)]
        return [cat_shuffle([a, b]) for a, b in zip(kept, work, strict=True)]


def on_work_halves(cross: nn.Module, branches: list[torch.Tensor]) -> list[torch.Tensor]:
    """A block's cross-branch module alone, with the block's split and shuffle around it (same shapes as in it)."""
    halves = [split_halves(s) for s in branches]
    work = cross([h[1] for h in halves])
    return [cat_shuffle([h[0], w]) for h, w in zip(halves, work, strict=True)]


def on_work_half(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A block's module of one branch alone (split conv or within-branch context), with the block's split and
    shuffle around it (same shapes as in the block)."""
    kept, work = split_halves(x)
    return cat_shuffle([kept, module(work)])
