"""The channel-weighting block shared by Lite-HRNet (CCW) and Dite-HRNet (dynamic multi-scale context).

Each branch is split in two; one half passes through cross-branch context -> depthwise (split, dynamic) conv ->
within-branch context; the halves are concatenated and shuffled. Which context modules run is a choice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from blocks.dynamic import DynamicSplitConv
from blocks.layers import cat_shuffle, split_halves

CrossBranch = Callable[[list[int], int], nn.Module]  # (half widths of every branch, ratio) -> module on all branches
WithinBranch = Callable[[int, int], nn.Module]  # (half width of one branch, ratio) -> module on that branch


class ChannelWeightingBlock(nn.Module):
    """`cross` and `within` are the context modules' constructors (None: no such module)."""

    def __init__(
        self,
        channels: Sequence[int],
        cross: CrossBranch | None,
        cross_ratio: int,
        within: WithinBranch | None,
        within_ratios: Sequence[int],
        dsc_groups: Sequence[int],
        kernels: Sequence[int],
    ) -> None:
        super().__init__()
        half = [c // 2 for c in channels]
        self.cross = cross(half, cross_ratio) if cross is not None else None
        self.depthwise_convs = nn.ModuleList(
            DynamicSplitConv(c, g, k) for c, g, k in zip(half, dsc_groups, kernels, strict=True)
        )
        self.within = (
            nn.ModuleList(within(c, r) for c, r in zip(half, within_ratios, strict=True))
            if within is not None
            else None
        )

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
