"""Official state-dict keys to hrnas's: an ordered table of rewrites per format, applied to each key in turn.

The Lite-HRNet repository (and mmpose 0.x, which saves the same layout) names a stage `stageN` and a transition
`transitionN`, wraps each conv with its BatchNorm in mmcv's ConvModule (`.conv`, `.bn`) or
DepthwiseSeparableConvModule (`.depthwise_conv`, `.pointwise_conv`), and calls the two halves of conditional
channel weighting `cross_resolution_weighting` and `spatial_weighting`; hrnas holds the same tensors in
`nn.Sequential`s (`.0`, `.1`) under `stages.N`, `transitions.N`, `cross` and `within`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rewrite:
    pattern: str
    replacement: str

    def __call__(self, key: str) -> str:
        return re.sub(self.pattern, self.replacement, key)


MMPOSE_0X: tuple[Rewrite, ...] = (
    Rewrite(r"^backbone\.", ""),
    Rewrite(r"^transition(\d+)\.", r"transitions.\1."),
    Rewrite(r"^stage(\d+)\.", r"stages.\1."),
    Rewrite(r"\.fuse_layers\.", ".fuse.layers."),
    Rewrite(r"\.cross_resolution_weighting\.", ".cross."),
    Rewrite(r"\.spatial_weighting\.", ".within."),
    # a channel-weighting block's depthwise convs sit inside hrnas's dynamic split conv (one group: `.conv.0`)
    Rewrite(r"\.depthwise_convs\.(\d+)\.conv\.", r".depthwise_convs.\1.conv.0.0."),
    Rewrite(r"\.depthwise_convs\.(\d+)\.bn\.", r".depthwise_convs.\1.conv.0.1."),
    # the head's depthwise-separable projections: depthwise then pointwise, each a conv and its BatchNorm
    Rewrite(r"^(head_layer\.projects\.\d+)\.depthwise_conv\.", r"\1.0."),
    Rewrite(r"^(head_layer\.projects\.\d+)\.pointwise_conv\.", r"\1.1."),
    Rewrite(r"\.conv\.(weight|bias)$", r".0.\1"),
    Rewrite(r"\.bn\.(weight|bias|running_mean|running_var|num_batches_tracked)$", r".1.\1"),
)

FORMATS: dict[str, tuple[Rewrite, ...]] = {"mmpose0x": MMPOSE_0X}


def hrnas_key(key: str, rewrites: tuple[Rewrite, ...]) -> str:
    """The hrnas name of an official key."""
    for rewrite in rewrites:
        key = rewrite(key)
    return key
