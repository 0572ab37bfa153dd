"""Benchmarks of the search's signals: `hrnas bench truth` trains a ground truth of a space.

hrnas bench truth --out bench/truth.jsonl                  # the default space, 0.5G, the truth recipe, resumable
hrnas bench truth --plan                                   # the sample and the trainings, nothing trained
hrnas bench truth --data /data/coco --input 256x192 --epochs 60 --device cuda --threads 8 --out my-truth.jsonl

The truth: `--genomes` genomes of the space within the budget (stratified over FLOPs quantiles and over every gene's
values, canonical: inactive genes dropped), plus the space's presets within the budget, each trained with one fixed
recipe (`--epochs`, `--input`: the `train` recipe otherwise). `--seeded` of them (10 by default) train with
`--seeds` seeds: a genome's truth is its mean over seeds, and the seeds set the noise ceiling. `--convergence` of
those train at twice the epochs too: is the recipe long enough? Each training is a Ray trial; its lines (one per
epoch) are appended to `--out` when it ends. Run the same command again to go on: finished trainings are skipped,
one in flight resumes from its last epoch's checkpoint in `--folder`.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from fidelity.sample import Member, coverage, population, stratified
from fidelity.truth import Plan, TruthError, TruthRecipe, check_recipe, finished, read_lines, write_sample
from hrnas.commands.trial_options import add_address_argument
from hrnas.errors import Parser, run_command
from pose.coco import absolute_data, parse_data
from pose.train import Recipe
from search_space.budget import parse_budget
from search_space.complexity import format_flops, genome_complexity, parse_input_size
from search_space.presets import PRESETS, load_preset
from search_space.space import DEFAULT_SPACE, SearchSpace, SpaceError

TRUTH_EPOCHS = 2 * Recipe().epochs  # twice the `train` recipe's training images: longer than every signal it judges
CONVENTION = "torchstat"  # the search's default convention, at the canonical input 256x192


def build_parser() -> Parser:
    p = Parser(prog="hrnas bench truth", description=__doc__)
    p.add_argument("--space", default=str(DEFAULT_SPACE), help="search space YAML (default: the default space)")
    p.add_argument("--budget", default="0.5GFLOPs", help="genomes within this FLOPs budget (torchstat, 256x192)")
    p.add_argument("--genomes", type=int, default=24, help="sampled genomes besides the presets (default 24)")
    p.add_argument("--strata", type=int, default=6, help="FLOPs quantile bins the sample is drawn over (default 6)")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the sample (default 0)")
    p.add_argument("--seeds", type=int, default=2, help="training seeds of the seeded genomes (default 2)")
    p.add_argument("--seeded", default="10", help="genomes trained with every seed: a number (default 10) or all")
    p.add_argument("--convergence", type=int, default=6, help="seeded genomes also trained at 2x epochs (default 6)")
    p.add_argument("--epochs", type=int, default=TRUTH_EPOCHS, help=f"truth recipe epochs (default {TRUTH_EPOCHS})")
    p.add_argument("--input", default="128x96", help="training input HxW (default 128x96, the train recipe's)")
    p.add_argument("--max-steps", type=int, default=None, help="optimizer steps per epoch (tiny checks only)")
    p.add_argument("--data", default="synthetic", help="synthetic, a COCO root, or ANN.json:IMAGE_DIR")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (resolved in each trial)")
    p.add_argument("--threads", type=int, default=1, help="CPUs of each training (trials run side by side)")
    p.add_argument("--out", default="runs/truth/truth.jsonl", help="the truth JSONL file (appended to)")
    p.add_argument("--folder", default="runs/truth", help="trainings in flight and kept checkpoints")
    add_address_argument(p, "the trainings")
    p.add_argument("--plan", action="store_true", help="print the sample and the trainings left, train nothing")
    p.add_argument("--verbose", action="store_true", help="Ray's and Tune's own output too")
    return p


def truth_recipe(args) -> TruthRecipe:
    if args.epochs < 1 or args.threads < 1:
        raise ValueError("--epochs and --threads must be at least 1")
    recipe = replace(Recipe(), epochs=args.epochs, input_hw=parse_input_size(args.input), threads=args.threads,
                     max_steps=args.max_steps)  # fmt: skip
    h, w = recipe.input_hw
    steps = f"-{args.max_steps}steps" if args.max_steps else ""
    return TruthRecipe(f"truth-{recipe.epochs}ep-{h}x{w}{steps}", recipe)


def sample(args, space: SearchSpace) -> list[Member]:
    """The sampled genomes and the space's presets within the budget (canonical, cheapest first)."""
    budget = parse_budget(args.budget)

    def flops_of(genome) -> int:
        return genome_complexity(genome).flops[CONVENTION]

    presets = {}
    for name in PRESETS:
        genome = load_preset(name)
        try:
            space.params_of(genome)
        except SpaceError:
            continue
        if flops_of(genome) <= budget.raw:
            presets[genome.canonical_line()] = Member(genome.canonical_line(), flops_of(genome), name)
    pool = [m for m in population(space, flops_of, budget.raw) if m.genome not in presets]
    if args.genomes > len(pool):
        raise ValueError(f"--genomes {args.genomes}: space {space.name!r} has {len(pool)} genomes within "
                         f"{budget.text} besides its presets; ask for fewer")  # fmt: skip
    drawn = stratified(pool, args.genomes, min(args.strata, args.genomes), args.sample_seed, space.ordered())
    return sorted([*drawn, *presets.values()], key=lambda m: (m.flops, m.genome))


def show_plan(members: list[Member], plan: Plan, done: set) -> None:
    for member in members:
        jobs = [j for j in plan.jobs if j.member == member]
        marks = ", ".join(f"{j.kind} s{j.seed}{' (done)' if j.key() in done else ''}" for j in jobs)
        print(f"{format_flops(member.flops, CONVENTION):>10}  {member.preset or '':<26} {marks}  {member.genome}")
    print("gene values covered (active genes):")
    for gene, values in coverage(members).items():
        print(f"  {gene}: " + ", ".join(f"{v} x{n}" for v, n in values.items()))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"truth": truth_main, "signals": signals_main}
    if not argv or argv[0] not in commands:
        print("usage: hrnas bench truth|signals [options]   (hrnas bench truth --help)", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


def truth_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)

    def job() -> dict:
        recipe = truth_recipe(args)
        data = absolute_data(args.data)
        parse_data(data)
        out, folder = Path(args.out), Path(args.folder).resolve()
        lines = read_lines(out) if out.is_file() else []
        check_recipe(lines, recipe, out)
        space = SearchSpace.from_file(args.space)
        members = sample(args, space)
        seeded = seeded_count(args.seeded, len(members))
        if args.convergence > seeded:
            raise ValueError(f"--convergence {args.convergence}: at most the {seeded} seeded genomes")
        params = {m.genome: genome_complexity_params(m.genome) for m in members}
        plan = Plan.build(members, recipe, args.seeds, seeded, args.convergence, params)
        done = finished(lines)
        pending = plan.pending(done)
        write_sample(out, members, "synthetic" if args.data == "synthetic" else data, space.name)
        print(f"truth of space {space.name!r} within {args.budget}: {len(members)} genomes, recipe {recipe.name}; "
              f"{len(plan.jobs) - len(pending)} of {len(plan.jobs)} trainings in {out}")  # fmt: skip
        if args.plan:
            show_plan(members, plan, done)
            return {"genomes": len(members), "trainings": len(plan.jobs), "pending": len(pending)}
        from nas.options import code_version
        from nas.truth_run import Place, run

        keep = {m.genome for m in members if m.preset} | {max(members, key=lambda m: m.flops).genome}
        place = Place(folder, data, args.device, args.threads, code_version(), args.address, args.verbose)
        failed = run(pending, out.resolve(), place, keep) if pending else 0
        if failed:
            raise TruthError(f"{failed} training(s) failed (their errors are under {folder / 'tune'}); run the same "
                             "command again to retry them")  # fmt: skip
        return {"genomes": len(members), "trainings": len(plan.jobs), "pending": 0}

    return run_command(job)


def seeded_count(text: str, genomes: int) -> int:
    if text == "all":
        return genomes
    if not text.isdigit() or not 0 < int(text) <= genomes:
        raise ValueError(f"--seeded {text!r}: write all or a number from 1 to the {genomes} genomes")
    return int(text)


def genome_complexity_params(line: str) -> int:
    from search_space.genome import Genome

    return genome_complexity(Genome.from_canonical(line)).params


def signals_main(argv: list[str]) -> int:
    from hrnas.commands.signals import main as signals

    return signals(argv)


if __name__ == "__main__":
    sys.exit(main())
