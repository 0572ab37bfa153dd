"""Published checkpoint layouts: how each prefixes the backbone and the head, how one is told from the others by its
keys, and the renaming of a whole state dict to hrnas's names and back (checkpoints.keymap does the backbone's)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from checkpoints.keymap import hrnas_key, official_key
from checkpoints.reading import CheckpointError
from search_space.genome import Genome

HEAD = "keypoint_head.final_layer."  # hrnas's final 1x1 conv, the official TopdownHeatmapSimpleHead's `final_layer`


@dataclass(frozen=True)
class Format:
    name: str
    title: str
    backbone: str  # the prefix of the backbone's keys
    head: str  # the prefix of the head's `final_layer.*`
    ignored: tuple[str, ...] = ()  # prefixes of keys that hold no network weights (read and left)
    families: tuple[str, ...] = ("lite", "dite", "hrnet")
    writable: bool = True

    def to_hrnas(self, key: str, family: str) -> str | None:
        """The hrnas name of an official key, or None when the key is no part of the network hrnas builds."""
        if key.startswith(self.head + "final_layer."):
            return HEAD + key.removeprefix(self.head + "final_layer.")
        if key.startswith(self.backbone):
            return hrnas_key(key.removeprefix(self.backbone), family)
        return None

    def to_official(self, name: str, family: str) -> str:
        """The official key of an hrnas tensor name."""
        if name.startswith(HEAD):
            return f"{self.head}final_layer.{name.removeprefix(HEAD)}"
        return self.backbone + official_key(name, family)


FORMATS: dict[str, Format] = {
    fmt.name: fmt
    for fmt in (
        Format("mmpose0x", "mmpose 0.x / Lite-HRNet / Dite-HRNet repository", "backbone.", "keypoint_head."),
        Format("mmpose1x", "mmpose 1.x", "backbone.", "head.", ignored=("data_preprocessor.",)),
        Format("hrnet", "original HRNet repository", "", "", families=("hrnet",), writable=False),
    )
}

# The official code that builds a network of each stem: its key names (checkpoints.keymap) follow that code.
FAMILY_OF_STEM = {"lite": "lite", "dite": "dite", "hrnet": "hrnet"}
FAMILY_TITLES = {"lite": "Lite-HRNet", "dite": "Dite-HRNet", "hrnet": "HRNet"}


def family_of(genome: Genome) -> str:
    return FAMILY_OF_STEM[genome.genes["stem"]]


def detect(state: dict[str, object]) -> str:
    """The layout of a state dict, from its keys: `hrnas`, or one of FORMATS."""
    keys = list(state)
    if any(k.startswith(("stages.", "stem.")) for k in keys):  # hrnas's own (its head is keypoint_head. too)
        return "hrnas"
    if any(k.startswith(("head.", "data_preprocessor.")) for k in keys):
        return "mmpose1x"
    if any(k.startswith(("backbone.", "keypoint_head.")) for k in keys):
        return "mmpose0x"
    if "final_layer.weight" in state and "conv1.weight" in state:
        return "hrnet"
    shown = ", ".join(sorted({k.split(".")[0] for k in keys})[:6]) or "no keys"
    raise CheckpointError(f"no known checkpoint layout (its keys start with {shown}); hrnas reads its own, mmpose "
                          "0.x and 1.x, the Lite-HRNet, Dite-HRNet and original HRNet repositories'")  # fmt: skip


@dataclass
class Renamed:
    """A state dict in hrnas's names, with the file's keys that it left out."""

    state: dict[str, torch.Tensor]
    source: dict[str, str]  # hrnas name -> the file's key
    foreign: list[str]  # the file's keys that are no part of the network (e.g. another head's layers)
    ignored: list[str]  # the file's keys its layout says to leave (mmpose 1.x's data_preprocessor)


def to_hrnas(state: dict[str, torch.Tensor], layout: str, family: str) -> Renamed:
    """`state` (in `layout`, of `family`'s code) under hrnas's names."""
    if layout == "hrnas":
        return Renamed(dict(state), {k: k for k in state}, [], [])
    fmt = FORMATS[layout]
    if family not in fmt.families:
        raise CheckpointError(f"a {fmt.title} checkpoint holds an {', '.join(FAMILY_TITLES[f] for f in fmt.families)}"
                              f", not a {FAMILY_TITLES[family]}")  # fmt: skip
    renamed = Renamed({}, {}, [], [])
    for key, value in state.items():
        if key.startswith(fmt.ignored):
            renamed.ignored.append(key)
            continue
        name = fmt.to_hrnas(key, family)
        if name is None:
            renamed.foreign.append(key)
            continue
        if name in renamed.state:
            raise CheckpointError(f"{key} and {renamed.source[name]} both name hrnas's {name}")
        renamed.state[name] = value
        renamed.source[name] = key
    return renamed


def to_official(state: dict[str, torch.Tensor], layout: str, family: str) -> dict[str, torch.Tensor]:
    """hrnas's `state` under the names of `layout` for `family`'s code, in the same order."""
    fmt = FORMATS[layout]
    return {fmt.to_official(name, family): value for name, value in state.items()}
