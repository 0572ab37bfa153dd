"""A genome: validated genes -> resolved network spec; YAML/JSON round trip and a one-line compact form."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from blocks.spec import NetworkSpec, StageSpec
from search_space.genes import GENES, WEIGHTING_ONLY, Gene


class GenomeError(ValueError):
    """A gene with a bad value or an invalid combination; the message names the gene and the value."""

    def __init__(self, gene: str, value: Any, problem: str) -> None:
        self.gene, self.value = gene, value
        super().__init__(f"gene {gene}={_show(value)}: {problem}")


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def _check_int(gene: Gene, value: Any, where: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GenomeError(gene.name, value, f"{where}expected an integer ({gene.describe_values()})")
    if not gene.minimum <= value <= gene.maximum:
        raise GenomeError(gene.name, value, f"{where}must be in {gene.minimum}..{gene.maximum}")
    return value


def check_value(gene: Gene, value: Any) -> Any:
    """Type and range of one gene on its own; returns the normalised value (lists for lists)."""
    if gene.kind == "choice":
        if value not in gene.choices:
            raise GenomeError(gene.name, value, f"unknown value; choose one of {', '.join(gene.choices)}")
        return value
    if gene.kind == "stages":
        if not isinstance(value, list | tuple) or not 1 <= len(value) <= 3:
            raise GenomeError(gene.name, value, "expected a list of 1-3 module counts, one per stage, e.g. [2,4,2]")
        return [_check_int(gene, v, "each stage: ") for v in value]
    if isinstance(value, list | tuple):
        if not gene.per_branch:
            raise GenomeError(gene.name, value, "takes a single integer, not a list")
        return [_check_int(gene, v, "each branch: ") for v in value]
    return _check_int(gene, value)


@dataclass(frozen=True)
class Genome:
    """Every gene with a value (defaults filled in), validated on construction."""

    genes: Mapping[str, Any]

    def __post_init__(self) -> None:
        unknown = sorted(set(self.genes) - set(GENES))
        if unknown:
            raise GenomeError(unknown[0], self.genes[unknown[0]], f"unknown gene; known genes: {', '.join(GENES)}")
        values = {name: check_value(g, self.genes.get(name, g.default)) for name, g in GENES.items()}
        object.__setattr__(self, "genes", values)
        for check in COMBINATION_CHECKS:
            check(self)

    # ---- construction -------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Genome:
        if not isinstance(data, Mapping):
            raise GenomeError("genome", data, "expected a mapping of gene names to values")
        return cls(dict(data))

    @classmethod
    def from_yaml(cls, text: str) -> Genome:
        return cls.from_dict(yaml.safe_load(text) or {})

    @classmethod
    def from_file(cls, path: str | Path) -> Genome:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"genome file {path} does not exist")
        text = path.read_text()
        return cls.from_dict(json.loads(text)) if path.suffix == ".json" else cls.from_yaml(text)

    @classmethod
    def from_compact(cls, line: str) -> Genome:
        """Parse `name=value name=value ...`; lists are comma-separated (`kernels=4,4,2,1`)."""
        data: dict[str, Any] = {}
        for token in line.split():
            name, sep, raw = token.partition("=")
            if not sep:
                raise GenomeError(token, "", "expected name=value in the compact genome string")
            items = [int(v) if v.lstrip("-").isdigit() else v for v in raw.split(",")]
            multi = "," in raw or (name in GENES and GENES[name].kind == "stages")
            data[name] = items if multi else items[0]
        return cls.from_dict(data)

    def with_genes(self, overrides: Mapping[str, Any]) -> Genome:
        return Genome({**self.genes, **overrides})

    # ---- serialisation ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {name: (list(v) if isinstance(v, list) else v) for name, v in self.genes.items()}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def compact(self) -> str:
        return " ".join(f"{name}={_show(v).strip('[]')}" for name, v in self.genes.items())

    def __str__(self) -> str:
        return self.compact()

    # ---- resolution ---------------------------------------------------------------------------------------
    @property
    def branches(self) -> int:
        return len(self.genes["modules"]) + 1

    def per_branch(self, name: str) -> list[int]:
        value = self.genes[name]
        return list(value) if isinstance(value, list) else [value] * self.branches

    def channels(self, branches: int) -> tuple[int, ...]:
        return tuple(self.genes["width"] * 2**b for b in range(branches))

    def resolve(self, joints: int = 17) -> NetworkSpec:
        g = self.genes
        stages = []
        for index, modules in enumerate(g["modules"]):
            n = index + 2
            stages.append(
                StageSpec(
                    channels=self.channels(n),
                    modules=modules,
                    blocks=g["blocks"],
                    block=g["block"],
                    cross=g["cross"],
                    cross_ratio=g["cross_ratio"],
                    within=g["within"],
                    within_ratios=tuple(self.per_branch("within_ratio")[:n]),
                    dsc_groups=tuple(self.per_branch("dsc_groups")[:n]),
                    kernels=tuple(self.per_branch("kernels")[:n]),
                )
            )
        return NetworkSpec(g["stem"], tuple(stages), g["fuse"], g["transition"], g["head"], joints)


# ---- combination checks (each names the gene it blames) ------------------------------------------------------
def _branch_lists_match(genome: Genome) -> None:
    for name, gene in GENES.items():
        value = genome.genes[name]
        if gene.per_branch and isinstance(value, list) and len(value) != genome.branches:
            raise GenomeError(
                name,
                value,
                f"has {len(value)} values but the network has {genome.branches} branches "
                f"(modules={_show(genome.genes['modules'])}); give one value per branch or a single value",
            )


def _weighting_genes_need_weighting_block(genome: Genome) -> None:
    block = genome.genes["block"]
    if block == "weighting":
        return
    for name, off in WEIGHTING_ONLY.items():
        value = genome.genes[name]
        if any(v != off for v in (value if isinstance(value, list) else [value])):
            raise GenomeError(name, value, f"only applies to block=weighting (block is {block}); set {name}={off}")


def _widths_split_evenly(genome: Genome) -> None:
    if genome.genes["block"] == "residual":
        return
    width = genome.genes["width"]
    if width % 2:
        raise GenomeError(
            "width", width, f"block={genome.genes['block']} splits every branch in half; use an even width"
        )
    if genome.genes["block"] != "weighting":
        return
    groups, kernels = genome.per_branch("dsc_groups"), genome.per_branch("kernels")
    for b, half in enumerate(c // 2 for c in genome.channels(genome.branches)):
        if half % groups[b]:
            raise GenomeError(
                "dsc_groups",
                genome.genes["dsc_groups"],
                f"branch {b} has {half} channels in its weighted half, not divisible by {groups[b]} groups",
            )
        if kernels[b] > 1 and half // groups[b] < 4:
            raise GenomeError(
                "kernels",
                genome.genes["kernels"],
                f"branch {b}: dynamic kernels need >= 4 channels per split group (has {half // groups[b]})",
            )


def _ratios_leave_channels(genome: Genome) -> None:
    g = genome.genes
    halves = [c // 2 for c in genome.channels(genome.branches)]
    if g["cross"] != "none":
        smallest = sum(halves[:2])  # stage 2 has the fewest channels
        if smallest // g["cross_ratio"] < 1:
            raise GenomeError("cross_ratio", g["cross_ratio"], f"reduces the {smallest} stage-2 channels to none")
    if g["within"] != "none":
        for b, (half, ratio) in enumerate(zip(halves, genome.per_branch("within_ratio"), strict=True)):
            if half // ratio < 1:
                raise GenomeError("within_ratio", g["within_ratio"], f"reduces branch {b}'s {half} channels to none")


COMBINATION_CHECKS: list[Callable[[Genome], None]] = [
    _branch_lists_match,
    _weighting_genes_need_weighting_block,
    _widths_split_evenly,
    _ratios_leave_channels,
]


def parse_gene_override(text: str) -> tuple[str, Any]:
    """`NAME=VALUE` from the command line; VALUE is YAML (`kernels=[4,4,2,1]`, `block=shuffle`)."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise GenomeError(text, "", "expected --gene NAME=VALUE, e.g. --gene kernels=[4,4,2,1]")
    if name not in GENES:
        raise GenomeError(name, raw, f"unknown gene; known genes: {', '.join(GENES)}")
    try:
        return name, yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise GenomeError(name, raw, f"value is not valid YAML ({exc.__class__.__name__})") from None
