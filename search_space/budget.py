"""Budgets: FLOPs such as `0.5GFLOPs`, `500MFLOPs`, `205.2M`, `0.5G` (binary prefixes, as the papers print), or a
latency such as `40ms`, `0.04s`, `800us` (a budget with a time unit is a latency budget)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

PREFIXES: dict[str, int] = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT])(?:FLOPS?|MACS?)?\s*$", re.IGNORECASE)
TIME_UNITS: dict[str, float] = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0}  # -> milliseconds
_TIME_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|µs|ms|s)\s*$", re.IGNORECASE)


class BudgetError(ValueError):
    pass


@dataclass(frozen=True)
class Budget:
    KIND: ClassVar[str] = "flops"
    text: str
    value: float
    prefix: str
    raw: int  # the budget as a raw count in the search's convention

    def describe(self, convention: str) -> str:
        return (
            f"budget {self.text} = {self.value} x 2^{PREFIXES[self.prefix].bit_length() - 1} "
            f"= {self.raw:,} raw ({convention} convention)"
        )


def parse_budget(text: str) -> Budget:
    """Parse a budget; the prefix is binary (M = 2^20, G = 2^30), the unit word FLOPs/MACs optional."""
    match = _PATTERN.match(str(text))
    if not match:
        raise BudgetError(
            f"cannot read budget {text!r}: write a number, a prefix K/M/G/T and optionally FLOPs, "
            "e.g. 0.5GFLOPs, 500MFLOPs, 205.2M or 0.5G (binary prefixes: M = 2^20, G = 2^30)"
        )
    value, prefix = float(match.group(1)), match.group(2).upper()
    if value <= 0:
        raise BudgetError(f"budget {text!r} must be positive: e.g. 0.5GFLOPs, 500MFLOPs or 40ms")
    return Budget(text.strip(), value, prefix, round(value * PREFIXES[prefix]))


@dataclass(frozen=True)
class LatencyBudget:
    """A latency budget in milliseconds, gated by the predicted latency of the search's latency setting."""

    KIND: ClassVar[str] = "latency"
    text: str
    ms: float

    def describe(self, setting: str) -> str:
        return f"latency budget {self.text} = {self.ms:g} ms ({setting}), predicted by this machine's latency table"


def parse_cost_budget(text: str) -> Budget | LatencyBudget:
    """A FLOPs budget, or with a time unit (ms, s, us) a latency budget."""
    match = _TIME_PATTERN.match(str(text))
    if match is None:
        try:
            return parse_budget(text)
        except BudgetError as exc:
            if "cannot read" in str(exc):
                raise BudgetError(f"{exc}; or a latency with a time unit, e.g. 40ms") from None
            raise
    ms = float(match.group(1)) * TIME_UNITS[match.group(2).lower()]
    if ms <= 0:
        raise BudgetError(f"budget {text!r} must be positive: e.g. 0.5GFLOPs, 500MFLOPs or 40ms")
    return LatencyBudget(text.strip(), ms)
