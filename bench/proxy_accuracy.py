"""Time-to-AP of the default short recipe, and whether the synthetic proxy tells architectures apart.

Trains each architecture with the default recipe (the one `experiments/train.py` and a search trial use) for each
seed, and prints per run: AP after every epoch against the wall-clock time so far (training + evaluation), the
first time AP reached each threshold, and per architecture the mean AP and the spread (max - min) over the seeds.
With two or more architectures it prints the gap between the best and worst mean against the largest spread.

python bench/proxy_accuracy.py                                            # litehrnet-18, seed 0: time-to-AP
python bench/proxy_accuracy.py --arch naive-litehrnet-18 --arch litehrnet-30 --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace

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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", action="append", default=[], help="preset or genome file (repeatable)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--data", default="synthetic")
    p.add_argument("--threads", type=int, default=Recipe().threads, help="torch threads per run")
    p.add_argument("--json-out", metavar="PATH", help="also append one JSON object per run to this file")
    args = p.parse_args(argv)
    archs = args.arch or ["litehrnet-18"]
    seeds = [int(s) for s in args.seeds.split(",")]
    data = load_data(parse_data(args.data))
    recipe = replace(Recipe(), threads=args.threads)
    print(f"recipe: {recipe}\ndata: {data.description}", flush=True)
    runs = []
    for arch in archs:
        for seed in seeds:
            r = run(arch, seed, data, recipe)
            runs.append(r)
            to_ap = "  ".join(
                f"AP>={t}: {'never' if s is None else f'{s:.0f}s'}" for t, s in r["seconds_to_ap"].items()
            )
            print(f"\n{arch} seed {seed}: AP {r['ap']:.3f} after {r['wall_seconds']:.0f}s wall  ({to_ap})")
            print("  epoch  wall s  AP     loss")
            for c in r["curve"]:
                print(f"  {c['epoch']:>5}  {c['seconds']:>6.0f}  {c['ap']:.3f}  {c['loss']:.4f}")
            if args.json_out:
                with open(args.json_out, "a") as f:
                    f.write(json.dumps(r) + "\n")
    print(f"\n{'architecture':<22} {'seeds':>5} {'mean AP':>8} {'spread':>7}  APs")
    means, spreads = {}, {}
    for arch in archs:
        aps = [r["ap"] for r in runs if r["arch"] == arch]
        means[arch], spreads[arch] = statistics.mean(aps), max(aps) - min(aps)
        listed = ", ".join(f"{a:.3f}" for a in aps)
        print(f"{arch:<22} {len(aps):>5} {means[arch]:>8.3f} {spreads[arch]:>7.3f}  {listed}")
    if len(archs) > 1:
        gap = max(means.values()) - min(means.values())
        verdict = "tells them apart" if gap > max(spreads.values()) else "does NOT tell them apart"
        print(f"gap between means {gap:.3f} vs largest seed spread {max(spreads.values()):.3f}: the proxy {verdict}")


if __name__ == "__main__":
    main()
