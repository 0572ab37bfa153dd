"""The channel-weighting block shared by Lite-HRNet (CCW) and Dite-HRNet (dynamic multi-scale context).

Each branch is split in two; one half passes through cross-branch context -> depthwise (split, dynamic) conv ->
within-branch context; the halves are concatenated and shuffled. Which context modules run is a choice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from blocks.context import DenseContextModeling, GlobalContextModeling
from blocks.dynamic import DynamicSplitConv
from blocks.layers import cat_shuffle, split_halves
from blocks.weighting import CrossResolutionWeighting, SpatialWeighting

CROSS_BRANCH: dict[str, Callable[[list[int], int], nn.Module]] = {
    "crw": CrossResolutionWeighting,
    "dcm": DenseContextModeling,
}
WITHIN_BRANCH: dict[str, Callable[[int, int], nn.Module]] = {
    "sw": SpatialWeighting,
    "gcm": GlobalContextModeling,
}


class ChannelWeightingBlock(nn.Module):
    def __init__(
        self,
        channels: Sequence[int],
        cross: str,
        cross_ratio: int,
        within: str,
        within_ratios: Sequence[int],
        dsc_groups: Sequence[int],
        kernels: Sequence[int],
    ) -> None:
        super().__init__()
        half = [c // 2 for c in channels]
        self.cross = CROSS_BRANCH[cross](half, cross_ratio) if cross != "none" else None
        self.depthwise_convs = nn.ModuleList(
            DynamicSplitConv(c, g, k) for c, g, k in zip(half, dsc_groups, kernels, strict=True)
        )
        self.within = (
            nn.ModuleList(WITHIN_BRANCH[within](c, r) for c, r in zip(half, within_ratios, strict=True))
            if within != "none"
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
