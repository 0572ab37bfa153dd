"""`hrnas bench signals`: every search signal scored on a truth's genomes, appended to a signals JSONL.

hrnas bench signals --truth bench/truth.jsonl                          # every signal (hours: trainings, supernets)
hrnas bench signals --truth bench/truth.jsonl --signal synflow --signal naswot   # two zero-cost proxies (minutes)
hrnas bench signals --truth bench/truth.jsonl --signal trials-1 --signal one-shot-6ep --subset 12

Cheap signals (counts, predicted latency, zero-cost proxies, one-shot scores) are computed on every genome of the
truth's sample; expensive ones (`latency-measured`, `trials-k`, `train-12`, the one-shot variants) on `--subset`
genomes spread over its FLOPs. A (signal, genome, seed) the file holds is not computed again. Trained signals run
as Ray trials (a training in flight resumes from its last epoch in `--folder`); supernets train once into
`--folder` and are reused.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import replace
from pathlib import Path

from fidelity.proxies import proxy_batch
from fidelity.report import default_signals_file
from fidelity.sample import Member
from fidelity.signals import (
    ONE_SHOT_SCORES,
    SIGNALS,
    SignalSpec,
    counted,
    genomes_for,
    line,
    proxy,
    signal_spec,
    split_spaces,
    timed,
)
from fidelity.truth import Job, TruthError, TruthRecipe, append, read_lines, read_sample, sample_file
from hrnas.commands.trial_options import add_address_argument
from hrnas.errors import Parser, run_command
from pose.coco import parse_data
from pose.train import Recipe, load_data
from search_space.genome import Genome
from search_space.space import DEFAULT_SPACE, SearchSpace

SAY_EVERY = 5.0  # seconds between progress lines of an in-process signal


def build_parser() -> Parser:
    p = Parser(prog="hrnas bench signals", description=__doc__)
    p.add_argument("--truth", required=True, help="the truth JSONL of `hrnas bench truth` (its sample beside it)")
    p.add_argument("--signals", default=None, help="signals JSONL (default: signals.jsonl beside the truth file)")
    p.add_argument("--signal", action="append", default=None, help="a signal to compute (repeat; default: all)")
    p.add_argument("--subset", type=int, default=12, help="genomes of an expensive signal (default 12)")
    p.add_argument("--space", default=str(DEFAULT_SPACE), help="the truth's space (latency table, supernets)")
    p.add_argument("--threads", type=int, default=1, help="CPUs of each computation or training (default 1)")
    p.add_argument("--device", default="cpu", help="where trained signals train (cpu, cuda, auto)")
    p.add_argument("--folder", default="runs/signals", help="trainings in flight, supernets, the latency table")
    p.add_argument("--truth-folder", default="runs/truth", help="the truth's --folder, whose kept checkpoint of its "
                   "largest genome starts the supernets of `-init` variants (default runs/truth)")  # fmt: skip
    add_address_argument(p, "the trained signals")
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="optimizer steps per epoch of trained signals and "
        "supernets (tiny checks only; such scores are not the signals)",
    )
    p.add_argument("--verbose", action="store_true")
    return p


def say(text: str) -> None:
    import sys

    print(text, file=sys.stderr, flush=True)


class Context:
    """What the in-process signals share: the data, one proxy batch per seed, the latency table, the space."""

    def __init__(self, args, data: str) -> None:
        self.args, self.data_text = args, data
        self.recipe = replace(Recipe(), threads=args.threads)
        self._data = self._table = None
        self._batches: dict[int, object] = {}

    @property
    def data(self):
        if self._data is None:
            self._data = load_data(parse_data(self.data_text))
        return self._data

    def batch(self, seed: int):
        if seed not in self._batches:
            self._batches[seed] = proxy_batch(self.data, replace(self.recipe, seed=seed), seed=seed)
        return self._batches[seed]

    def table(self):
        if self._table is None:
            from search_space.latency import Setting
            from search_space.latency_table import fit_space, load_table
            from search_space.presets import PRESETS, load_preset

            setting = Setting()
            self._table = load_table(setting)
            if self._table is None:
                say(f"latency: no table for {setting.describe()} on this machine yet; fitting one (minutes, once)")
                space = SearchSpace.from_file(self.args.space)
                self._table = fit_space(space, setting, {n: load_preset(n) for n in PRESETS}, progress=say)[0]
        return self._table


def local_score(spec: SignalSpec, genome: Genome, seed: int, context: Context) -> float:
    """A signal computed in this process."""
    if spec.kind == "counted":
        return counted(spec.name, genome)
    if spec.kind == "proxy":
        return proxy(spec.name, genome, context.batch(seed), replace(context.recipe, seed=seed))
    if spec.name == "latency":
        from search_space.latency_table import predict_latency

        return predict_latency(context.table(), genome)
    from search_space.latency import Setting, measure_latency

    return measure_latency(genome, Setting(threads=1), seconds=2.0).median_ms


def run_local(spec: SignalSpec, todo: list[tuple[Member, int]], out: Path, context: Context) -> None:
    if spec.name == "latency":
        context.table()  # fitted once per machine (as a search fits it): not a cost of each genome
    shown = time.monotonic()
    start = time.monotonic()
    for index, (member, seed) in enumerate(todo, 1):
        genome = Genome.from_canonical(member.genome)
        score, cpu = timed(lambda g=genome, s=seed: local_score(spec, g, s, context))
        append(out, [line(spec.name, member.genome, seed, score, cpu)])
        if time.monotonic() - shown > SAY_EVERY or index == len(todo):
            shown = time.monotonic()
            left = (time.monotonic() - start) / index * (len(todo) - index)
            say(f"  {spec.name}: {index}/{len(todo)} genomes, ETA {left / 60:.1f} min")


def run_trained(spec: SignalSpec, todo: list[tuple[Member, int]], out: Path, args, data: str) -> int:
    from nas.options import SEARCH_FIDELITY, code_version
    from nas.truth_run import Place, run

    base = {"trial": SEARCH_FIDELITY, "train": Recipe()}[spec.base]
    recipe = TruthRecipe(spec.name, replace(base, epochs=spec.epochs, threads=args.threads, max_steps=args.max_steps))
    jobs = [Job(member, seed, spec.name, recipe) for member, seed in todo]
    place = Place(Path(args.folder).resolve(), data, args.device, args.threads, code_version(), args.address,
                  args.verbose)  # fmt: skip
    return run(jobs, out.resolve(), place, set(), signal=spec.name)


def warm_start(truth_folder: Path, members: list[Member], folder: Path) -> list[str]:
    """`supernet train` options that start it from the truth's kept checkpoint of its largest genome."""
    from nas.truth_run import kept_checkpoint

    largest = max(members, key=lambda m: m.flops)
    checkpoint = kept_checkpoint(truth_folder, largest.genome)
    if checkpoint is None:
        raise TruthError(f"-init: no kept checkpoint of the truth's largest genome ({largest.genome}) under "
                         f"--truth-folder {truth_folder}; run `hrnas bench truth` until it has trained it")  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "init-arch.yaml").write_text(Genome.from_canonical(largest.genome).to_yaml())
    return ["--init-from", str(checkpoint), "--init-arch", str(folder / "init-arch.yaml")]


def train_variant(spec: SignalSpec, args, context: Context, members: list[Member]) -> tuple[list[Path], float]:
    """The variant's supernet folders (one, or one per value of its split gene), each trained by `hrnas supernet
    train` unless done, and their training CPU-seconds."""
    from hrnas.cli import run_subcommand

    variant = spec.one_shot
    run_folder = Path(args.folder).resolve()
    folder = run_folder / variant.supernet_folder()
    spaces = [(folder, Path(args.space))]
    if variant.split:
        try:
            texts = split_spaces(Path(args.space).read_text(), variant.split)
        except ValueError as exc:
            raise TruthError(f"{spec.name}: {exc}") from None
        spaces = [(folder / str(i), folder / str(i) / "space.yaml") for i in range(len(texts))]
        for (_, path), text in zip(spaces, texts, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    cpu_seconds = 0.0
    for out, space in spaces:
        cost_file = out / "train_cpu_seconds.json"
        if not (out / "result.json").is_file():
            init = warm_start(Path(args.truth_folder).resolve(), members, out) if variant.init else []
            say(f"{spec.name}: training the supernet of {space} for {spec.epochs} epoch(s) into {out}")
            before = resource.getrusage(resource.RUSAGE_SELF)
            code = run_subcommand("supernet", [
                "train", "--space", str(space), "--epochs", str(spec.epochs), "--out", str(out), "--data",
                context.data_text, "--threads", str(args.threads), "--storage", str(run_folder), *init,
                "--progressive", str(variant.progressive),
                *(["--sandwich", str(variant.sandwich)] if variant.sandwich is not None else []),
                *(["--max-steps", str(args.max_steps)] if args.max_steps else []),
            ])  # fmt: skip
            if code != 0:
                raise TruthError(f"{spec.name}: the supernet training failed (exit {code}); its output says why")
            after = resource.getrusage(resource.RUSAGE_SELF)
            cost = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
            cost_file.write_text(json.dumps({"cpu_seconds": cost}))
        cpu_seconds += json.loads(cost_file.read_text())["cpu_seconds"] if cost_file.is_file() else 0.0
    return [out for out, _ in spaces], cpu_seconds


def run_one_shot(
    spec: SignalSpec, todo: list[tuple[Member, int]], out: Path, args, context: Context, members: list[Member]
) -> None:
    """Train (or reuse) the supernet(s) of the variant (`hrnas supernet train`'s defaults but for its length, warm
    start and split), then score each genome as a one-shot search does, with the variant's calibration and
    fine-tune, by the supernet whose space holds it; the training's CPU is shared by the `ONE_SHOT_SCORES` genomes a
    search scores."""
    import torch

    from supernet.calibrate import DEFAULT_CALIBRATION
    from supernet.score import score, scoring_set
    from supernet.training import CHECKPOINT, restore

    folders, cpu_seconds = train_variant(spec, args, context, members)
    shared = cpu_seconds / ONE_SHOT_SCORES
    torch.set_num_threads(args.threads)  # not only when a training just set them: a reused supernet scores alike
    restored = [restore(folder / CHECKPOINT) for folder in folders]
    supernets = [supernet for supernet, *_ in restored]
    recipe = replace(restored[0][2], threads=args.threads)
    calibration = spec.one_shot.calibration or DEFAULT_CALIBRATION
    prepared = scoring_set(context.data, recipe, calibration, finetune_steps=spec.one_shot.finetune_steps)
    for index, (member, seed) in enumerate(todo, 1):
        genome = Genome.from_canonical(member.genome)
        supernet = holder(supernets, genome, spec.name)
        result, cpu = timed(lambda g=genome, s=supernet: score(s, g, context.data, recipe, calibration,
                                                               prepared=prepared)["ap"])  # fmt: skip
        append(out, [line(spec.name, member.genome, seed, float(result), cpu + shared, one_off=cpu_seconds)])
        say(f"  {spec.name}: {index}/{len(todo)} genomes scored")


def holder(supernets: list, genome: Genome, signal: str):
    """The first supernet whose space holds `genome`."""
    for supernet in supernets:
        try:
            supernet.check(genome)
        except ValueError:
            continue
        return supernet
    raise TruthError(f"{signal}: no supernet's space holds {genome.compact()}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def job() -> dict:
        truth = Path(args.truth)
        if not sample_file(truth).is_file():
            read_lines(truth)  # the genomes come from its lines: it must exist and parse
        specs = [signal_spec(name) for name in (args.signal or list(SIGNALS))]
        if args.subset < 5 or args.threads < 1:
            raise ValueError("--subset must be at least 5 and --threads at least 1")
        sample = read_sample(truth)
        members, data = sample.members, sample.data
        out = Path(args.signals) if args.signals else default_signals_file(truth)
        held = read_lines(out) if out.is_file() else []
        done = {(d["signal"], d["genome"], int(d["seed"])) for d in held}
        context = Context(args, data)
        counts = {}
        for spec in specs:
            todo = [(m, s) for m in genomes_for(spec, members, args.subset) for s in spec.seeds
                    if (spec.name, m.genome, s) not in done]  # fmt: skip
            counts[spec.name] = len(todo)
            say(f"{spec.name}: {len(todo)} to compute ({spec.kind})")
            if not todo:
                continue
            if spec.kind == "trained":
                failed = run_trained(spec, todo, out, args, data)
                if failed:
                    raise TruthError(f"{spec.name}: {failed} training(s) failed; run the same command to retry them")
            elif spec.kind == "one-shot":
                run_one_shot(spec, todo, out, args, context, members)
            else:
                run_local(spec, todo, out, context)
        return {"signals": counts, "file": str(out)}

    return run_command(job)
