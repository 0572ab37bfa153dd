"""A search space: a base genome and, for some genes, the values a search may choose from (read from YAML).

Pure Python (no Optuna, Ray or MLflow). The searcher sees one categorical parameter per varying gene, named
`gene.<name>`, whose choices are the gene values written as compact strings (`4,4,2,1`, `dcm`, `40`, per stage
`shuffle/weighting/weighting`). Some genes are conditional (the registry's `requires` and `modifies`):
channel-weighting genes are chosen only when some stage's block has channel weighting, and a reduction ratio only
when its module is on somewhere; otherwise they take their off value, so no sample wastes a choice.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from search_space.genes import BLOCK, GENES, PerStage
from search_space.genes import is_active as gene_is_active
from search_space.genome import Genome, GenomeError, check_value, format_value, parse_value
from search_space.presets import load_architecture

PARAM_PREFIX = "gene."
# The default space ships as package data, so a non-editable install finds it from any folder.
DEFAULT_SPACE = Path(__file__).resolve().parent / "spaces" / "default.yaml"
# Genes along which the complexity only grows (+1) or only shrinks (-1) as the value grows: the cheapest genome
# of a space takes their cheapest value, so finding it needs no enumeration along them.
MONOTONE: dict[str, int] = {"width": 1, "modules": 1, "blocks": 1, "cross_ratio": -1, "within_ratio": -1}
# The genes the conditions read (a gene's block, the module a ratio modifies): sampled first.
SAMPLE_FIRST = (BLOCK, *dict.fromkeys(g.modifies for g in GENES.values() if g.modifies))


class SpaceError(ValueError):
    """A malformed search space; the message names the file, the gene and the value."""


encode = format_value  # a gene value as the searcher's categorical choice: `4,4,2,1`, `dcm`, `shuffle/weighting`
decode = parse_value  # its inverse for a gene name (stage genes stay lists even with one value)


@dataclass(frozen=True)
class SearchSpace:
    name: str
    base: Genome
    choices: dict[str, tuple[Any, ...]]  # gene -> the values the search may pick, in file order
    description: str = ""

    # ---- reading -----------------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> SearchSpace:
        path = Path(path)
        if not path.is_file():
            raise SpaceError(f"search space file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise SpaceError(f"search space file {path} is not valid YAML ({exc})") from None
        return cls.from_dict(data, source=str(path), default_name=path.stem)

    @classmethod
    def from_dict(cls, data: Any, source: str = "<space>", default_name: str = "space") -> SearchSpace:
        if not isinstance(data, dict) or not isinstance(data.get("genes"), dict) or not data["genes"]:
            raise SpaceError(f"{source}: expected a mapping with `base` (preset or genome file) and `genes` "
                             "(gene name -> list of values)")  # fmt: skip
        unknown = set(data) - {"name", "description", "base", "genes"}
        if unknown:
            raise SpaceError(f"{source}: unknown key(s) {sorted(unknown)}; expected name, description, base, genes")
        try:
            base = load_architecture(str(data.get("base", "litehrnet-18")))
        except (GenomeError, ValueError, FileNotFoundError) as exc:
            raise SpaceError(f"{source}: base: {exc}") from None
        choices: dict[str, tuple[Any, ...]] = {}
        for name, values in data["genes"].items():
            if name not in GENES:
                raise SpaceError(f"{source}: unknown gene {name!r}; known genes: {', '.join(GENES)}")
            if not isinstance(values, list) or not values:
                raise SpaceError(f"{source}: gene {name}: expected a non-empty list of values, got {values!r}")
            choices[name] = tuple(_check_choice(source, name, value) for value in values)
        space = cls(str(data.get("name", default_name)), base, choices, str(data.get("description", "")))
        if not any(True for _ in itertools.islice(space.valid_genomes(), 1)):
            raise SpaceError(f"{source}: no combination of the listed values is a valid genome")
        return space

    # ---- the searcher's view -----------------------------------------------------------------------------
    def is_active(self, name: str, genes: Mapping[str, Any]) -> bool:
        """Whether gene `name` changes the network, given the genes chosen so far (the registry's `requires` and
        `modifies`: a weighting-only gene is active if any stage's block has channel weighting)."""
        return gene_is_active(genes, name)

    def ordered(self) -> list[str]:
        """The varying genes in sampling order: the genes others depend on come first."""
        return sorted(self.choices, key=lambda n: SAMPLE_FIRST.index(n) if n in SAMPLE_FIRST else len(SAMPLE_FIRST))

    def parameters(self) -> dict[str, list[str]]:
        """`gene.<name>` -> encoded choices, in sampling order."""
        return {PARAM_PREFIX + n: [encode(v) for v in self.choices[n]] for n in self.ordered()}

    def genome(self, params: Mapping[str, str]) -> Genome:
        """The genome of a sample (`gene.<name>` -> encoded value); inactive genes take their off (or base) value."""
        genes = dict(self.base.genes)
        for key, text in params.items():
            name = key.removeprefix(PARAM_PREFIX)
            genes[name] = decode(name, str(text))
        for name, gene in GENES.items():
            if not self.is_active(name, genes):
                genes[name] = self.base.genes[name] if gene.off is None else gene.off
        return Genome(genes)

    def params_of(self, genome: Genome) -> dict[str, str]:
        """The sample that gives `genome`; SpaceError naming the first gene the space cannot express."""
        params = {}
        for name in self.ordered():
            value = genome.genes[name]
            if not self.is_active(name, genome.genes):
                continue
            if encode(value) not in {encode(v) for v in self.choices[name]}:
                raise SpaceError(f"gene {name}={encode(value)} is not among the space's choices "
                                 f"{[encode(v) for v in self.choices[name]]}")  # fmt: skip
            params[PARAM_PREFIX + name] = encode(value)
        for name, value in genome.genes.items():
            if name not in self.choices and self.is_active(name, genome.genes) and value != self.base.genes[name]:
                raise SpaceError(f"gene {name}={encode(value)} is fixed to {encode(self.base.genes[name])} here")
        if not self.genome(params).same_network(genome):
            raise SpaceError(f"genome {genome.compact()} is not in the space")
        return params

    def size(self) -> int:
        """Number of distinct samples (a gene counts only where it is active)."""
        return sum(1 for _ in self.samples())

    def samples(self, fixed: Mapping[str, Any] | None = None) -> Iterator[dict[str, str]]:
        """Every distinct sample (optionally with some genes pinned to one value), in a deterministic order."""
        fixed = dict(fixed or {})

        def extend(names: list[str], genes: dict[str, Any], params: dict[str, str]) -> Iterator[dict[str, str]]:
            if not names:
                yield params
                return
            name, rest = names[0], names[1:]
            if not self.is_active(name, genes):
                yield from extend(rest, genes, params)
                return
            for value in [fixed[name]] if name in fixed else self.choices[name]:
                yield from extend(rest, {**genes, name: value}, {**params, PARAM_PREFIX + name: encode(value)})

        yield from extend(self.ordered(), dict(self.base.genes), {})

    def valid_genomes(self, fixed: Mapping[str, Any] | None = None) -> Iterator[Genome]:
        """Every distinct valid genome (per-stage values that amount to one value give one genome, once)."""
        seen: set[str] = set()
        for params in self.samples(fixed):
            try:
                genome = self.genome(params)
            except GenomeError:
                continue
            compact = genome.canonical_line()
            if compact not in seen:
                seen.add(compact)
                yield genome

    def cheapest_candidates(self) -> Iterator[Genome]:
        """Valid genomes among which the cheapest of the space is: a monotone gene is pinned to its cheapest
        value when one value is cheapest branch by branch (dominance), and enumerated otherwise."""
        fixed = {}
        for name, direction in MONOTONE.items():
            values = self.choices.get(name, ())
            expanded = [_per_slot(v) for v in values]
            for value, slots in zip(values, expanded, strict=True):
                if all(all(direction * (a - b) <= 0 for a, b in zip(slots, other, strict=False)) for other in expanded):
                    fixed[name] = value
                    break
        return self.valid_genomes(fixed)


def _per_slot(value: Any) -> list[int]:
    """A value as 12 slots, 4 branches in each of 3 stages, a single value repeated (for dominance tests)."""
    stages = list(value.values) if isinstance(value, PerStage) else [value]
    stages += [stages[-1]] * (3 - len(stages))
    return [x for v in stages for x in (list(v) + [v[-1]] * (4 - len(v)) if isinstance(v, list) else [v] * 4)]


def _check_choice(source: str, name: str, value: Any) -> Any:
    """One listed value must be a valid value of its gene on its own (combinations are checked per sample)."""
    try:
        return check_value(GENES[name], value)
    except GenomeError as exc:
        raise SpaceError(f"{source}: gene {name}: value {value!r} is not valid: {exc}") from None
