"""Parameters and FLOPs of a preset or genome, in a named convention.

hrnas complexity --arch litehrnet-18 --json
hrnas complexity --arch ditehrnet-18 --gene kernels=[1,1,1,1] --input 384x288
"""

from __future__ import annotations

import argparse
import sys

from hrnas.errors import Parser, run_command
from search_space.complexity import CONVENTIONS, format_flops, format_params, genome_complexity, parse_input_size
from search_space.presets import add_architecture_arguments, architecture_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hrnas complexity", description=__doc__)
    add_architecture_arguments(parser)
    parser.add_argument("--input", default="256x192", help="input size HxW (default 256x192)")
    parser.add_argument("--joints", type=int, default=17, help="keypoints / heatmaps (default 17)")
    parser.add_argument("--convention", default="torchstat", choices=list(CONVENTIONS))
    parser.add_argument(
        "--truncate",
        action="store_true",
        help="print the figure truncated (Dite-HRNet's habit) instead of rounded (Lite-HRNet's)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: complexity(args), args.json)


def complexity(args: argparse.Namespace) -> dict:
    """Count, print the table (without --json) and return the record."""
    genome = architecture_from_args(args)
    input_hw = parse_input_size(args.input)
    if args.joints < 1:
        raise ValueError(f"--joints {args.joints}: need at least one joint")
    result = genome_complexity(genome, input_hw, args.joints)
    flops = result.flops[args.convention]
    printed = format_flops(flops, args.convention, truncate=args.truncate)
    record = {
        "arch": args.arch,
        "genome": genome.compact(),
        "params": result.params,
        "params_printed": format_params(result.params, truncate=args.truncate),
        "flops": flops,
        "flops_printed": printed,
        "convention": args.convention,
        "convention_rule": CONVENTIONS[args.convention].description,
        "input": f"{input_hw[0]}x{input_hw[1]}",
        "joints": args.joints,
        "all_conventions": result.flops,
        "torchstat_params": result.torchstat_params,
    }
    if not args.json:
        print(f"{args.arch}  ({genome.compact()})")
        print(f"  input {record['input']}, {args.joints} joints")
        print(f"  params   {result.params:>15,}  ({record['params_printed']})")
        for name, value in result.flops.items():
            mark = "*" if name == args.convention else " "
            print(f" {mark}{name:<10} {value:>15,}  ({format_flops(value, name, truncate=args.truncate)})")
        print(f"  * {CONVENTIONS[args.convention].description}")
    return record


if __name__ == "__main__":
    sys.exit(main())
