"""The budget gate: a genome's exact complexity at the canonical input (and, with a latency table, its predicted
latency), computed before any training; the budget limits FLOPs or, for a budget with a time unit, that latency.

Complexities are cached on disk (one JSON file per cache folder), so a resumed search, a second search over the
same space and the smallest-genome check cost nothing the second time. An entry is keyed by everything its figures
depend on: the hash of the counting code and rules (`counting_fingerprint`), the input size, the joints and the
genome; so editing a block, a gene's resolution or a rule makes the old entries unused (and dropped on the next
save), never stale.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from search_space.budget import Budget, LatencyBudget
from search_space.complexity import CONVENTIONS, counting_fingerprint, format_flops, genome_complexity
from search_space.genome import Genome
from search_space.latency_table import LatencyTable, predict_latency
from search_space.space import SearchSpace

LATENCY_SCAN = 20_000  # genomes a latency budget's space check predicts at most (about 1 ms each)


class BudgetTooSmall(ValueError):
    """No genome of the space fits the budget; the message states the smallest achievable figure."""


@dataclass(frozen=True)
class Cost:
    """What the gate knows of one genome (every convention, so a run can log them all)."""

    params: int
    flops: dict[str, int]
    latency_ms: float | None = None  # predicted by the search's latency table (None: latency plays no part)

    def metrics(self) -> dict[str, float]:
        latency = {} if self.latency_ms is None else {"predicted_latency_ms": self.latency_ms}
        flops = {f"flops_{name.replace('-', '_')}": v for name, v in self.flops.items()}
        return {"params": self.params, **flops, **latency}


class BudgetGate:
    def __init__(
        self,
        budget: Budget | LatencyBudget,
        convention: str = "torchstat",
        input_hw: tuple[int, int] = (256, 192),
        joints: int = 17,
        cache_file: Path | None = None,
        latency: LatencyTable | None = None,
    ) -> None:
        """`latency`: the table that predicts each genome's latency (needed by a latency budget)."""
        if budget.KIND == "latency" and latency is None:
            raise ValueError("a latency budget needs a latency table to predict with")
        self.latency = latency
        self._predicted: dict[str, float] = {}
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
        return self._prefix + genome.canonical_line()

    def _counted(self, genome: Genome) -> dict:
        key = self._key(genome)
        if key not in self._cache:
            c = genome_complexity(genome, self.input_hw, self.joints)
            self._cache[key] = {"params": c.params, "flops": c.flops}
            self._save()
        return self._cache[key]

    def cost(self, genome: Genome) -> Cost:
        entry = self._counted(genome)
        return Cost(entry["params"], dict(entry["flops"]), self.predicted_ms(genome))

    def predicted_ms(self, genome: Genome) -> float | None:
        if self.latency is None:
            return None
        compact = genome.canonical_line()
        if compact not in self._predicted:
            self._predicted[compact] = predict_latency(self.latency, genome)
        return self._predicted[compact]

    def flops(self, genome: Genome) -> int:
        """Raw FLOPs in the search's convention (no latency prediction)."""
        return self._counted(genome)["flops"][self.convention]

    @property
    def limit(self) -> float:
        """The budget in the units it limits: raw FLOPs (this gate's convention) or milliseconds."""
        return self.budget.ms if self.budget.KIND == "latency" else self.budget.raw

    def limited(self, cost: Cost) -> float:
        """What the budget limits of a cost: its FLOPs, or its predicted latency."""
        return cost.latency_ms if self.budget.KIND == "latency" else cost.flops[self.convention]

    def admits(self, value: float) -> bool:
        """The one budget comparison: FLOPs (or predicted ms) at most the budget."""
        return value <= self.limit

    def over(self, value: float) -> float:
        """How far `value` is over the budget (<= 0: within it); Optuna's constraint value."""
        return value - self.limit

    def fits(self, genome: Genome) -> bool:
        return self.admits(self.limited(self.cost(genome)))

    def show(self, value: float) -> str:
        if self.budget.KIND == "latency":
            return f"{value:.2f} ms predicted"
        return f"{format_flops(int(value), self.convention)} ({int(value):,} raw, {self.convention})"

    def check_space(self, space: SearchSpace) -> Genome:
        """A genome of the space under budget (the first one found among the candidates), or BudgetTooSmall
        stating the smallest figure found.

        FLOPs are monotone in width, depth and ratios, so the cheapest genome by FLOPs is among the space's
        cheapest candidates. Predicted latency is measured, not monotone: a wider genome of small kernels can
        run as fast as a narrower one. A latency budget therefore goes on to the rest of the space (up to
        LATENCY_SCAN genomes) before it calls the budget too small."""
        candidates = space.cheapest_candidates()
        if self.budget.KIND == "latency":
            candidates = itertools.islice(_unique(itertools.chain(candidates, space.valid_genomes())), LATENCY_SCAN)
        cheapest: tuple[float, Genome] | None = None
        checked = 0
        for genome in candidates:
            checked += 1
            value = self.predicted_ms(genome) if self.budget.KIND == "latency" else self.flops(genome)
            if self.admits(value):
                return genome
            if cheapest is None or value < cheapest[0]:
                cheapest = (value, genome)
        assert cheapest is not None  # a SearchSpace always has a valid genome
        if self.budget.KIND == "latency":
            smallest = f"{math.ceil(cheapest[0] * 10) / 10:.1f}ms"
            limit = f"{self.budget.ms:g} ms"
            among = f" (the smallest of {checked:,} genomes predicted)"
        else:
            smallest, limit, among = smallest_budget_text(int(cheapest[0])), f"{self.budget.raw:,} raw", ""
        raise BudgetTooSmall(
            f"budget {self.budget.text} = {limit} is below the smallest genome of space "
            f"{space.name!r}{among}: {self.show(cheapest[0])} at {self.input_hw[0]}x{self.input_hw[1]}, for "
            f"{cheapest[1].compact()}; use --budget {smallest} or more, or a space with smaller genomes"
        )

    def _save(self) -> None:
        if self.cache_file is None:
            return
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self._cache))
        tmp.replace(self.cache_file)


def _unique(genomes: Iterator[Genome]) -> Iterator[Genome]:
    seen: set[str] = set()
    for genome in genomes:
        if genome.canonical_line() not in seen:
            seen.add(genome.canonical_line())
            yield genome


def smallest_budget_text(raw: int) -> str:
    """A budget string (binary M, one decimal, rounded up) that admits `raw`."""
    return f"{math.ceil(raw / 2**20 * 10) / 10:.1f}MFLOPs"
