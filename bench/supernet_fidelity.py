"""The supernet's ranking fidelity: the inherited AP of the six Lite/Dite presets against their published COCO AP.

python experiments/supernet.py train --seed 0 --out runs/sn-s0     # the default space and settings (twice: a
python experiments/supernet.py train --seed 1 --out runs/sn-s1     # second seed gives the spread)
python bench/supernet_fidelity.py runs/sn-s0 runs/sn-s1 --plot bench/supernet_fidelity.png

Reads each training's result.json (the last epoch's inherited AP of every preset, scored as `supernet eval` does)
and prints a Markdown table with Kendall's tau per seed and of the mean, against the targets (tau >= 0.73, every
preset >= 0.4). FLOPs alone is shown as the baseline any signal must beat.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from analysis.fidelity import PUBLISHED_COCO_AP, tau_against_published
from search_space.complexity import genome_complexity
from search_space.presets import load_preset

TARGETS = {"tau": 0.73, "ap": 0.4}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="--out folders of `supernet train` (one per seed)")
    p.add_argument("--plot", default=None, help="also save inherited against published AP as this PNG")
    args = p.parse_args(argv)
    results = [json.loads((Path(run) / "result.json").read_text()) for run in args.runs]
    names = list(PUBLISHED_COCO_AP)
    scores = [{n: r[f"ap.{n}"] for n in names} for r in results]
    mean = {n: statistics.mean(s[n] for s in scores) for n in names}
    flops = {n: genome_complexity(load_preset(n)).flops["torchstat"] for n in names}
    seeds = " | ".join(f"seed {r.get('seed', i)}" for i, r in enumerate(results))
    print(f"| preset | FLOPs (M) | published AP | {seeds} | mean | spread |")
    print("|---|---:|---:|" + "---:|" * (len(results) + 2))
    for n in names:
        values = " | ".join(f"{s[n]:.3f}" for s in scores)
        spread = max(s[n] for s in scores) - min(s[n] for s in scores)
        row = f"| {n} | {flops[n] / 2**20:.1f} | {PUBLISHED_COCO_AP[n]:.3f} | {values}"
        print(f"{row} | {mean[n]:.3f} | {spread:.3f} |")
    taus = [tau_against_published(s) for s in scores]
    tau_mean = tau_against_published(mean)
    print(f"\nKendall tau against the published AP: {', '.join(f'{t:.2f}' for t in taus)} per seed, {tau_mean:.2f} "
          f"for the mean; FLOPs alone {tau_against_published(flops):.2f}")  # fmt: skip
    lowest = min(min(s.values()) for s in scores)
    verdict = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
    print(f"targets: tau >= {TARGETS['tau']} for every seed: {verdict(min(taus) >= TARGETS['tau'])}; every preset "
          f">= {TARGETS['ap']} (lowest {lowest:.3f}): {verdict(lowest >= TARGETS['ap'])}")  # fmt: skip
    minutes = ", ".join(f"{r['train_seconds'] / 60:.1f}" for r in results)
    print(f"training: {minutes} min (training only, {results[0]['epochs']} epochs)")
    if args.plot:
        plot(scores, Path(args.plot))


def plot(scores: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(5.5, 4), dpi=120)
    for k, score in enumerate(scores):
        xs = [PUBLISHED_COCO_AP[n] for n in score]
        axis.scatter(xs, list(score.values()), label=f"supernet seed run {k}", marker="os^"[k % 3])
    for n in PUBLISHED_COCO_AP:
        axis.annotate(n.replace("litehrnet", "lite").replace("ditehrnet", "dite"), (PUBLISHED_COCO_AP[n],
                      statistics.mean(s[n] for s in scores)), fontsize=6)  # fmt: skip
    axis.set_xlabel("published COCO AP")
    axis.set_ylabel("inherited AP (synthetic val, supernet weights)")
    axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    main()
