"""What a search space holds: distinct genomes, how many fit a budget, the smallest and largest FLOPs, its presets.

hrnas space                                         # the default space
hrnas space --budget 0.5GFLOPs --json
hrnas space --space my-space.yaml --budget 300M --convention torchstat --input 256x192

Every genome is counted exactly (a sum of memoised parts: each distinct piece of a network is counted once).
"""

from __future__ import annotations

import sys
import time

from hrnas.errors import Parser, run_command
from search_space.budget import parse_budget
from search_space.complexity import CONVENTIONS, format_flops, parse_input_size
from search_space.space import DEFAULT_SPACE, SearchSpace
from search_space.space_summary import summarize


def build_parser() -> Parser:
    p = Parser(prog="hrnas space", description=__doc__)
    p.add_argument("--space", default=str(DEFAULT_SPACE), help="search space YAML (default: the default space)")
    p.add_argument("--budget", default=None, help="FLOPs budget, e.g. 0.5GFLOPs or 300M (binary prefixes)")
    p.add_argument("--convention", default="torchstat", choices=list(CONVENTIONS), help="FLOPs convention")
    p.add_argument("--input", default="256x192", help="input size HxW (default 256x192)")
    p.add_argument("--joints", type=int, default=17, help="keypoints (default 17)")
    p.add_argument("--json", action="store_true", help="last line: one JSON object")
    return p


class _Progress:
    """`counted N / TOTAL genomes (R/s)` on stderr: rewritten in place twice a second on a terminal, one line every
    5 s otherwise, and a last line at the end."""

    def __init__(self) -> None:
        self.terminal = sys.stderr.isatty()
        self.every = 0.5 if self.terminal else 5.0
        self.shown = time.monotonic()

    def __call__(self, counted: int, total: int, seconds: float) -> None:
        now = time.monotonic()
        if counted < total and now - self.shown < self.every:
            return
        self.shown = now
        rate = counted / seconds if seconds > 0 else 0.0
        end = "\r" if self.terminal and counted < total else "\n"
        print(f"counted {counted:,} / {total:,} genomes ({rate:,.0f}/s)", end=end, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def job() -> dict:
        budget = None if args.budget is None else parse_budget(args.budget)
        input_hw = parse_input_size(args.input)
        if args.joints < 1:
            raise ValueError(f"--joints {args.joints}: need at least one joint")
        space = SearchSpace.from_file(args.space)
        summary = summarize(space, args.convention, budget, input_hw, args.joints, _Progress())
        if not args.json:
            show = lambda raw: f"{raw:,} ({format_flops(raw, args.convention)})"  # noqa: E731
            print(f"space {summary.space}: {summary.genomes:,} distinct genomes ({args.convention}, {summary.input}, "
                  f"{summary.joints} joints; counted in {summary.seconds:.1f} s)")  # fmt: skip
            if budget is not None:
                share = summary.within_budget / summary.genomes
                print(f"  within budget {budget.text}: {summary.within_budget:,} ({share:.0%})")
            print(f"  smallest {show(summary.smallest_flops)}  {summary.smallest_genome}")
            print(f"  largest  {show(summary.largest_flops)}  {summary.largest_genome}")
            print(f"  presets  {', '.join(summary.presets) or '(none)'}")
        return summary.to_dict()

    return run_command(job, args.json)


if __name__ == "__main__":
    sys.exit(main())
