"""Official backbone key names to hrnas's and back: an ordered table of rewrites each way, per official model family.

A family is the official code that builds a network: the Lite-HRNet repository's LiteHRNet (also mmpose's), the
Dite-HRNet repository's DiteHRNet, and HRNet (mmpose's and the original repository's, which name it alike). The
tables work on the backbone's part of a key (no `backbone.` prefix; checkpoints.formats strips and adds those).

- Lite-HRNet names a stage `stageN` and a transition `transitionN`, wraps each conv with its BatchNorm in mmcv's
  ConvModule (`.conv`, `.bn`) or DepthwiseSeparableConvModule (`.depthwise_conv`, `.pointwise_conv`), and calls the
  two halves of conditional channel weighting `cross_resolution_weighting` and `spatial_weighting`; hrnas holds the
  same tensors in `nn.Sequential`s (`.0`, `.1`) under `stages.N`, `transitions.N`, `cross` and `within`.
- Dite-HRNet wraps convs in its own ConvBN-style modules (`.conv`, a conv or a dynamic kernel bank with
  `.attention` and `.aggregation`, then `.bn`) and calls its context modules `dcm` and `gcm`; the kernel
  attention's and global context modeling's own `.bn` keep their name in hrnas.
- HRNet numbers its stages from 2 and its transitions from 1, keeps the stem's convs at the top (`conv1`, `bn1`,
  `layer1`) and a module's branches in `branches`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Rewrite:
    pattern: str
    replacement: str | Callable[[re.Match], str]

    def __call__(self, key: str) -> str:
        return re.sub(self.pattern, self.replacement, key)


@dataclass(frozen=True)
class KeyMap:
    """One family's tables: `to_hrnas` takes an official backbone key to hrnas's name, `to_official` back."""

    to_hrnas: tuple[Rewrite, ...]
    to_official: tuple[Rewrite, ...]


def apply(key: str, rewrites: tuple[Rewrite, ...]) -> str:
    for rewrite in rewrites:
        key = rewrite(key)
    return key


def shift(prefix: str, by: int) -> Callable[[re.Match], str]:
    """A replacement renumbering `<name><n>.` as `<prefix><n + by>.` (HRNet's stage2 is hrnas's stages.0)."""
    return lambda match: f"{prefix}{int(match.group(1)) + by}."


def module_pair(context: str, first: str, second: str) -> tuple[Rewrite, Rewrite]:
    """hrnas's `.0`/`.1` of a two-module wrapper back to the official wrapper's names where `context` matches."""
    return (
        Rewrite(rf"^({context})\.0\.(.+)$", rf"\1.{first}.\2"),
        Rewrite(rf"^({context})\.1\.(\w+)$", rf"\1.{second}.\2"),
    )


HEAD_PROJECTS_TO_HRNAS = (
    # the iterative head's depthwise-separable projections: depthwise then pointwise, each a conv and its BatchNorm
    Rewrite(r"^(head_layer\.projects\.\d+)\.depthwise_conv\.", r"\1.0."),
    Rewrite(r"^(head_layer\.projects\.\d+)\.pointwise_conv\.", r"\1.1."),
)
HEAD_PROJECTS_TO_OFFICIAL = (
    Rewrite(r"^(head_layer\.projects\.\d+)\.0\.0\.", r"\1.depthwise_conv.conv."),
    Rewrite(r"^(head_layer\.projects\.\d+)\.0\.1\.", r"\1.depthwise_conv.bn."),
    Rewrite(r"^(head_layer\.projects\.\d+)\.1\.0\.", r"\1.pointwise_conv.conv."),
    Rewrite(r"^(head_layer\.projects\.\d+)\.1\.1\.", r"\1.pointwise_conv.bn."),
)
STAGES_TO_HRNAS = (
    Rewrite(r"^transition(\d+)\.", r"transitions.\1."),
    Rewrite(r"^stage(\d+)\.", r"stages.\1."),
    Rewrite(r"\.fuse_layers\.", ".fuse.layers."),
)
STAGES_TO_OFFICIAL = (
    Rewrite(r"^transitions\.(\d+)\.", r"transition\1."),
    Rewrite(r"^stages\.(\d+)\.", r"stage\1."),
    Rewrite(r"\.fuse\.layers\.", ".fuse_layers."),
)

# Where the Lite-HRNet code has a ConvModule (conv, bn): the stem's convs, the two halves of channel weighting,
# the naive shuffle blocks' branches.
LITE_CONV_MODULES = (
    r"stem\.(?:conv1|expand_conv|depthwise_conv|linear_conv|branch\d\.\d)"
    r"|.*\.cross_resolution_weighting\.conv\d|.*\.spatial_weighting\.\d+\.conv\d|.*\.layers\.\d+\.\d+\.branch\d\.\d"
)
LITE = KeyMap(
    to_hrnas=(
        *STAGES_TO_HRNAS,
        Rewrite(r"\.cross_resolution_weighting\.", ".cross."),
        Rewrite(r"\.spatial_weighting\.", ".within."),
        # a channel-weighting block's depthwise convs sit inside hrnas's dynamic split conv (one group: `.conv.0`)
        Rewrite(r"\.depthwise_convs\.(\d+)\.conv\.", r".depthwise_convs.\1.conv.0.0."),
        Rewrite(r"\.depthwise_convs\.(\d+)\.bn\.", r".depthwise_convs.\1.conv.0.1."),
        *HEAD_PROJECTS_TO_HRNAS,
        Rewrite(r"\.conv\.(weight|bias)$", r".0.\1"),
        Rewrite(r"\.bn\.(weight|bias|running_mean|running_var|num_batches_tracked)$", r".1.\1"),
    ),
    to_official=(
        *STAGES_TO_OFFICIAL,
        Rewrite(r"\.cross\.", ".cross_resolution_weighting."),
        Rewrite(r"\.within\.", ".spatial_weighting."),
        Rewrite(r"\.depthwise_convs\.(\d+)\.conv\.0\.0\.", r".depthwise_convs.\1.conv."),
        Rewrite(r"\.depthwise_convs\.(\d+)\.conv\.0\.1\.", r".depthwise_convs.\1.bn."),
        *HEAD_PROJECTS_TO_OFFICIAL,
        *module_pair(LITE_CONV_MODULES, "conv", "bn"),
    ),
)

# Where the Dite-HRNet code has a ConvBN-style module: the stem's first conv and its branches' convs (each branch's
# module 1 is global context modeling), and every conv of a dynamic split convolution.
DITE_CONV_MODULES = r"stem\.conv1|stem\.branch\d\.[02-9]|.*\.layers\.\d+\.conv\.\d+\.conv\.\d+"
DITE = KeyMap(
    to_hrnas=(
        *STAGES_TO_HRNAS,
        *HEAD_PROJECTS_TO_HRNAS,
        Rewrite(r"\.conv\.(attention|aggregation)\.", r".0.\1."),
        Rewrite(r"\.conv\.(weight|bias)$", r".0.\1"),
        Rewrite(r"(?<!attention)(?<!gcm\.\d)(?<!stem\.branch\d\.1)\.bn\.", ".1."),
        Rewrite(r"\.layers\.(\d+)\.conv\.", r".layers.\1.depthwise_convs."),
        Rewrite(r"\.dcm\.", ".cross."),
        Rewrite(r"\.gcm\.", ".within."),
    ),
    to_official=(
        *STAGES_TO_OFFICIAL,
        *HEAD_PROJECTS_TO_OFFICIAL,
        Rewrite(r"\.layers\.(\d+)\.depthwise_convs\.", r".layers.\1.conv."),
        Rewrite(r"\.cross\.", ".dcm."),
        Rewrite(r"\.within\.", ".gcm."),
        *module_pair(DITE_CONV_MODULES, "conv", "bn"),
    ),
)

HRNET = KeyMap(
    to_hrnas=(
        Rewrite(r"^conv(\d)\.", r"stem.conv\1.0."),
        Rewrite(r"^bn(\d)\.", r"stem.conv\1.1."),
        Rewrite(r"^layer1\.", "stem.layer1."),
        Rewrite(r"^transition(\d+)\.", shift("transitions.", -1)),
        Rewrite(r"^stage(\d+)\.", shift("stages.", -2)),
        Rewrite(r"\.branches\.", ".layers."),
        Rewrite(r"\.fuse_layers\.", ".fuse.layers."),
    ),
    to_official=(
        Rewrite(r"^stem\.conv(\d)\.0\.", r"conv\1."),
        Rewrite(r"^stem\.conv(\d)\.1\.", r"bn\1."),
        Rewrite(r"^stem\.layer1\.", "layer1."),
        Rewrite(r"^transitions\.(\d+)\.", shift("transition", 1)),
        Rewrite(r"^stages\.(\d+)\.", shift("stage", 2)),
        Rewrite(r"\.fuse\.layers\.", ".fuse_layers."),
        Rewrite(r"\.layers\.", ".branches."),
    ),
)

FAMILIES: dict[str, KeyMap] = {"lite": LITE, "dite": DITE, "hrnet": HRNET}


def hrnas_key(key: str, family: str) -> str:
    """The hrnas name of an official backbone key of `family`."""
    return apply(key, FAMILIES[family].to_hrnas)


def official_key(key: str, family: str) -> str:
    """The official backbone key of `family` for an hrnas name (the backbone's part, no head)."""
    return apply(key, FAMILIES[family].to_official)
