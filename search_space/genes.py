"""The gene vocabulary: every gene, its allowed values, whether it may be given per branch, its default.

Pure Python. Names are a public interface: keep them stable once released.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Gene:
    name: str
    kind: str  # "choice": one of `choices`; "int": an integer in [minimum, maximum]; "stages": list of such ints
    default: Any
    doc: str
    choices: tuple[str, ...] = ()
    minimum: int = 1
    maximum: int = 1024
    per_branch: bool = False  # may also be a list with one value per branch

    def describe_values(self) -> str:
        if self.kind == "choice":
            return " | ".join(self.choices)
        span = f"integer {self.minimum}..{self.maximum}"
        if self.kind == "stages":
            return f"list of 1-3 {span} (one per stage)"
        return f"{span}" + (" or a list with one per branch" if self.per_branch else "")


GENES: dict[str, Gene] = {
    g.name: g
    for g in [
        Gene(
            "stem",
            "choice",
            "lite",
            "HRNet strided convs + bottlenecks, Lite shuffle stem, Dite dynamic stem",
            choices=("hrnet", "lite", "dite"),
        ),
        Gene("width", "int", 40, "channels of branch 0; branch b has width * 2^b", minimum=4, maximum=512),
        Gene("modules", "stages", [2, 4, 2], "multi-branch modules in each stage (stages 2..4)", maximum=16),
        Gene("blocks", "int", 2, "blocks per branch per module", maximum=8),
        Gene(
            "block",
            "choice",
            "weighting",
            "HRNet BasicBlock, shuffle block with 1x1 convs, channel weighting",
            choices=("residual", "shuffle", "weighting"),
        ),
        Gene(
            "cross",
            "choice",
            "crw",
            "cross-resolution weighting (Lite) or dense context modeling (Dite)",
            choices=("crw", "dcm", "none"),
        ),
        Gene(
            "within",
            "choice",
            "sw",
            "spatial weighting (Lite) or global context modeling (Dite)",
            choices=("sw", "gcm", "none"),
        ),
        Gene("cross_ratio", "int", 8, "reduction ratio of the cross-branch module", maximum=64),
        Gene("within_ratio", "int", 4, "reduction ratio of the within-branch module", maximum=64, per_branch=True),
        Gene(
            "dsc_groups",
            "int",
            1,
            "dynamic split conv groups; group i has a (3+2i)x(3+2i) depthwise kernel",
            maximum=4,
            per_branch=True,
        ),
        Gene(
            "kernels", "int", 1, "dynamic kernels of the depthwise convs; 1 = static conv", maximum=8, per_branch=True
        ),
        Gene(
            "fuse",
            "choice",
            "official",
            "official Lite fuse (branch 0 twice), its Dite variant, or HRNet's sum",
            choices=("official", "official-relu", "sum"),
        ),
        Gene(
            "transition",
            "choice",
            "dw",
            "depthwise-separable (Lite/Dite) or full 3x3 (HRNet) resolution steps",
            choices=("dw", "conv"),
        ),
        Gene(
            "head",
            "choice",
            "iterative",
            "Lite/Dite IterativeHead, or HRNet's 1x1 on branch 0",
            choices=("iterative", "simple"),
        ),
    ]
}

# Genes that only mean something inside a channel-weighting block, with their "off" value.
WEIGHTING_ONLY: dict[str, Any] = {"cross": "none", "within": "none", "dsc_groups": 1, "kernels": 1}
