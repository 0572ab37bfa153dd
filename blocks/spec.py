"""Resolved architecture specs: plain values per stage and branch, and the modules the genes chose.

No genes here: a stage carries the callables that build its layers and context modules (hashable, so a spec can
key a cache), and blocks/ builds them without knowing which gene value picked them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# (stage, branch widths) -> the layers of one multi-branch module, as a `blocks.network.Part` (made of pieces)
LayerFactory = Callable[["StageSpec", Sequence[int]], Any]


@dataclass(frozen=True)
class StageSpec:
    """One stage: `modules` multi-branch modules over `channels` (one width per branch).

    `block` builds a module's layers; `cross` (branch widths, ratio) and `within` (width, ratio) build the context
    modules of a channel-weighting block, None where there is none.
    """

    channels: tuple[int, ...]
    modules: int
    blocks: int
    block: LayerFactory
    cross: Callable[[list[int], int], Any] | None = None
    cross_ratio: int = 8
    within: Callable[[int, int], Any] | None = None
    within_ratios: tuple[int, ...] = ()
    dsc_groups: tuple[int, ...] = ()
    kernels: tuple[int, ...] = ()


@dataclass(frozen=True)
class NetworkSpec:
    stem: str
    stages: tuple[StageSpec, ...]
    fuse: str
    transition: str
    head: str
    joints: int = 17
