"""Which genomes the official code can build, and the mmpose configuration that builds one (for `hrnas convert`).

The official LiteHRNet takes, per stage, its module count, blocks per branch, module type (LITE: conditional channel
weighting; NAIVE: shuffle blocks) and cross-resolution reduction ratio, and channels per branch; spatial weighting's
ratio (4), the stem (32 channels, expand ratio 1) and the iterative head are fixed in its code. DiteHRNet takes
modules, blocks and channels; its dynamic split convs ([1, 1, 2, 4] kernel groups), dynamic kernel counts
([4, 4, 2, 1]), context ratios (dense 8; global [4, 4, 8, 8]) are fixed in its code. HRNet takes modules, blocks and
channels per stage, with basic blocks and a 64-channel bottleneck stem. Checked by reading the code at the revisions
that tools/official_fixtures.py builds (mmpose's LiteHRNet and HRNet keep the same module names in 1.x, v1.3.2).
"""

from __future__ import annotations

from search_space.genome import Genome

FREE = {"width", "modules", "blocks"}  # a config value in every family
# gene -> the value it must have on each branch where it applies: one value, or one per branch index
REQUIRED: dict[str, dict[str, object]] = {
    "lite": {
        "stem": "lite", "block": ("shuffle", "weighting"), "cross": "crw", "within": "sw", "within_ratio": 4,
        "dsc_groups": 1, "kernels": 1, "fuse": "official", "transition": "dw", "head": "iterative",
        "cross_ratio": None,  # any value, one per stage (reduce_ratios)
    },
    "dite": {
        "stem": "dite", "block": "weighting", "cross": "dcm", "within": "gcm", "cross_ratio": 8,
        "within_ratio": [4, 4, 8, 8], "dsc_groups": [1, 1, 2, 4], "kernels": [4, 4, 2, 1], "fuse": "official-relu",
        "transition": "dw", "head": "iterative",
    },
    "hrnet": {
        "stem": "hrnet", "block": "residual", "cross": "none", "within": "none", "fuse": "sum", "transition": "conv",
        "head": "simple", "cross_ratio": None, "within_ratio": None, "dsc_groups": 1, "kernels": 1,
    },
}  # fmt: skip
MODULE_TYPES = {"weighting": "LITE", "shuffle": "NAIVE"}  # LiteHRNet's module_type of each block
CODE = {"lite": "LiteHRNet", "dite": "DiteHRNet", "hrnet": "HRNet"}


def stage_values(genome: Genome, gene: str, stage: int) -> list:
    return genome.branch_values(gene, stage) if genome.applies(gene, stage) else []


def allowed_values(want: object, branch: int) -> tuple:
    """What REQUIRED allows on `branch`: any of a tuple's values, a list's value at that branch, or the one value."""
    if isinstance(want, tuple):
        return want
    return (want[branch],) if isinstance(want, list) else (want,)


def inexpressible(genome: Genome, family: str) -> list[str]:
    """Why the official `family` code cannot build `genome` (empty: it can)."""
    required = REQUIRED[family]
    reasons = [f"{gene} has no counterpart" for gene in genome.genes if gene not in required and gene not in FREE]
    for gene, want in required.items():
        for stage in range(genome.stages):
            values = stage_values(genome, gene, stage)
            if want is None:
                wrong = len(set(values)) > 1  # one value per stage, whatever it is
                shown = "one value per stage"
            else:
                wrong = any(v not in allowed_values(want, branch) for branch, v in enumerate(values))
                shown = " or ".join(map(str, want)) if isinstance(want, tuple) else str(want)
            if wrong:
                reasons.append(f"{gene} is {values} in stage {stage + 2}; {CODE[family]} has {shown}")
                break
    return reasons


def per_stage(genome: Genome, pick) -> str:
    return "(" + ", ".join(str(pick(s)) for s in range(genome.stages)) + ",)"


def backbone_config(genome: Genome, family: str) -> str:
    """The `backbone=dict(...)` of an mmpose config that builds `genome` with the official `family` code."""
    channels = per_stage(genome, lambda s: genome.channels(s + 2))
    modules = per_stage(genome, lambda s: genome.genes["modules"][s])
    blocks = genome.genes["blocks"]
    if family == "hrnet":
        stages = [
            "stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK', num_blocks=(4,), num_channels=(64,))"
        ] + [
            f"stage{s + 2}=dict(num_modules={genome.genes['modules'][s]}, num_branches={s + 2}, block='BASIC', "
            f"num_blocks={(blocks,) * (s + 2)}, num_channels={genome.channels(s + 2)})"
            for s in range(genome.stages)
        ]
        return "backbone=dict(type='HRNet', in_channels=3, extra=dict(\n        " + ",\n        ".join(stages) + "))"
    spec = [
        f"num_modules={modules}",
        f"num_branches={per_stage(genome, lambda s: s + 2)}",
        f"num_blocks={per_stage(genome, lambda s: blocks)}",
    ]
    stem = "stem=dict(stem_channels=32, out_channels=32)"
    if family == "lite":
        stem = "stem=dict(stem_channels=32, out_channels=32, expand_ratio=1)"
        kinds = per_stage(genome, lambda s: repr(MODULE_TYPES[genome.branch_values("block", s)[0]]))
        ratios = per_stage(genome, lambda s: (stage_values(genome, "cross_ratio", s) or [8])[0])
        spec += [f"module_type={kinds}", f"reduce_ratios={ratios}"]
    spec += [f"with_fuse={(True,) * genome.stages}", f"num_channels={channels}"]
    return (
        f"backbone=dict(type='{CODE[family]}', in_channels=3, extra=dict(\n        {stem},\n        "
        f"num_stages={genome.stages},\n        stages_spec=dict(\n            "
        + ",\n            ".join(spec)
        + "),\n        with_head=True))"
    )


def head_config(genome: Genome, joints: int, layout: str) -> str:
    """The head an mmpose config needs for the converted file: one 1x1 conv on branch 0."""
    width = genome.genes["width"]
    if layout == "mmpose1x":
        return f"head=dict(type='HeatmapHead', in_channels={width}, out_channels={joints}, deconv_out_channels=None)"
    return (
        f"keypoint_head=dict(type='TopdownHeatmapSimpleHead', in_channels={width}, out_channels={joints}, "
        "num_deconv_layers=0, extra=dict(final_conv_kernel=1))"
    )
