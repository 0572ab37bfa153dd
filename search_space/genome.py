"""A genome: validated genes -> resolved network spec; YAML/JSON round trip and a one-line compact form."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from blocks.spec import NetworkSpec, StageSpec
from search_space.genes import (
    BLOCK,
    GENES,
    SPLIT,
    STAGES,
    Gene,
    PerStage,
    applies,
    block_features,
    is_active,
    stage_value,
)


class GenomeError(ValueError):
    """A gene with a bad value or an invalid combination; the message names the gene and the value."""

    def __init__(self, gene: str, value: Any, problem: str) -> None:
        self.gene, self.value = gene, value
        super().__init__(f"gene {gene}={_show(value)}: {problem}")


def _show(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def format_value(value: Any) -> str:
    """One gene value in the one-line form: `40`, `dcm`, `4,4,2,1`, per stage `shuffle/weighting/weighting`."""
    return ",".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)


def parse_value(name: str, text: str) -> Any:
    """The inverse of `format_value` for gene `name`: `/` separates stages, `,` branches (stage genes: stages)."""
    if "/" in text:
        return PerStage(tuple(_parse_items(part, as_list=False) for part in text.split("/")))
    return _parse_items(text, as_list=name in GENES and GENES[name].kind == "stages")


def _parse_items(text: str, as_list: bool) -> Any:
    items = [int(v) if v.lstrip("-").isdigit() else v for v in text.split(",")]
    return items if (as_list or len(items) > 1) else items[0]


def _check_int(gene: Gene, value: Any, where: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GenomeError(gene.name, value, f"{where}expected an integer ({gene.describe_values()})")
    if not gene.minimum <= value <= gene.maximum:
        raise GenomeError(gene.name, value, f"{where}must be in {gene.minimum}..{gene.maximum}")
    return value


def _check_single(gene: Gene, value: Any, where: str = "") -> Any:
    if gene.kind == "choice":
        if value not in gene.choices:
            raise GenomeError(gene.name, value, f"{where}unknown value; choose one of {', '.join(gene.choices)}")
        return value
    if gene.kind == "stages":
        if not isinstance(value, list | tuple) or not 1 <= len(value) <= 3:
            raise GenomeError(gene.name, value, "expected a list of 1-3 module counts, one per stage, e.g. [2,4,2]")
        return [_check_int(gene, v, "each stage: ") for v in value]
    if isinstance(value, list | tuple):
        if not gene.per_branch:
            raise GenomeError(gene.name, value, f"{where}takes a single integer, not a list")
        return [_check_int(gene, v, f"{where}each branch: ") for v in value]
    return _check_int(gene, value, where)


def check_value(gene: Gene, value: Any) -> Any:
    """Type and range of one gene on its own; returns the normalised value (lists for lists, PerStage per stage).

    A per-stage value is a PerStage or, as read from YAML/JSON, a mapping `{stages: [...]}`.
    """
    if isinstance(value, Mapping):
        if set(value) != {"stages"} or not isinstance(value["stages"], list | tuple):
            raise GenomeError(gene.name, value, "a per-stage value is written {stages: [stage2, stage3, stage4]}")
        value = PerStage(tuple(value["stages"]))
    if not isinstance(value, PerStage):
        return _check_single(gene, value)
    if not gene.per_stage:
        per_stage = ", ".join(n for n, g in GENES.items() if g.per_stage)
        raise GenomeError(gene.name, value, f"cannot be given per stage (genes that can: {per_stage})")
    if not 1 <= len(value.values) <= 3:
        raise GenomeError(gene.name, value, "expected 1-3 per-stage values, one per stage")
    return PerStage(tuple(_check_single(gene, v, f"stage {i + 2}: ") for i, v in enumerate(value.values)))


@dataclass(frozen=True)
class Genome:
    """Every gene with a value (defaults filled in), validated on construction.

    A per-stage value whose entries agree on every stage where the gene applies is stored as that one value, so
    one network has one genome (and one compact string).
    """

    genes: Mapping[str, Any]

    def __post_init__(self) -> None:
        unknown = sorted(set(self.genes) - set(GENES))
        if unknown:
            raise GenomeError(unknown[0], self.genes[unknown[0]], f"unknown gene; known genes: {', '.join(GENES)}")
        values = {name: check_value(g, self.genes.get(name, g.default)) for name, g in GENES.items()}
        object.__setattr__(self, "genes", values)
        for check in COMBINATION_CHECKS:
            check(self)
        object.__setattr__(self, "genes", {name: self._collapsed(name) for name in values})

    def _collapsed(self, name: str) -> Any:
        value = self.genes[name]
        if not isinstance(value, PerStage):
            return value
        used = [v for s, v in enumerate(value.values) if applies(self.genes, name, s)] or list(value.values)
        single = used[0]
        if any(v != single for v in used) or (isinstance(single, list) and len(single) != self.branches):
            return value
        return single

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
        """Parse `name=value name=value ...`: `,` between branches (`kernels=4,4,2,1`), `/` between stages. A gene
        left out (a `canonical_line` drops the inactive ones) takes its off value where it is inactive, its default
        where it is active; the genes given keep their values (a longer, older form still loads as written)."""
        given = cls._parsed(line)
        genes = {name: given.get(name, gene.default) for name, gene in GENES.items()}
        try:
            for _ in range(len(GENES)):  # whether a gene is active depends on others that may be left out too
                idle = {
                    n: _idle(n) for n in GENES if n not in given and not is_active(genes, n) and genes[n] != _idle(n)
                }
                if not idle:
                    break
                genes.update(idle)
        except (KeyError, ValueError, TypeError, IndexError):
            pass  # a value the registry does not know: the genome's own checks below name it
        return cls(genes)

    @staticmethod
    def _parsed(line: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for token in line.split():
            name, sep, raw = token.partition("=")
            if not sep:
                raise GenomeError(token, "", "expected name=value in the compact genome string")
            if name not in GENES:
                raise GenomeError(name, raw, f"unknown gene; known genes: {', '.join(GENES)}")
            data[name] = parse_value(name, raw)
        return data

    def with_genes(self, overrides: Mapping[str, Any]) -> Genome:
        return Genome({**self.genes, **overrides})

    # ---- serialisation ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        def plain(v: Any) -> Any:
            if isinstance(v, PerStage):
                return {"stages": [plain(e) for e in v.values]}
            return list(v) if isinstance(v, list) else v

        return {name: plain(v) for name, v in self.genes.items()}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def compact(self) -> str:
        return " ".join(f"{name}={format_value(v)}" for name, v in self.genes.items())

    # ---- the canonical form: one name per network ----------------------------------------------------------
    def canonical(self) -> Genome:
        """The same network with every inactive gene (one that changes nothing, as `cross_ratio` with `cross=none`
        or `kernels` on shuffle blocks) at its off value, or its default where it has none."""
        return Genome(
            {name: value if is_active(self.genes, name) else _idle(name) for name, value in self.genes.items()}
        )

    def canonical_line(self) -> str:
        """The one-line form of the active genes only: two genomes of one network have the same line."""
        return " ".join(f"{name}={format_value(v)}" for name, v in self.genes.items() if is_active(self.genes, name))

    @classmethod
    def from_canonical(cls, line: str) -> Genome:
        """Parse a `canonical_line` (or any compact form) into the canonical genome of its network."""
        return cls.from_compact(line).canonical()

    def same_network(self, other: Genome) -> bool:
        return self.canonical_line() == other.canonical_line()

    def __str__(self) -> str:
        return self.compact()

    # ---- resolution ---------------------------------------------------------------------------------------
    @property
    def stages(self) -> int:
        return len(self.genes[STAGES])

    @property
    def branches(self) -> int:
        return self.stages + 1

    def branch_values(self, name: str, stage: int) -> list[int]:
        """A per-branch gene's values on the branches of stage index `stage` (0 = stage 2, which has 2)."""
        value = stage_value(self.genes, name, stage)
        return list(value[: stage + 2]) if isinstance(value, list) else [value] * (stage + 2)

    def channels(self, branches: int) -> tuple[int, ...]:
        return tuple(self.genes["width"] * 2**b for b in range(branches))

    def resolve(self, joints: int = 17) -> NetworkSpec:
        stages = tuple(
            StageSpec(channels=self.channels(s + 2), modules=modules, **self._stage_fields(s))
            for s, modules in enumerate(self.genes[STAGES])
        )
        network = {g.network_field: self.genes[name] for name, g in GENES.items() if g.network_field}
        return NetworkSpec(stages=stages, joints=joints, **network)

    def _stage_fields(self, stage: int) -> dict[str, Any]:
        """StageSpec fields from the genes that apply at this stage (the others keep the spec's defaults)."""
        fields = {}
        for name, gene in GENES.items():
            if not gene.stage_field or not applies(self.genes, name, stage):
                continue
            if gene.kind == "choice":
                fields[gene.stage_field] = gene.choice(stage_value(self.genes, name, stage)).module
            elif gene.per_branch:
                fields[gene.stage_field] = tuple(self.branch_values(name, stage))
            else:
                fields[gene.stage_field] = stage_value(self.genes, name, stage)
        return fields

    def applies(self, name: str, stage: int) -> bool:
        return applies(self.genes, name, stage)


def _idle(name: str) -> Any:
    """An inactive gene's canonical value: its off value, or its default."""
    gene = GENES[name]
    return gene.default if gene.off is None else gene.off


# ---- combination checks (each names the gene it blames) ------------------------------------------------------
def _at(value: Any, stage: int) -> str:
    """` at stage N` when the value is given per stage (so the message says which entry is wrong)."""
    return f" at stage {stage + 2}" if isinstance(value, PerStage) else ""


def _stage_lists_match(genome: Genome) -> None:
    for name, value in genome.genes.items():
        if isinstance(value, PerStage) and len(value.values) != genome.stages:
            raise GenomeError(
                name,
                value,
                f"has {len(value.values)} stage values but the network has {genome.stages} stages "
                f"(modules={_show(genome.genes[STAGES])}); give one value per stage or a single value",
            )


def _branch_lists_match(genome: Genome) -> None:
    for name, gene in GENES.items():
        value = genome.genes[name]
        if gene.per_branch and isinstance(value, list) and len(value) != genome.branches:
            raise GenomeError(
                name,
                value,
                f"has {len(value)} values but the network has {genome.branches} branches "
                f"(modules={_show(genome.genes[STAGES])}); give one value per branch or a single value",
            )
        for s, entry in enumerate(value.values if isinstance(value, PerStage) else ()):
            if isinstance(entry, list) and len(entry) != s + 2:
                raise GenomeError(
                    name,
                    value,
                    f"stage {s + 2} has {len(entry)} values but {s + 2} branches; give one value per branch of "
                    "that stage or a single value",
                )


def _is_on(value: Any, off: Any) -> bool:
    return any(v != off for v in (value if isinstance(value, list) else [value]))


def _genes_fit_their_block(genome: Genome) -> None:
    """A gene that requires a block feature must be off on every stage whose block lacks it."""
    for name, gene in GENES.items():
        if not gene.requires:
            continue
        value = genome.genes[name]
        blocks = "|".join(c.value for c in GENES[BLOCK].options if gene.requires in c.features)
        without = [s for s in range(genome.stages) if gene.requires not in block_features(genome.genes, s)]
        if isinstance(value, PerStage):
            wrong = [s for s in without if _is_on(value.values[s], gene.off)]
        else:  # a single value applies wherever the block has the feature: wrong only if no stage has it
            wrong = without[:1] if _is_on(value, gene.off) and len(without) == genome.stages else []
        for s in wrong:
            block = stage_value(genome.genes, BLOCK, s)
            where = (
                f"stage {s + 2} has block={block}" if isinstance(genome.genes[BLOCK], PerStage) else f"block is {block}"
            )
            raise GenomeError(
                name, value, f"only applies to block={blocks} ({where}); set {name}={gene.off}{_at(value, s)}"
            )


def _widths_split_evenly(genome: Genome) -> None:
    width = genome.genes["width"]
    for s in range(genome.stages):
        if SPLIT in block_features(genome.genes, s) and width % 2:
            block = stage_value(genome.genes, BLOCK, s)
            raise GenomeError("width", width, f"block={block} splits every branch in half; use an even width")
    for s in range(genome.stages):
        if not genome.applies("dsc_groups", s):
            continue
        groups, kernels = genome.branch_values("dsc_groups", s), genome.branch_values("kernels", s)
        for b, half in enumerate(c // 2 for c in genome.channels(s + 2)):
            if half % groups[b]:
                value = genome.genes["dsc_groups"]
                raise GenomeError(
                    "dsc_groups",
                    value,
                    f"branch {b}{_at(value, s)} has {half} channels in its weighted half, "
                    f"not divisible by {groups[b]} groups",
                )
            if kernels[b] > 1 and half // groups[b] < 4:
                raise GenomeError(
                    "kernels",
                    genome.genes["kernels"],
                    f"branch {b}{_at(genome.genes['kernels'], s)}: dynamic kernels need >= 4 channels per split "
                    f"group (has {half // groups[b]})",
                )


def _ratios_leave_channels(genome: Genome) -> None:
    for s in range(genome.stages):
        halves = [c // 2 for c in genome.channels(s + 2)]
        if genome.applies("cross_ratio", s):
            ratio = stage_value(genome.genes, "cross_ratio", s)
            if sum(halves) // ratio < 1:
                value = genome.genes["cross_ratio"]
                raise GenomeError("cross_ratio", value, f"reduces the {sum(halves)} stage-{s + 2} channels to none")
        if genome.applies("within_ratio", s):
            for b, (half, ratio) in enumerate(zip(halves, genome.branch_values("within_ratio", s), strict=True)):
                if half // ratio < 1:
                    value = genome.genes["within_ratio"]
                    raise GenomeError(
                        "within_ratio", value, f"reduces branch {b}'s {half} channels to none{_at(value, s)}"
                    )


COMBINATION_CHECKS: list[Callable[[Genome], None]] = [
    _stage_lists_match,
    _branch_lists_match,
    _genes_fit_their_block,
    _widths_split_evenly,
    _ratios_leave_channels,
]


def parse_gene_override(text: str) -> tuple[str, Any]:
    """`NAME=VALUE` from the command line; VALUE is YAML (`kernels=[4,4,2,1]`, `block=shuffle`,
    `block={stages: [shuffle, weighting, weighting]}`) or the one-line per-stage form (`block=shuffle/weighting`)."""
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise GenomeError(text, "", "expected --gene NAME=VALUE, e.g. --gene kernels=[4,4,2,1]")
    if name not in GENES:
        raise GenomeError(name, raw, f"unknown gene; known genes: {', '.join(GENES)}")
    if "/" in raw:  # the one-line per-stage form, block=shuffle/weighting/weighting
        return name, parse_value(name, raw)
    try:
        return name, yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise GenomeError(name, raw, f"value is not valid YAML ({exc.__class__.__name__})") from None
