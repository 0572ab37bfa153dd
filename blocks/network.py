"""The pose network assembled from a resolved architecture spec (plain values per stage and branch)."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import torch
from torch import nn

from blocks.channel_weighting import ChannelWeightingBlock, on_work_half, on_work_halves
from blocks.dynamic import DynamicSplitConv, KernelAggregation
from blocks.heads import IterativeHead, KeypointHead
from blocks.multibranch import (
    AcrossBranches,
    MultiBranchModule,
    PerBranch,
    apply_transition,
    make_fuse,
    make_transition,
)
from blocks.spec import LayerFactory, NetworkSpec, StageSpec
from blocks.stems import STEMS


@dataclass(frozen=True, eq=False)
class Part:
    """One piece of PoseNet, in build order; PoseNet is exactly its parts, so counting them one by one is exact.

    `key` is hashable and determines the module and its forward (spec dataclasses are keys themselves); a part's
    input is the previous part's output (the first part's is the image batch), so (key, input shapes) determines
    its cost. `build` makes the module on the current device; `run` applies it to the previous part's output.
    A part may be made of `pieces` (see `assembled`), in turn parts; a piece with a `branch` transforms that branch
    alone (its input and output are that branch's tensor), so that it is shared by every part with that branch.
    """

    key: Hashable
    build: Callable[[], nn.Module]
    run: Callable[[nn.Module, Any], Any]
    place: str = ""  # where PoseNet keeps it: a key of PLACES ("" for a piece of another part)
    branch: int | None = None
    pieces: tuple[Part, ...] = ()
    assemble: Callable[[list[nn.Module]], nn.Module] | None = None  # puts the built pieces together (see `assembled`)


def _call(module: nn.Module, x: Any) -> Any:
    return module(x)


def _build_pieces(assemble: Callable[[list[nn.Module]], nn.Module], pieces: tuple[Part, ...]) -> nn.Module:
    return assemble([piece.build() for piece in pieces])


def assembled(key: Hashable, pieces: Sequence[Part], assemble: Callable[[list[nn.Module]], nn.Module]) -> Part:
    """A part that is exactly `pieces`, built in order and put together by `assemble`, which adds no parameters and
    no computation (only containers, and glue such as splits and shuffles that no convention counts). Its cost is
    the sum of its pieces' costs, each run after the previous one; a piece shared by many parts is counted once."""
    pieces = tuple(pieces)
    return Part(key, partial(_build_pieces, assemble, pieces), _call, pieces=pieces, assemble=assemble)


def _per_branch_layers(blocks: int, modules: list[nn.Module]) -> nn.Module:
    return PerBranch(nn.Sequential(*modules[i : i + blocks]) for i in range(0, len(modules), blocks))


def _per_branch(block: Callable[[int], nn.Module], stage: StageSpec, channels: Sequence[int]) -> Part:
    pieces = [
        Part(("branch-block", block, width), partial(block, width), _call, branch=branch)
        for branch, width in enumerate(channels)
        for _ in range(stage.blocks)
    ]
    return assembled(("layers", stage, tuple(channels)), pieces, partial(_per_branch_layers, stage.blocks))


def per_branch(block: Callable[[int], nn.Module]) -> LayerFactory:
    """The layers of a block that transforms one branch of width c (`block(c)`): `stage.blocks` on every branch,
    each block a piece (the same block at the same width is counted once for every stage and network)."""
    return partial(_per_branch, block)


def _channel_weighting_block(has_cross: bool, has_within: bool, modules: list[nn.Module]) -> ChannelWeightingBlock:
    cross, rest = (modules[0], modules[1:]) if has_cross else (None, modules)
    convs, within = (rest[: len(rest) // 2], rest[len(rest) // 2 :]) if has_within else (rest, None)
    return ChannelWeightingBlock(cross, convs, within)


@functools.cache
def _channel_weighting_part(stage: StageSpec, channels: tuple[int, ...]) -> Part:
    """One channel-weighting block of `stage` (module and block counts normalised to 1) as pieces, in the order
    the block is built: its cross-branch module, per branch its split depthwise conv, per branch its within-branch
    module. Each piece is shared by every stage and network with the same module on the same branch."""
    half = [c // 2 for c in channels]
    pieces = []
    if stage.cross is not None:
        build = partial(stage.cross, half, stage.cross_ratio)
        pieces.append(Part(("cross", stage.cross, tuple(half), stage.cross_ratio), build, on_work_halves))
    for branch, (width, groups, kernels) in enumerate(zip(half, stage.dsc_groups, stage.kernels, strict=True)):
        key = ("split-conv", width, groups, kernels)
        pieces.append(Part(key, partial(DynamicSplitConv, width, groups, kernels), on_work_half, branch=branch))
    if stage.within is not None:
        for branch, (width, ratio) in enumerate(zip(half, stage.within_ratios, strict=True)):
            key = ("within", stage.within, width, ratio)
            pieces.append(Part(key, partial(stage.within, width, ratio), on_work_half, branch=branch))
    block = partial(_channel_weighting_block, stage.cross is not None, stage.within is not None)
    return assembled(("channel-weighting", stage, channels), pieces, block)


def _across_branches(modules: list[nn.Module]) -> nn.Module:
    return AcrossBranches(*modules)


def channel_weighting(stage: StageSpec, channels: Sequence[int]) -> Part:
    """The layers of channel-weighting blocks: each sees every branch (cross-branch context). The `stage.blocks`
    blocks of a module are alike, one part counted once."""
    block = _channel_weighting_part(replace(stage, modules=1, blocks=1), tuple(channels))
    return assembled(("layers", stage, tuple(channels)), (block,) * stage.blocks, _across_branches)


@functools.cache
def _layers(stage: StageSpec) -> Part:
    """The layers of every module of `stage` (given with its module count normalised to 1): one part, built by
    the block the stage's spec carries."""
    return replace(stage.block(stage, stage.channels), place="layers")


def _first_branch(stem: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    return [stem(x)]


def _on_first_branch(head: nn.Module, branches: list[torch.Tensor]) -> torch.Tensor:
    return head(branches[0])


@functools.cache
def _stem_channels(name: str) -> int:
    with torch.device("meta"):
        return STEMS[name]().out_channels


def network_parts(spec: NetworkSpec) -> list[Part]:
    """The parts of the network of `spec` in build order: the stem; per stage, its transition and, per module, the
    module's layers and fuse; then the IterativeHead (if any) and the keypoint head."""
    parts = [Part(("stem", spec.stem), STEMS[spec.stem], _first_branch, "stem")]
    previous = (_stem_channels(spec.stem),)
    for index, stage in enumerate(spec.stages):
        key = ("transition", previous, stage.channels, spec.transition)
        build = partial(make_transition, previous, stage.channels, spec.transition)
        parts.append(Part(key, build, apply_transition, "transition"))
        last_stage = index == len(spec.stages) - 1
        layers = _layers(replace(stage, modules=1))  # every module of a stage has the same layers
        for m in range(stage.modules):
            parts.append(layers)
            multiscale = not (last_stage and m == stage.modules - 1 and spec.head == "simple")
            if len(stage.channels) > 1:
                key = ("fuse", stage.channels, spec.fuse, spec.transition, multiscale)
                build = partial(make_fuse, stage.channels, spec.fuse, spec.transition, multiscale)
                parts.append(Part(key, build, _call, "fuse"))
        previous = tuple(stage.channels)
    if spec.head == "iterative":
        parts.append(Part(("iterative-head", previous), partial(IterativeHead, previous), _call, "head_layer"))
    build = partial(KeypointHead, previous[0], spec.joints)
    run = _call if spec.head == "iterative" else _on_first_branch
    parts.append(Part(("keypoint-head", spec.head, previous[0], spec.joints), build, run, "keypoint_head"))
    return parts


def _new_stage(net: PoseNet, transition: nn.Module) -> None:
    net.transitions.append(transition)
    net.stages.append(nn.Sequential())


def _new_module(net: PoseNet, layers: nn.Module) -> None:
    net.stages[-1].append(MultiBranchModule(layers, None))


def _fuse_last_module(net: PoseNet, fuse: nn.Module) -> None:
    net.stages[-1][-1].fuse = fuse


# Where PoseNet keeps each kind of part: a multi-branch module is two parts, its layers and its fuse (which
# depends on the widths only, so one fuse is counted for every layer configuration of a stage).
PLACES: dict[str, Callable[[PoseNet, nn.Module], None]] = {
    "stem": lambda net, m: setattr(net, "stem", m),
    "transition": _new_stage,
    "layers": _new_module,
    "fuse": _fuse_last_module,
    "head_layer": lambda net, m: setattr(net, "head_layer", m),
    "keypoint_head": lambda net, m: setattr(net, "keypoint_head", m),
}


class PoseNet(nn.Module):
    """stem -> (transition, stage) x N -> [IterativeHead] -> 1x1 keypoint conv; heatmaps at 1/4 resolution.

    Built from `network_parts(spec)` and nothing else, so that the memoised sum over parts
    (`search_space.complexity`) and the whole network can never differ in structure.
    """

    def __init__(self, spec: NetworkSpec, modules: Sequence[nn.Module] | None = None) -> None:
        """`modules`: one module per part of `network_parts(spec)`, placed instead of building the parts (a supernet
        reads where PoseNet puts each part, and so the parameter names, from stand-ins)."""
        super().__init__()
        self.spec = spec
        self.add_module("stem", None)  # registered now to keep the submodule (and state_dict) order
        self.transitions = nn.ModuleList()
        self.stages = nn.ModuleList()
        self.add_module("head_layer", None)
        self.add_module("keypoint_head", None)
        parts = network_parts(spec)
        if modules is None:
            modules = [part.build() for part in parts]
        for part, module in zip(parts, modules, strict=True):
            PLACES[part.place](self, module)

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
