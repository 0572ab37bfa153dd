"""The supernet's speed: a supernet step against the standalone step of the same genome at the same batch, and the
time to score a genome (BatchNorm calibration + evaluation as train.py scores), for presets and sampled genomes.

python bench/supernet.py                       # default space: litehrnet-18, ditehrnet-18 and 3 sampled genomes
python bench/supernet.py --arch litehrnet-30 --random 0 --iters 5 --calibration 256
python bench/supernet.py --random 0 --arch litehrnet-18 --sandwich-steps 6   # mostly the prefetch comparison

Targets (issue 12): a supernet step at most 1.25x the standalone step; a score at most 10 s (1 thread, 128x96).

One thread (the issue's setting), CPU fast paths, batch 32 at 128x96 for the steps (forward + backward; the
standalone and supernet steps alternate, so both see the same machine load; medians), the synthetic default's
validation split for the score.

Sandwich steps: a training step runs two genomes it ran before (here the first two --arch) and two random ones new
to it, whose skeletons (hundreds of modules built in Python) are built either when they run or, prefetched, in a
background thread during the step before (`SuperNet.prefetch`, what supernet training does). Two blocks of
--sandwich-steps steps, each run both ways on the same genomes from an empty cache; medians per step.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

# Python puts this script's folder first on the path, and this file's name is the `supernet` package's: look past it.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402

from blocks.network import PoseNet, keep_freed_memory, prepare_for_training, prepare_input  # noqa: E402
from pose.device import resolve_device  # noqa: E402
from pose.train import Recipe, load_data  # noqa: E402
from search_space.presets import PRESETS, load_preset  # noqa: E402
from search_space.space import DEFAULT_SPACE, SearchSpace  # noqa: E402
from supernet.calibrate import DEFAULT_CALIBRATION  # noqa: E402
from supernet.model import SuperNet  # noqa: E402
from supernet.score import score, scoring_set  # noqa: E402
from supernet.sharing import shared_shapes  # noqa: E402

TARGETS = {"ratio": 1.25, "score_s": 10.0}


def timed(run) -> float:
    """Seconds of `run()`, the GPU's queued work included."""
    start = time.perf_counter()
    run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default=str(DEFAULT_SPACE))
    parser.add_argument("--arch", action="append", help="preset(s) of the space (default litehrnet-18, ditehrnet-18)")
    parser.add_argument("--iters", type=int, default=3, help="timed steps per configuration (after one warm-up)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--calibration", type=int, default=DEFAULT_CALIBRATION)
    parser.add_argument("--random", type=int, default=3, help="genomes sampled from the space (seeded, default 3)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu (default, the CPU fast paths), cuda, cuda:N or auto")
    parser.add_argument("--sandwich-steps", type=int, default=4, help="steps per block of the prefetch comparison")
    args = parser.parse_args()
    device = resolve_device(args.device, "off")
    device.activate()
    torch.set_num_threads(1)
    if device.fast:
        keep_freed_memory()
    space = SearchSpace.from_file(args.space)
    start = time.perf_counter()
    genomes = list(space.valid_genomes())
    listed = time.perf_counter() - start
    union = shared_shapes(genomes)
    print(f"{len(genomes)} genomes listed in {listed:.1f}s; union of {len(union.shapes)} parameter names in "
          f"{time.perf_counter() - start - listed:.1f}s")  # fmt: skip
    start = time.perf_counter()
    supernet = prepare_for_training(SuperNet(space, shapes=union).to(device.device), fast=device.fast).train()
    print(f"supernet of {sum(p.numel() for p in supernet.parameters()):,} parameters initialised in "
          f"{time.perf_counter() - start:.1f}s")  # fmt: skip
    data, recipe = load_data(None), Recipe()
    start = time.perf_counter()
    prepared = scoring_set(data, recipe, args.calibration, device=device)
    for i in range(len(prepared.val_set)):  # the validation crops, cached once for every genome
        prepared.val_set[i]
    print(f"calibration images and validation crops prepared in {time.perf_counter() - start:.1f}s")
    x = prepare_input(torch.randn(args.batch, 3, *recipe.input_hw, device=device.device), device.fast)
    named = {arch: load_preset(arch) for arch in args.arch or ["litehrnet-18", "ditehrnet-18"]}
    named.update({f"sampled-{i}": g for i, g in enumerate(random.Random(args.seed).sample(genomes, args.random))})
    worst = {"ratio": 0.0, "score_s": 0.0}
    for arch, genome in named.items():
        net = prepare_for_training(PoseNet(genome.resolve()).to(device.device), fast=device.fast).train()

        def standalone(net=net) -> None:
            net.zero_grad(set_to_none=True)
            net(x).square().mean().backward()

        def shared(genome=genome) -> None:
            supernet.zero_grad(set_to_none=True)
            supernet(genome, x).square().mean().backward()

        times: dict[str, list[float]] = {"standalone": [], "supernet": []}
        for i in range(args.iters + 1):
            for name, step in (("standalone", standalone), ("supernet", shared)):
                seconds = timed(step)
                if i:
                    times[name].append(seconds)
        alone, inside = (statistics.median(times[k]) for k in ("standalone", "supernet"))
        scored = timed(
            lambda genome=genome: score(supernet, genome, data, recipe, args.calibration, device, prepared=prepared)
        )
        worst = {"ratio": max(worst["ratio"], inside / alone), "score_s": max(worst["score_s"], scored)}
        print(f"{arch}: step standalone {alone:.3f}s, supernet {inside:.3f}s ({inside / alone:.2f}x); score "
              f"{scored:.1f}s ({args.calibration} calibration images, {len(data.val)} validation people)"
              f"{'' if arch in PRESETS else f'  [{genome.compact()}]'}", flush=True)  # fmt: skip
    if args.sandwich_steps:
        compare_prefetch(supernet, genomes, list(named.values())[:2], x, args.sandwich_steps, args.seed)
    verdict = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
    print(f"worst step ratio {worst['ratio']:.2f}x (target <= {TARGETS['ratio']}x: "
          f"{verdict(worst['ratio'] <= TARGETS['ratio'])}); worst score {worst['score_s']:.1f}s (target <= "
          f"{TARGETS['score_s']:.0f}s: {verdict(worst['score_s'] <= TARGETS['score_s'])})")  # fmt: skip


def compare_prefetch(supernet: SuperNet, genomes: list, known: list, x: torch.Tensor, steps: int, seed: int) -> None:
    """Median sandwich-step seconds with the random genomes built when they run against prefetched (module doc)."""
    for genome in known:
        supernet.subnet(genome)
    fresh = iter(random.Random(seed + 1).sample(genomes, 2 * 2 * steps))
    times: dict[str, list[float]] = {"built": [], "prefetched": []}
    for _ in range(2):  # two blocks of new genomes, each run both ways from an empty cache
        block = [[next(fresh), next(fresh)] for _ in range(steps)]
        for way in ("built", "prefetched"):
            supernet.forget([g for step in block for g in step])
            if way == "prefetched":  # the first step's genomes ready, as every step's are in a running training
                supernet.prefetch(block[0])
                for genome in block[0]:
                    supernet.subnet(genome)
            for i, step in enumerate(block):
                coming = block[i + 1] if way == "prefetched" and i + 1 < steps else []

                def run(step=step, coming=coming) -> None:
                    supernet.prefetch(coming)
                    supernet.zero_grad(set_to_none=True)
                    for genome in [*known, *step]:
                        supernet(genome, x).square().mean().backward()

                times[way].append(timed(run))
    built, prefetched = (statistics.median(times[k]) for k in ("built", "prefetched"))
    print(f"sandwich step ({len(known)} known + 2 new genomes): built when run {built:.3f}s, prefetched "
          f"{prefetched:.3f}s ({built / prefetched:.2f}x)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
