"""Time-to-AP of the default short recipe, and whether the synthetic proxy tells architectures apart.

Trains each architecture with the default recipe (the one `experiments/train.py` and a search trial use) for each
seed, and prints per run: AP after every epoch against the wall-clock time so far (training + evaluation), the
first time AP reached each threshold, and per architecture the mean AP and the spread (max - min) over the seeds.
With two or more architectures it prints the gap between the best and worst mean against the largest spread.

python bench/proxy_accuracy.py                                            # litehrnet-18, seed 0: time-to-AP
python bench/proxy_accuracy.py --arch litehrnet-18:0,1,2 --arch naive-litehrnet-18 --arch litehrnet-30 \
    --results bench/proxy_runs.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

from pose.coco import parse_data
from pose.train import Recipe, load_data, train
from search_space.presets import load_architecture

THRESHOLDS = (0.3, 0.5)


def run(arch: str, seed: int, data, recipe: Recipe) -> dict:
    start = time.perf_counter()
    curve = []

    def on_epoch(record: dict) -> None:
        curve.append((record["epoch"], time.perf_counter() - start, record["ap"], record["loss"]))

    result = train(load_architecture(arch), data, replace(recipe, seed=seed), on_epoch=on_epoch, quiet=True)
    reached = {t: next((s for _, s, ap, _ in curve if ap >= t), None) for t in THRESHOLDS}
    return {
        "arch": arch,
        "seed": seed,
        "ap": result["ap"],
        "wall_seconds": curve[-1][1],
        "train_seconds": result["train_seconds"],
        "seconds_to_ap": {str(t): s for t, s in reached.items()},
        "curve": [{"epoch": e, "seconds": round(s, 1), "ap": round(ap, 4), "loss": loss} for e, s, ap, loss in curve],
    }


def recipe_key(recipe: Recipe) -> str:
    """What decides a run's AP (threads excluded: they change speed, and are recorded separately)."""
    fields = asdict(replace(recipe, threads=0))
    return json.dumps(fields, sort_keys=True, default=str)


def parse_arch(text: str, default_seeds: list[int]) -> tuple[str, list[int]]:
    """`NAME` (the --seeds) or `NAME:0,1,2`."""
    name, sep, seeds = text.partition(":")
    return name, ([int(s) for s in seeds.split(",")] if sep else default_seeds)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", action="append", default=[], help="preset or genome file, optionally NAME:SEEDS "
                   "(e.g. litehrnet-18:0,1,2); repeatable")  # fmt: skip
    p.add_argument("--seeds", default="0", help="comma-separated seeds for --arch without its own (default 0)")
    p.add_argument("--data", default="synthetic")
    p.add_argument("--threads", type=int, default=Recipe().threads, help="torch threads per run")
    p.add_argument("--epochs", type=int, default=Recipe().epochs, help="epochs (default: the default recipe's)")
    p.add_argument("--batch", type=int, default=Recipe().batch, help="batch size (default: the default recipe's)")
    p.add_argument("--lr", type=float, default=Recipe().lr, help="peak learning rate (default: the default recipe's)")
    p.add_argument("--results", metavar="PATH", help="JSONL of runs: runs already in it (same recipe) are reused, "
                   "new ones appended, so several invocations can share the work")  # fmt: skip
    args = p.parse_args(argv)
    default_seeds = [int(s) for s in args.seeds.split(",")]
    plan = [parse_arch(a, default_seeds) for a in (args.arch or ["litehrnet-18"])]
    recipe = replace(Recipe(), threads=args.threads, epochs=args.epochs, batch=args.batch, lr=args.lr)
    key = recipe_key(recipe)
    known = {}
    if args.results and Path(args.results).is_file():
        for line in Path(args.results).read_text().splitlines():
            r = json.loads(line)
            if r.get("recipe_key") == key:
                known[(r["arch"], r["seed"])] = r
    data = None
    print(f"recipe: {recipe}", flush=True)
    runs = []
    for arch, seeds in plan:
        for seed in seeds:
            if (arch, seed) in known:
                runs.append(known[(arch, seed)])
                continue
            if data is None:
                data = load_data(parse_data(args.data))
                print(f"data: {data.description}", flush=True)
            r = {**run(arch, seed, data, recipe), "recipe_key": key, "threads": args.threads}
            runs.append(r)
            if args.results:
                with open(args.results, "a") as f:
                    f.write(json.dumps(r) + "\n")
            to_ap = "  ".join(
                f"AP>={t}: {'never' if s is None else f'{s:.0f}s'}" for t, s in r["seconds_to_ap"].items()
            )
            print(f"\n{arch} seed {seed}: AP {r['ap']:.3f} after {r['wall_seconds']:.0f}s wall  ({to_ap})")
            print("  epoch  wall s  AP     loss")
            for c in r["curve"]:
                print(f"  {c['epoch']:>5}  {c['seconds']:>6.0f}  {c['ap']:.3f}  {c['loss']:.4f}")
    print(f"\n{'architecture':<26} {'seeds':>5} {'mean AP':>8} {'spread':>7}  APs (seed: AP, wall s, threads)")
    means, spreads = {}, {}
    for arch, _ in plan:
        mine = [r for r in runs if r["arch"] == arch]
        aps = [r["ap"] for r in mine]
        means[arch] = statistics.mean(aps)
        if len(aps) > 1:
            spreads[arch] = max(aps) - min(aps)
        listed = ", ".join(f"{r['seed']}: {r['ap']:.3f}, {r['wall_seconds']:.0f}s, {r['threads']}t" for r in mine)
        spread = f"{spreads[arch]:.3f}" if arch in spreads else "-"
        print(f"{arch:<26} {len(aps):>5} {means[arch]:>8.3f} {spread:>7}  {listed}")
    if len(plan) > 1 and spreads:
        widest = max(spreads, key=spreads.get)
        print(f"pairwise gaps of the mean AP against the largest seed spread ({widest}: {spreads[widest]:.3f}):")
        names = [arch for arch, _ in plan]
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                gap = abs(means[a] - means[b])
                verdict = "apart" if gap > spreads[widest] else "NOT apart (gap within the seed spread)"
                print(f"  {a} vs {b}: {gap:.3f}  {verdict}")


if __name__ == "__main__":
    main()
