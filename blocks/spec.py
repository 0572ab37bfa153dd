"""Resolved architecture specs: plain values per stage and branch (no torch, no genes)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageSpec:
    """One stage: `modules` multi-branch modules over `channels` (one width per branch)."""

    channels: tuple[int, ...]
    modules: int
    blocks: int
    block: str
    cross: str = "none"
    cross_ratio: int = 8
    within: str = "none"
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
