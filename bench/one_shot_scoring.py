"""Wall time of one-shot scoring per genome, over the ground truth's genomes (issue 28, point 2: at most 10 s mean
with 2 threads, calibration included, on the validation images the signals use).

python bench/one_shot_scoring.py                       # every truth genome, 2 threads against 1, alternating
python bench/one_shot_scoring.py --genomes 6 --calibration 256

A supernet of the default space (its seeded initial weights: the time does not depend on what they hold) scores
each genome of bench/truth.genomes.json with `supernet.score.score`, which times its steps: extraction, BatchNorm
calibration on --calibration training crops, the flip-tested COCOeval of the 298 synthetic validation persons at
128x96 (after BatchNorm folding), and the rest (the complexity count). For each genome the thread counts run one
after the other (their order alternating), so they see the same machine. Prints each step's time and the means.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pose.coco import parse_data  # noqa: E402
from pose.train import Recipe, load_data  # noqa: E402
from search_space.complexity import genome_complexity  # noqa: E402
from search_space.genome import Genome  # noqa: E402
from search_space.space import DEFAULT_SPACE  # noqa: E402
from supernet.calibrate import DEFAULT_CALIBRATION  # noqa: E402
from supernet.model import SuperNet  # noqa: E402
from supernet.score import FLOPS_INPUT_HW, score, scoring_set  # noqa: E402
from supernet.training import SpaceSource  # noqa: E402

TRUTH = Path(__file__).resolve().parent / "truth.genomes.json"
PHASES = ("extract", "calibrate", "evaluate", "other")


def timed_score(supernet: SuperNet, genome: Genome, data, prepared, recipe: Recipe, threads: int) -> dict[str, float]:
    """The wall seconds of each step of `supernet.score.score` with `threads` threads."""
    torch.set_num_threads(threads)
    return score(supernet, genome, data, recipe, len(prepared.images), prepared=prepared)["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--genomes", type=int, default=None, help="the first N truth genomes (default all)")
    parser.add_argument("--calibration", type=int, default=DEFAULT_CALIBRATION)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="thread counts to compare (2 1)")
    args = parser.parse_args()
    genomes = [Genome.from_canonical(m["genome"]) for m in json.loads(TRUTH.read_text())["genomes"]]
    genomes = genomes[: args.genomes] if args.genomes else genomes
    data = load_data(parse_data("synthetic"))
    recipe = Recipe()
    supernet = SuperNet(SpaceSource.from_file(DEFAULT_SPACE).space)
    prepared = scoring_set(data, recipe, args.calibration)
    print(f"{len(genomes)} truth genomes, calibration {len(prepared.images)}, {len(prepared.val_set)} val persons at "
          f"{recipe.input_hw[0]}x{recipe.input_hw[1]}, flip test; seconds per genome")  # fmt: skip
    print(
        f"{'MFLOPs':>6} {'genome':<44} "
        + " ".join(f"{t}-thread total (extract/calib/eval/other)" for t in args.threads)
    )
    results: dict[int, list[dict[str, float]]] = {t: [] for t in args.threads}
    for index, genome in enumerate(genomes):
        order = args.threads if index % 2 == 0 else args.threads[::-1]
        for threads in order:
            results[threads].append(timed_score(supernet, genome, data, prepared, recipe, threads))
        flops = genome_complexity(genome, FLOPS_INPUT_HW, 17).flops["torchstat"] / 1e6
        cells = [
            f"{r['total']:6.2f} ({'/'.join(f'{r[p]:.2f}' for p in PHASES)})"
            for r in (results[t][-1] for t in args.threads)
        ]
        print(f"{flops:6.0f} {genome.compact()[:44]:<44} " + "   ".join(cells), flush=True)
    for threads in args.threads:
        runs = results[threads]
        means = {p: sum(r[p] for r in runs) / len(runs) for p in (*PHASES, "total")}
        print(f"{threads} thread(s): mean {means['total']:.2f} s per genome (max {max(r['total'] for r in runs):.2f}); "
              + ", ".join(f"{p} {means[p]:.2f}" for p in PHASES))  # fmt: skip


if __name__ == "__main__":
    main()
