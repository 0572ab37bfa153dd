"""A stratified sample of a space's genomes under a budget: the architectures a ground truth is built on.

How it stratifies (deterministic for a seed):
1. the population is every distinct genome of the space whose FLOPs (the search's convention, canonical input) fit
   the budget, each in its canonical form (inactive genes dropped), presets left out (they join the sample apart);
2. the population is cut into `strata` equal-count FLOPs bins (FLOPs quantiles);
3. picks go round-robin over the bins; each pick takes the genome of its bin whose gene values are rarest in the
   sample so far: the sum, over the space's varying genes, of how often the sample already holds that gene's value
   (an inactive gene counts as the value `-`, so "no cross module" is balanced like any other value). Every value
   of every gene is so covered about evenly across all FLOPs levels; ties go to a seeded shuffle of the bin.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from search_space.genes import is_active
from search_space.genome import Genome, format_value
from search_space.space import SearchSpace


@dataclass(frozen=True)
class Member:
    """One genome of the sample: its canonical line, its FLOPs and, for a preset, its name."""

    genome: str
    flops: int
    preset: str | None = None


def population(space: SearchSpace, flops_of: Callable[[Genome], int], limit: int) -> list[Member]:
    """Every distinct genome of the space within `limit` FLOPs, canonical, cheapest first."""
    members = {}
    for genome in space.valid_genomes():
        flops = flops_of(genome)
        if flops <= limit:
            line = genome.canonical_line()
            members[line] = Member(line, flops)
    return sorted(members.values(), key=lambda m: (m.flops, m.genome))


def gene_values(line: str) -> Iterator[tuple[str, str]]:
    """(gene, value) of every active gene of a canonical line."""
    genes = Genome.from_canonical(line).genes
    for name, value in genes.items():
        if is_active(genes, name):
            yield name, format_value(value)


def features(line: str, genes: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """(gene, value) for each of `genes`, `-` where the gene is inactive: the values a sample balances."""
    active = dict(gene_values(line))
    return tuple((name, active.get(name, "-")) for name in genes)


def stratified(members: list[Member], count: int, strata: int, seed: int, genes: Iterable[str]) -> list[Member]:
    """`count` members drawn round-robin over `strata` FLOPs quantile bins, each pick the member of its bin whose
    values of `genes` are rarest in the sample so far (see the module's docstring); ties go to a seeded shuffle."""
    if count > len(members):
        raise ValueError(f"a sample of {count} from {len(members)} genomes: ask for {len(members)} or fewer")
    genes = list(genes)
    rng = random.Random(seed)
    ordered = sorted(members, key=lambda m: (m.flops, m.genome))
    bins = [ordered[len(ordered) * b // strata : len(ordered) * (b + 1) // strata] for b in range(strata)]
    for members_of_bin in bins:
        rng.shuffle(members_of_bin)
    values = {m.genome: features(m.genome, genes) for m in ordered}
    held = Counter[tuple[str, str]]()
    chosen: list[Member] = []
    taken: set[str] = set()
    for pick in range(count):
        left = [m for m in bins[pick % strata] if m.genome not in taken]
        best = min(left, key=lambda m: sum(held[v] for v in values[m.genome]))
        held.update(values[best.genome])
        chosen.append(best)
        taken.add(best.genome)
    return sorted(chosen, key=lambda m: (m.flops, m.genome))


def spread(members: list[Member], count: int) -> list[Member]:
    """`count` members evenly spaced over the FLOPs order (both ends included)."""
    ordered = sorted(members, key=lambda m: (m.flops, m.genome))
    if count >= len(ordered):
        return ordered
    if count == 1:
        return [ordered[len(ordered) // 2]]
    return [ordered[round(i * (len(ordered) - 1) / (count - 1))] for i in range(count)]


def coverage(members: list[Member]) -> dict[str, dict[str, int]]:
    """How many members hold each value of each gene (active genes only): the sample's balance, for the docs."""
    table: dict[str, Counter[str]] = {}
    for member in members:
        for name, value in gene_values(member.genome):
            table.setdefault(name, Counter())[value] += 1
    return {name: dict(sorted(values.items())) for name, values in table.items()}
