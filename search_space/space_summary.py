"""What a search space holds: how many distinct genomes, how many fit a budget, the FLOPs range, which presets.

Every genome is counted exactly, as a sum of memoised parts (`spec_complexity`), so a space of tens of thousands
of genomes takes seconds: only its few hundred distinct pieces (stem, transitions, per-branch blocks, context modules
and split convs per branch width, fuses, heads) are built and run.
Pure Python and torch (no Ray).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from search_space.budget import Budget
from search_space.complexity import check_input_size, convention, spec_complexity
from search_space.genome import Genome
from search_space.presets import PRESETS, load_preset
from search_space.space import SearchSpace, SpaceError

# progress(counted, total, seconds so far)
Progress = Callable[[int, int, float], None]


@dataclass(frozen=True)
class SpaceSummary:
    space: str
    genomes: int
    within_budget: int | None  # None without a budget
    smallest_flops: int
    largest_flops: int
    smallest_genome: str
    largest_genome: str
    presets: list[str]
    convention: str
    budget: str | None
    budget_raw: int | None
    input: str
    joints: int
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def presets_in(space: SearchSpace) -> list[str]:
    """The presets that are points of the space."""
    found = []
    for name in PRESETS:
        try:
            space.params_of(load_preset(name))
        except SpaceError:
            continue
        found.append(name)
    return found


def summarize(
    space: SearchSpace,
    convention_name: str = "torchstat",
    budget: Budget | None = None,
    input_hw: tuple[int, int] = (256, 192),
    joints: int = 17,
    progress: Progress | None = None,
) -> SpaceSummary:
    """Count every genome of `space` in `convention_name` at `input_hw` and `joints`."""
    convention(convention_name)
    check_input_size(input_hw)
    start = time.perf_counter()
    genomes = list(space.valid_genomes())  # each distinct genome once
    flops: list[tuple[int, Genome]] = []
    for index, genome in enumerate(genomes, 1):
        flops.append((spec_complexity(genome.resolve(joints), input_hw).flops[convention_name], genome))
        if progress is not None:
            progress(index, len(genomes), time.perf_counter() - start)
    smallest, largest = min(flops, key=lambda f: f[0]), max(flops, key=lambda f: f[0])
    return SpaceSummary(
        space=space.name,
        genomes=len(genomes),
        within_budget=None if budget is None else sum(1 for value, _ in flops if value <= budget.raw),
        smallest_flops=smallest[0],
        largest_flops=largest[0],
        smallest_genome=smallest[1].canonical_line(),  # its active genes only: one name per network
        largest_genome=largest[1].canonical_line(),
        presets=presets_in(space),
        convention=convention_name,
        budget=None if budget is None else budget.text,
        budget_raw=None if budget is None else budget.raw,
        input=f"{input_hw[0]}x{input_hw[1]}",
        joints=joints,
        seconds=round(time.perf_counter() - start, 2),
    )
