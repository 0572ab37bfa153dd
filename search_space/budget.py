"""FLOPs budgets such as `0.5GFLOPs`, `500MFLOPs`, `205.2M`, `0.5G`, with binary prefixes as the papers print."""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIXES: dict[str, int] = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT])(?:FLOPS?|MACS?)?\s*$", re.IGNORECASE)


class BudgetError(ValueError):
    pass


@dataclass(frozen=True)
class Budget:
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
        raise BudgetError(f"budget {text!r} must be positive")
    return Budget(text.strip(), value, prefix, round(value * PREFIXES[prefix]))
