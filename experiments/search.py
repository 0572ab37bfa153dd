"""Budgeted architecture search (Ray Tune + Optuna + MLflow) -- arrives with the search issue.

Today this checks the budget and shows which presets fit it, with their exact complexity.
"""

from __future__ import annotations

import argparse
import sys

from search_space.budget import BudgetError, parse_budget
from search_space.complexity import CONVENTIONS, format_flops, genome_complexity
from search_space.presets import PRESETS, load_preset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--budget", required=True, help="e.g. 0.5GFLOPs, 500MFLOPs, 205.2M (binary prefixes)")
    parser.add_argument("--convention", default="torchstat", choices=list(CONVENTIONS))
    args, _ = parser.parse_known_args(argv)
    try:
        budget = parse_budget(args.budget)
    except BudgetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(budget.describe(args.convention))
    for name in PRESETS:
        flops = genome_complexity(load_preset(name)).flops[args.convention]
        verdict = "fits" if flops <= budget.raw else "over budget"
        print(f"  {name:<26} {format_flops(flops, args.convention):>8}  {verdict}")
    print("The search itself (Ray Tune + Optuna + MLflow) is coming; see the issue tracker.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
