"""Genomes per second of exact complexity counting: the full count vs the memoised sum of parts, in one run.

- `full`: `measure(PoseNet(spec))`, the reference: the whole network built and run once on the meta device;
- `parts cold`: `spec_complexity(spec)` in a process that has counted no part yet: each distinct part (stem,
  transition, the pieces of module layers, fuse, heads) is built and run once, on one CPU thread, then memoised;
- `parts warm`: the same genomes again: every part is memoised, a genome is a sum of cached figures.
Every genome's figures (params, torchstat params, every convention) must be equal in both ways; the bench fails
otherwise. Genomes are a seeded random sample of the default space (search_space/spaces/default.yaml).

python bench/counting.py                        # 40 random genomes, 256x192, 17 joints
python bench/counting.py --genomes 100 --seed 1 --json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

from blocks.network import PoseNet
from search_space.complexity import forget_counts, measure, parse_input_size, spec_complexity
from search_space.space import DEFAULT_SPACE, SearchSpace


def timed(count, specs) -> tuple[float, list]:
    start = time.perf_counter()
    results = [count(spec) for spec in specs]
    return time.perf_counter() - start, results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--genomes", type=int, default=40, help="random genomes of the default space (default 40)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input", default="256x192", help="input size HxW (default 256x192)")
    p.add_argument("--warm-repeats", type=int, default=20, help="passes over the genomes when warm (default 20)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    input_hw = parse_input_size(args.input)
    genomes = list(SearchSpace.from_file(DEFAULT_SPACE).valid_genomes())
    sample = random.Random(args.seed).sample(genomes, min(args.genomes, len(genomes)))
    specs = [g.resolve() for g in sample]

    full_s, full = timed(lambda spec: measure(lambda: PoseNet(spec), input_hw), specs)
    forget_counts()
    cold_s, cold = timed(lambda spec: spec_complexity(spec, input_hw), specs)
    warm_s, _ = timed(lambda spec: spec_complexity(spec, input_hw), specs * args.warm_repeats)
    agree = cold == full
    n = len(specs)
    row = {
        "genomes": n,
        "input": args.input,
        "full_per_s": round(n / full_s, 2),
        "parts_cold_per_s": round(n / cold_s, 2),
        "parts_warm_per_s": round(n * args.warm_repeats / warm_s, 1),
        "full_s": round(full_s, 2),
        "parts_cold_s": round(cold_s, 2),
        "agree": agree,
    }
    if args.json:
        print(json.dumps(row))
    else:
        print(f"{n} random genomes of the default space at {args.input}:")
        print(f"  full count (meta forward of the whole network): {row['full_per_s']:>9} genomes/s ({full_s:.1f} s)")
        print(
            f"  sum of parts, cold (parts new to the process):  {row['parts_cold_per_s']:>9} genomes/s ({cold_s:.1f} s)"
        )
        print(f"  sum of parts, warm (every part memoised):       {row['parts_warm_per_s']:>9} genomes/s")
        print(f"  every figure equal in both ways: {agree}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
