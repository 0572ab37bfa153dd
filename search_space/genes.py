"""The gene registry: every gene, its values, and for a choice gene what each value selects.

A choice is one entry: its value name, what it means, the module (or layer factory) it puts in the network, the
features other genes read (a block that `splits` branches in half, a block with channel `weighting`), and the
counting rule of its module for the complexity conventions, if their tables do not count it already. Adding a
choice is one entry here (or `register_choice`) plus its module in blocks/. Names are a public interface: keep
them stable once released.

Genes marked `per_stage` may also be given once per stage (stages 2..4) as a `PerStage` value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from blocks.context import DenseContextModeling, GlobalContextModeling
from blocks.network import channel_weighting, per_branch
from blocks.residual import BasicBlock
from blocks.shuffle import ShuffleUnit
from blocks.weighting import CrossResolutionWeighting, SpatialWeighting
from search_space.complexity import Formula, register_rule

BLOCK = "block"  # the gene whose choice's features decide where the genes that `require` one apply
STAGES = "modules"  # the gene whose length is the number of stages
SPLIT = "split"  # block feature: every branch is split in half (needs an even width)
WEIGHTING = "weighting"  # block feature: a channel-weighting block (context modules, split convs, dynamic kernels)


@dataclass(frozen=True)
class Choice:
    """One value of a choice gene and what it selects."""

    value: str
    doc: str
    module: Callable[..., Any] | None = None  # what the spec carries; None: the slot stays empty
    features: frozenset[str] = frozenset()  # block choices: what the block has (SPLIT, WEIGHTING)
    counting: Mapping[str, Formula] = field(default_factory=dict, compare=False)  # convention -> rule for `module`


@dataclass(frozen=True)
class Gene:
    name: str
    kind: str  # "choice": one of `options`; "int": an integer in [minimum, maximum]; "stages": list of such ints
    default: Any
    doc: str
    options: tuple[Choice, ...] = ()
    minimum: int = 1
    maximum: int = 1024
    per_branch: bool = False  # may also be a list with one value per branch
    per_stage: bool = False  # may also be a PerStage value (one value, or one per-branch list, per stage)
    stage_field: str = ""  # the StageSpec field it fills (choice genes: with the chosen module)
    network_field: str = ""  # the NetworkSpec field it fills (with the value itself)
    requires: str = ""  # a block feature without which the gene does nothing; there it must be `off`
    off: Any = None  # the value that switches the gene's module off (None: it has none)
    modifies: str = ""  # the gene whose module this one parametrises: it applies only where that one is not off

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(c.value for c in self.options)

    def choice(self, value: str) -> Choice:
        for option in self.options:
            if option.value == value:
                return option
        raise KeyError(f"gene {self.name}: unknown value {value!r}; choose one of {', '.join(self.choices)}")

    def describe_values(self) -> str:
        if self.kind == "choice":
            return " | ".join(self.choices)
        span = f"integer {self.minimum}..{self.maximum}"
        if self.kind == "stages":
            return f"list of 1-3 {span} (one per stage)"
        return f"{span}" + (" or a list with one per branch" if self.per_branch else "")


@dataclass(frozen=True)
class PerStage:
    """A gene given per stage: `values[i]` is stage i+2's value (a single value or a per-branch list).

    Written `{stages: [shuffle, weighting, weighting]}` in YAML/JSON and `shuffle/weighting/weighting` in the
    one-line form (`/` between stages, `,` between the branches of a stage).
    """

    values: tuple[Any, ...]

    def __str__(self) -> str:
        return "/".join(",".join(map(str, v)) if isinstance(v, list) else str(v) for v in self.values)


GENES: dict[str, Gene] = {
    g.name: g
    for g in [
        Gene(
            "stem",
            "choice",
            "lite",
            "HRNet strided convs + bottlenecks, Lite shuffle stem, Dite dynamic stem",
            options=(
                Choice("hrnet", "two strided 3x3 convs and a bottleneck layer"),
                Choice("lite", "Lite-HRNet's shuffle stem"),
                Choice("dite", "Dite-HRNet's dynamic stem"),
            ),
            network_field="stem",
        ),
        Gene("width", "int", 40, "channels of branch 0; branch b has width * 2^b", minimum=4, maximum=512),
        Gene("modules", "stages", [2, 4, 2], "multi-branch modules in each stage (stages 2..4)", maximum=16),
        Gene("blocks", "int", 2, "blocks per branch per module", maximum=8, per_stage=True, stage_field="blocks"),
        Gene(
            BLOCK,
            "choice",
            "weighting",
            "HRNet BasicBlock, shuffle block with 1x1 convs, channel weighting",
            options=(
                Choice("residual", "HRNet BasicBlock (two 3x3 convs)", per_branch(BasicBlock)),
                Choice(
                    "shuffle",
                    "shuffle block with 1x1 convs (Naive Lite-HRNet)",
                    per_branch(ShuffleUnit),
                    frozenset({SPLIT}),
                ),
                Choice(
                    "weighting", "channel weighting (Lite/Dite-HRNet)", channel_weighting, frozenset({SPLIT, WEIGHTING})
                ),
            ),
            per_stage=True,
            stage_field="block",
        ),
        Gene(
            "cross",
            "choice",
            "crw",
            "cross-resolution weighting (Lite) or dense context modeling (Dite)",
            options=(
                Choice("crw", "Lite-HRNet's cross-resolution weighting", CrossResolutionWeighting),
                Choice("dcm", "Dite-HRNet's dense context modeling", DenseContextModeling),
                Choice("none", "no cross-branch module"),
            ),
            per_stage=True,
            stage_field="cross",
            requires=WEIGHTING,
            off="none",
        ),
        Gene(
            "within",
            "choice",
            "sw",
            "spatial weighting (Lite) or global context modeling (Dite)",
            options=(
                Choice("sw", "Lite-HRNet's spatial weighting", SpatialWeighting),
                Choice("gcm", "Dite-HRNet's global context modeling", GlobalContextModeling),
                Choice("none", "no within-branch module"),
            ),
            per_stage=True,
            stage_field="within",
            requires=WEIGHTING,
            off="none",
        ),
        Gene(
            "cross_ratio",
            "int",
            8,
            "reduction ratio of the cross-branch module",
            maximum=64,
            per_stage=True,
            stage_field="cross_ratio",
            modifies="cross",
        ),
        Gene(
            "within_ratio",
            "int",
            4,
            "reduction ratio of the within-branch module",
            maximum=64,
            per_branch=True,
            per_stage=True,
            stage_field="within_ratios",
            modifies="within",
        ),
        Gene(
            "dsc_groups",
            "int",
            1,
            "dynamic split conv groups; group i has a (3+2i)x(3+2i) depthwise kernel",
            maximum=4,
            per_branch=True,
            per_stage=True,
            stage_field="dsc_groups",
            requires=WEIGHTING,
            off=1,
        ),
        Gene(
            "kernels",
            "int",
            1,
            "dynamic kernels of the depthwise convs; 1 = static conv",
            maximum=8,
            per_branch=True,
            per_stage=True,
            stage_field="kernels",
            requires=WEIGHTING,
            off=1,
        ),
        Gene(
            "fuse",
            "choice",
            "official",
            "official Lite fuse (branch 0 twice), its Dite variant, or HRNet's sum",
            options=(
                Choice("official", "Lite-HRNet's fuse (branch 0 added twice)"),
                Choice("official-relu", "Dite-HRNet's fuse (the same after its in-place ReLU)"),
                Choice("sum", "HRNet's plain sum"),
            ),
            network_field="fuse",
        ),
        Gene(
            "transition",
            "choice",
            "dw",
            "depthwise-separable (Lite/Dite) or full 3x3 (HRNet) resolution steps",
            options=(Choice("dw", "depthwise-separable steps"), Choice("conv", "full 3x3 steps")),
            network_field="transition",
        ),
        Gene(
            "head",
            "choice",
            "iterative",
            "Lite/Dite IterativeHead, or HRNet's 1x1 on branch 0",
            options=(Choice("iterative", "Lite/Dite IterativeHead"), Choice("simple", "HRNet's 1x1 on branch 0")),
            network_field="head",
        ),
    ]
}

# Genes that only mean something inside a channel-weighting block, with their "off" value.
WEIGHTING_ONLY: dict[str, Any] = {n: g.off for n, g in GENES.items() if g.requires == WEIGHTING}


def _register_counting(gene: str, choice: Choice) -> None:
    if not choice.counting:
        return
    if not isinstance(choice.module, type):
        raise TypeError(f"gene {gene}: choice {choice.value!r} has a counting rule but its module is not a class")
    register_rule(choice.module, dict(choice.counting))


def register_choice(gene: str, choice: Choice) -> None:
    """Add a value to a choice gene at run time (and its module's counting rule to the conventions)."""
    existing = GENES[gene]
    if existing.kind != "choice":
        raise ValueError(f"gene {gene} is not a choice gene")
    if choice.value in existing.choices:
        raise ValueError(f"gene {gene} already has a value {choice.value!r}")
    _register_counting(gene, choice)
    GENES[gene] = replace(existing, options=(*existing.options, choice))


for _gene in GENES.values():
    for _choice in _gene.options:
        _register_counting(_gene.name, _choice)


# ---- where a gene applies (read by validation, resolution and the search space) --------------------------------
def stage_count(genes: Mapping[str, Any]) -> int:
    return len(genes[STAGES])


def stage_value(genes: Mapping[str, Any], name: str, stage: int) -> Any:
    """Gene `name`'s value at stage index `stage` (0 = stage 2): its per-stage entry, or its single value."""
    value = genes[name]
    if isinstance(value, PerStage):
        return value.values[min(stage, len(value.values) - 1)]  # a wrong length is reported by validation
    return value


def block_features(genes: Mapping[str, Any], stage: int) -> frozenset[str]:
    return GENES[BLOCK].choice(stage_value(genes, BLOCK, stage)).features


def applies(genes: Mapping[str, Any], name: str, stage: int) -> bool:
    """Whether gene `name` changes stage `stage`: its block has what it requires, the module it modifies is on."""
    gene = GENES[name]
    if gene.requires and gene.requires not in block_features(genes, stage):
        return False
    if gene.modifies:
        target = GENES[gene.modifies]
        return applies(genes, gene.modifies, stage) and stage_value(genes, gene.modifies, stage) != target.off
    return True


def is_active(genes: Mapping[str, Any], name: str) -> bool:
    """Whether gene `name` changes the network at all (in any stage)."""
    return any(applies(genes, name, s) for s in range(stage_count(genes)))
