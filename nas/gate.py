"""The budget gate: a genome's exact complexity at the canonical input, computed before any training.

Complexities are cached on disk (one JSON file per cache folder), so a resumed search, a second search over the
same space and the smallest-genome check cost nothing the second time. An entry is keyed by everything its figures
depend on: the hash of the counting code and rules (`counting_fingerprint`), the input size, the joints and the
genome; so editing a block, a gene's resolution or a rule makes the old entries unused (and dropped on the next
save), never stale.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from search_space.budget import Budget
from search_space.complexity import CONVENTIONS, counting_fingerprint, format_flops, genome_complexity
from search_space.genome import Genome
from search_space.space import SearchSpace


class BudgetTooSmall(ValueError):
    """No genome of the space fits the budget; the message states the smallest achievable figure."""


@dataclass(frozen=True)
class Cost:
    """What the gate knows of one genome (every convention, so a run can log them all)."""

    params: int
    flops: dict[str, int]

    def metrics(self) -> dict[str, int]:
        return {"params": self.params, **{f"flops_{name.replace('-', '_')}": v for name, v in self.flops.items()}}


class BudgetGate:
    def __init__(
        self,
        budget: Budget,
        convention: str = "torchstat",
        input_hw: tuple[int, int] = (256, 192),
        joints: int = 17,
        cache_file: Path | None = None,
    ) -> None:
        if convention not in CONVENTIONS:
            raise ValueError(f"unknown convention {convention!r}; choose one of {', '.join(CONVENTIONS)}")
        self.budget, self.convention, self.input_hw, self.joints = budget, convention, input_hw, joints
        self.cache_file = cache_file
        self._prefix = f"{counting_fingerprint()}|{input_hw[0]}x{input_hw[1]}|{joints}|"
        self._cache: dict[str, dict] = {}
        if cache_file is not None and cache_file.is_file():
            try:
                entries = json.loads(cache_file.read_text())
            except json.JSONDecodeError:
                entries = {}  # a damaged cache is only a lost speed-up
            fingerprint = self._prefix.split("|", 1)[0] + "|"
            # entries of other code or rules are never used; those of other inputs or joints are kept
            self._cache = {k: v for k, v in entries.items() if k.startswith(fingerprint)}

    def _key(self, genome: Genome) -> str:
        return self._prefix + genome.compact()

    def cost(self, genome: Genome) -> Cost:
        key = self._key(genome)
        if key not in self._cache:
            c = genome_complexity(genome, self.input_hw, self.joints)
            self._cache[key] = {"params": c.params, "flops": c.flops}
            self._save()
        entry = self._cache[key]
        return Cost(entry["params"], dict(entry["flops"]))

    def flops(self, genome: Genome) -> int:
        """Raw FLOPs in the search's convention."""
        return self.cost(genome).flops[self.convention]

    def admits(self, flops: int) -> bool:
        """The one budget comparison: raw FLOPs (this gate's convention) at most the budget."""
        return flops <= self.budget.raw

    def over(self, flops: int) -> int:
        """How far `flops` is over the budget (<= 0: within it); Optuna's constraint value."""
        return flops - self.budget.raw

    def fits(self, genome: Genome) -> bool:
        return self.admits(self.flops(genome))

    def show(self, raw: int) -> str:
        return f"{format_flops(raw, self.convention)} ({raw:,} raw, {self.convention})"

    def check_space(self, space: SearchSpace) -> Genome:
        """A genome of the space under budget (the first one found among the cheapest candidates), or
        BudgetTooSmall stating the smallest figure the space can reach."""
        cheapest: tuple[int, Genome] | None = None
        for genome in space.cheapest_candidates():
            flops = self.flops(genome)
            if self.admits(flops):
                return genome
            if cheapest is None or flops < cheapest[0]:
                cheapest = (flops, genome)
        assert cheapest is not None  # a SearchSpace always has a valid genome
        raise BudgetTooSmall(
            f"budget {self.budget.text} = {self.budget.raw:,} raw is below the smallest genome of space "
            f"{space.name!r}: {self.show(cheapest[0])} at {self.input_hw[0]}x{self.input_hw[1]}, for "
            f"{cheapest[1].compact()}; use --budget {smallest_budget_text(cheapest[0])} or more, or a "
            "space with smaller genomes"
        )

    def _save(self) -> None:
        if self.cache_file is None:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self._cache))
        tmp.replace(self.cache_file)


def smallest_budget_text(raw: int) -> str:
    """A budget string (binary M, one decimal, rounded up) that admits `raw`."""
    return f"{math.ceil(raw / 2**20 * 10) / 10:.1f}MFLOPs"
