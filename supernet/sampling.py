"""Which genomes a supernet step trains (the sandwich rule): the largest and the smallest genome of the space by
FLOPs (within an optional budget), and N random ones, drawn the same way in every process of a data-parallel
training (seeded by seed, epoch and step), so that all replicas train the same subnets at every step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from search_space.budget import Budget
from search_space.complexity import spec_complexity
from search_space.genome import Genome
from search_space.space import SearchSpace, SpaceError

FLOPS_CONVENTION = "torchstat"  # the convention of --budget and of the largest/smallest genome
FLOPS_INPUT_HW = (256, 192)  # the canonical input at which a budget is checked, as in `hrnas search`


@dataclass(frozen=True)
class Candidates:
    """The genomes a supernet training samples from, with their FLOPs (torchstat at 256x192)."""

    genomes: tuple[Genome, ...]
    flops: tuple[int, ...]

    @property
    def largest(self) -> Genome:
        return self.genomes[max(range(len(self.flops)), key=self.flops.__getitem__)]

    @property
    def smallest(self) -> Genome:
        return self.genomes[min(range(len(self.flops)), key=self.flops.__getitem__)]

    def top(self, fraction: float) -> Candidates:
        """The largest `fraction` of the genomes by FLOPs (at least one), in their order."""
        keep = max(1, round(fraction * len(self.genomes)))
        threshold = sorted(self.flops, reverse=True)[keep - 1]
        kept = [i for i, f in enumerate(self.flops) if f >= threshold]
        return Candidates(tuple(self.genomes[i] for i in kept), tuple(self.flops[i] for i in kept))

    def phase(self, phases: int, epoch: int, epochs: int) -> Candidates:
        """Progressive shrinking (Once-for-All, adapted to a space of discrete genomes): `epochs` split into `phases`
        of equal length; phase p (from 0) samples the largest (p + 1) / phases of the genomes by FLOPs, so the
        supernet first trains its large members alone and the last phase trains them all."""
        if phases <= 1:
            return self
        current = min(phases - 1, epoch * phases // max(1, epochs))
        return self.top((current + 1) / phases)

    def sandwich(self, count: int, seed: int, epoch: int, step: int) -> list[Genome]:
        """The step's genomes: largest first (the teacher), then the smallest and `count` random ones."""
        rng = random.Random(f"{seed}/{epoch}/{step}")
        return [self.largest, self.smallest, *(rng.choice(self.genomes) for _ in range(count))]


def candidates(space: SearchSpace, budget: Budget | None = None, joints: int = 17) -> Candidates:
    """Every genome of `space` (within `budget`, torchstat at 256x192), counted exactly; SpaceError if none fits."""
    genomes, flops = [], []
    for genome in space.valid_genomes():
        value = spec_complexity(genome.resolve(joints), FLOPS_INPUT_HW).flops[FLOPS_CONVENTION]
        if budget is None or value <= budget.raw:
            genomes.append(genome)
            flops.append(value)
    if not genomes:
        raise SpaceError(f"no genome of space {space.name} fits the budget {budget.text}; raise --budget")
    return Candidates(tuple(genomes), tuple(flops))
