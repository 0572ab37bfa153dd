"""`hrnas bench truth`: train a ground truth's plan as Ray trials, each training's lines appended when it ends.

The plan (`fidelity.truth.Plan`) is rebuilt from the same inputs each run; trainings the truth file holds are
skipped. A training in flight keeps its checkpoint under `<folder>/trainings/`, so a stopped run resumes it from
its last finished epoch on this machine; its lines reach the file only when it ends, so nothing is duplicated.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from ray import tune
from ray.tune.logger import JsonLoggerCallback

from fidelity.sample import Member
from fidelity.signals import line as signal_line
from fidelity.truth import Job, TruthRecipe, append, lines_of
from nas.options import say
from nas.ray_common import (
    EXIT_INTERRUPTED,
    REUSE_ACTORS,
    quiet_console,
    ray_instance,
    recipe_config,
    recipe_from_config,
)
from pose.coco import parse_data
from pose.device import resolve_device
from pose.train import load_data, train
from search_space.genome import Genome

TRAININGS = "trainings"  # in the run folder: one folder per training in flight (its checkpoint and clock)
KEPT = "checkpoints"  # in the run folder: the final checkpoints kept for warm starts (presets, the largest genome)


def slug(job: Job) -> str:
    """A training's folder name: readable start, unique hash of its key."""
    digest = hashlib.sha1(json.dumps(job.key()).encode()).hexdigest()[:12]
    return f"{job.member.preset or 'genome'}-s{job.seed}-{job.kind}-{digest}"


def kept_checkpoint(folder: Path, genome: str) -> Path | None:
    """The kept final checkpoint of `genome` (canonical line) under the run folder, a truth training's of seed 0
    first; None if there is none yet."""

    def rank(path: Path) -> tuple[bool, bool, str]:
        return ("-truth-" not in path.name, "-s0-" not in path.name, path.name)

    for path in sorted((folder / KEPT).glob("*.pt"), key=rank):
        meta = torch.load(path, map_location="cpu", weights_only=True).get("meta", {})
        if meta.get("genome") == genome:
            return path
    return None


def job_config(
    job: Job, folder: Path, data: str, device: str, code: str, keep: bool, signal: str | None = None
) -> dict:
    """A training's trial config; with `signal`, it writes one signal line (its final AP) instead of truth lines."""
    recipe = recipe_config(replace(job.recipe.recipe, seed=job.seed))
    return {
        "signal": signal,
        "genome": job.member.genome, "preset": job.member.preset, "flops": job.member.flops, "params": job.params,
        "seed": job.seed, "kind": job.kind, "recipe_name": job.recipe.name, "recipe": recipe,
        "out": str(folder / TRAININGS / slug(job)), "data": data, "device": device, "code": code, "keep": keep,
    }  # fmt: skip


def job_of(config: dict) -> Job:
    recipe = recipe_from_config(config["recipe"])
    member = Member(config["genome"], int(config["flops"]), config["preset"])
    return Job(
        member, int(config["seed"]), config["kind"], TruthRecipe(config["recipe_name"], recipe), config["params"]
    )


CLOCK = "clock.json"  # in a training's folder: the wall and CPU seconds spent by the end of each epoch
LINES = "lines.json"  # in a training's folder: its finished lines, for the driver to append


def truth_trial(config: dict) -> None:
    """Tune function trainable: one training of the plan, from its last checkpoint if it has one; writes its lines
    to its folder when it ends and reports every epoch."""
    config = config["job"]
    job = job_of(config)
    recipe = job.recipe.recipe
    out = Path(config["out"])
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(recipe.threads)
    clock_file = out / CLOCK
    clock = json.loads(clock_file.read_text()) if clock_file.is_file() else []
    checkpoint_epochs = _checkpoint_epochs(out)
    clock = clock[:checkpoint_epochs]  # epochs after the last checkpoint are trained again
    spent_before = clock[-1] if clock else {"wall_seconds": 0.0, "cpu_seconds": 0.0}
    wall0, cpu0 = time.perf_counter(), time.process_time()

    def on_epoch(record: dict) -> None:
        clock.append({
            "wall_seconds": spent_before["wall_seconds"] + time.perf_counter() - wall0,
            "cpu_seconds": spent_before["cpu_seconds"] + time.process_time() - cpu0,
        })  # fmt: skip
        clock_file.write_text(json.dumps(clock))
        tune.report({"epoch": record["epoch"], "ap": record["ap"], "loss": record["loss"], "complete": False})

    genome = Genome.from_canonical(job.member.genome)
    data = load_data(parse_data(config["data"]))
    device = resolve_device(config.get("device", "cpu"), "auto")
    result = train(genome, data, recipe, out, on_epoch, quiet=True, device=device)
    final = result["history"][-1]
    if config.get("signal"):
        lines = [
            signal_line(config["signal"], job.member.genome, job.seed, float(final["ap"]), clock[-1]["cpu_seconds"])
        ]
    else:
        lines = lines_of(job, result["history"], clock, config["code"])
    (out / LINES).write_text(json.dumps(lines))
    tune.report({"epoch": recipe.epochs, "ap": final["ap"], "loss": final["loss"], "complete": True})


def _checkpoint_epochs(out: Path) -> int:
    checkpoint = out / "checkpoint.pt"
    if not checkpoint.is_file():
        return 0
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    return len(json.loads(state["history"]))


@dataclass
class Progress:
    """Counts, AP and an ETA: the work left (epochs x FLOPs of each training) at the rate of this run's epochs."""

    total_work: float
    trainings: int
    concurrency: int
    started: float = 0.0
    work_done: float = 0.0
    finished: int = 0

    def eta(self) -> str:
        if not self.work_done:
            return "ETA after the first epoch"
        rate = self.work_done / (time.perf_counter() - self.started)
        left = max(0.0, self.total_work - self.work_done) / rate
        return f"ETA {left / 3600:.1f} h"


class Appender(tune.Callback):
    """The driver's side: a finished training's lines are appended to the truth file (the one writer), its folder
    freed (or its final checkpoint kept); progress after every epoch."""

    def __init__(self, path: Path, folder: Path, progress: Progress) -> None:
        self.path, self.folder, self.progress = path, folder, progress

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        if result.get("complete"):
            return
        config = trial.config["job"]
        self.progress.work_done += float(config["flops"])
        name = config["preset"] or config["genome"][:48]
        say(f"[{self.progress.finished}/{self.progress.trainings} trainings] {name} seed {config['seed']} "
            f"{config['kind']}: epoch {result['epoch']}/{config['recipe']['epochs']}, AP {result['ap']:.3f} | "
            f"{self.progress.eta()}")  # fmt: skip

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        config = trial.config["job"]
        out = Path(config["out"])
        lines_file = out / LINES
        if not lines_file.is_file():
            return
        append(self.path, json.loads(lines_file.read_text()))
        self.progress.finished += 1
        free(out, self.folder, config["keep"])
        say(f"[{self.progress.finished}/{self.progress.trainings} trainings] finished "
            f"{config['preset'] or config['genome'][:48]} seed {config['seed']} {config['kind']}: "
            f"final AP {trial.last_result.get('ap', float('nan')):.3f}; appended to {self.path}")  # fmt: skip


def free(out: Path, folder: Path, keep: bool) -> None:
    """Free the folder of a training whose lines are in the file, keeping its final checkpoint if asked."""
    if keep and (out / "checkpoint.pt").is_file():
        (folder / KEPT).mkdir(parents=True, exist_ok=True)
        shutil.move(str(out / "checkpoint.pt"), folder / KEPT / f"{out.name}.pt")
    shutil.rmtree(out, ignore_errors=True)


def free_appended(folder: Path, pending: set[str], keep: set[str], signal: str | None) -> None:
    """Finish what a driver killed between appending a training's lines and freeing its folder left behind: the
    folders of this kind of run's trainings that wrote their lines (so ended) and are not pending (so were
    appended)."""
    for out in sorted((folder / TRAININGS).glob("*")):
        if out.name in pending or not (out / LINES).is_file():
            continue
        lines = json.loads((out / LINES).read_text())
        if lines and lines[0].get("signal") == signal:
            free(out, folder, lines[0]["genome"] in keep)


@dataclass(frozen=True)
class Place:
    """Where and how the trainings run: the run folder, data, device, CPUs per training, Ray, the code version."""

    folder: Path
    data: str
    device: str = "cpu"
    threads: int = 1
    code: str = ""
    address: str | None = None
    verbose: bool = False


def run(jobs: list[Job], path: Path, place: Place, keep: set[str], signal: str | None = None) -> int:
    """Train `jobs` (the plan's pending trainings, or a trained signal's with `signal`) as Ray trials of
    `place.threads` CPUs, appending their lines to `path`; returns the number that failed."""
    folder, threads, verbose = place.folder, place.threads, place.verbose
    quiet_console(verbose)
    configs = [
        job_config(j, folder, place.data, place.device, place.code, j.member.genome in keep, signal) for j in jobs
    ]
    os.environ.setdefault("TUNE_RESULT_BUFFER_LENGTH", "1")
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    shutil.rmtree(folder / "tune" / (signal or "truth"), ignore_errors=True)  # the JSONL is the state, not Tune's
    free_appended(folder, {Path(c["out"]).name for c in configs}, keep, signal)
    with ray_instance(folder, place.address, verbose):
        import ray

        cpus = int(ray.cluster_resources().get("CPU", 1))
        work = sum(j.units() * float(j.member.flops) for j in jobs)
        progress = Progress(work, len(jobs), max(1, cpus // threads), time.perf_counter())
        say(f"{len(jobs)} trainings to run, {progress.concurrency} at a time ({threads} CPU each)")
        trainable = tune.with_resources(truth_trial, {"cpu": threads})
        tuner = tune.Tuner(
            trainable,
            param_space={"job": tune.grid_search(configs)},
            tune_config=tune.TuneConfig(num_samples=1, reuse_actors=REUSE_ACTORS),
            run_config=tune.RunConfig(
                name=signal or "truth",
                storage_path=str(folder / "tune"),
                callbacks=[Appender(path, folder, progress), JsonLoggerCallback()],
                verbose=1 if verbose else 0,
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        )
        try:
            results = tuner.fit()
        except KeyboardInterrupt:  # a second Ctrl-C: stopped at once
            results = None
    if results is None or progress.finished + results.num_errors < len(jobs):
        left = len(jobs) - progress.finished
        say(
            f"\nInterrupted: {progress.finished} of {len(jobs)} trainings finished in this run, {left} left; run the "
            "same command again to go on (a training in flight resumes from its last finished epoch)"
        )
        raise SystemExit(EXIT_INTERRUPTED)
    return results.num_errors
