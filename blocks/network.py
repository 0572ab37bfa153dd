"""The pose network assembled from a resolved architecture spec (plain values per stage and branch)."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

from blocks.channel_weighting import ChannelWeightingBlock
from blocks.dynamic import KernelAggregation
from blocks.heads import IterativeHead, KeypointHead
from blocks.multibranch import AcrossBranches, MultiBranchModule, PerBranch, apply_transition, make_transition
from blocks.spec import LayerFactory, NetworkSpec, StageSpec
from blocks.stems import STEMS


def _per_branch(block: Callable[[int], nn.Module], stage: StageSpec, channels: Sequence[int]) -> nn.Module:
    return PerBranch(nn.Sequential(*(block(c) for _ in range(stage.blocks))) for c in channels)


def per_branch(block: Callable[[int], nn.Module]) -> LayerFactory:
    """The layers of a block that transforms one branch of width c (`block(c)`): `stage.blocks` on every branch."""
    return partial(_per_branch, block)


def channel_weighting(stage: StageSpec, channels: Sequence[int]) -> nn.Module:
    """The layers of channel-weighting blocks: each sees every branch (cross-branch context)."""
    return AcrossBranches(
        *(
            ChannelWeightingBlock(
                channels,
                stage.cross,
                stage.cross_ratio,
                stage.within,
                stage.within_ratios,
                stage.dsc_groups,
                stage.kernels,
            )
            for _ in range(stage.blocks)
        )
    )


def layer_factory(stage: StageSpec) -> Callable[[Sequence[int]], nn.Module]:
    """Branch widths -> the layers of one of the stage's modules, built by the block the stage's spec carries."""
    return partial(stage.block, stage)


class PoseNet(nn.Module):
    """stem -> (transition, stage) x N -> [IterativeHead] -> 1x1 keypoint conv; heatmaps at 1/4 resolution."""

    def __init__(self, spec: NetworkSpec) -> None:
        super().__init__()
        self.spec = spec
        self.stem = STEMS[spec.stem]()
        previous = [self.stem.out_channels]
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        for index, stage in enumerate(spec.stages):
            self.transitions.append(make_transition(previous, stage.channels, spec.transition))
            last_stage = index == len(spec.stages) - 1
            modules = []
            for m in range(stage.modules):
                multiscale = not (last_stage and m == stage.modules - 1 and spec.head == "simple")
                modules.append(
                    MultiBranchModule(stage.channels, layer_factory(stage), spec.fuse, spec.transition, multiscale)
                )
            self.stages.append(nn.Sequential(*modules))
            previous = list(stage.channels)
        self.head_layer = IterativeHead(previous) if spec.head == "iterative" else None
        self.keypoint_head = KeypointHead(previous[0], spec.joints)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.stem(x)]
        for transition, stage in zip(self.transitions, self.stages, strict=True):
            branches = stage(apply_transition(transition, branches))
        features = branches[0] if self.head_layer is None else self.head_layer(branches)
        return self.keypoint_head(features)


def init_weights(model: nn.Module, std: float = 0.001) -> nn.Module:
    """The official initialisation: conv weights N(0, std), BN weight 1 and bias 0, conv biases 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    return model


def prepare_for_training(model: nn.Module, fast: bool = True) -> nn.Module:
    """Choose how `model` computes its (unchanged) function on CPU; returns the model, changed in place.

    fast (default): every 4-D conv weight channels-last, so that every activation is channels-last (NHWC in memory,
    where depthwise convs are much faster), and the fast formulation of the dynamic kernels. `fast=False` gives the
    reference configuration: contiguous NCHW and the official grouped-conv formulation. Both compute the same
    numbers; the parameters keep their values and shapes, only their memory layout changes. Call it before
    creating the optimizer and feed inputs through `prepare_input` with the same `fast`.
    """
    memory_format = torch.channels_last if fast else torch.contiguous_format
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if param.dim() == 4:
                param.data = param.data.contiguous(memory_format=memory_format)
        if isinstance(module, KernelAggregation):
            module.formulation = "fast" if fast else "grouped"
    return model


def prepare_input(x: torch.Tensor, fast: bool = True) -> torch.Tensor:
    """The input batch in the layout `prepare_for_training(model, fast)` expects (channels-last when fast)."""
    return x.contiguous(memory_format=torch.channels_last if fast else torch.contiguous_format)


def keep_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30, top_pad: int = 64 << 20) -> bool:
    """Make glibc malloc keep freed blocks for reuse instead of handing them back to the OS; process-wide.

    A training step allocates and frees hundreds of MB of activations and gradients. By default glibc serves many
    of these blocks with fresh mmap()s or trims them off the heap when freed, so every step page-faults them in
    again (~180k faults and ~0.4 s of system time per litehrnet-18 step at 256x192, batch 32). With these
    settings blocks below `mmap_threshold` (glibc's maximum, 32 MiB) come from the heap and stay there. The
    numbers computed do not change. Returns False (and does nothing) where glibc's mallopt is unavailable.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except OSError:
        mallopt = None
    if mallopt is None:
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    settings = ((m_mmap_threshold, mmap_threshold), (m_trim_threshold, trim_threshold), (m_top_pad, top_pad))
    return all(mallopt(option, value) == 1 for option, value in settings)
