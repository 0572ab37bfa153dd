"""The ground-truth table: which trainings it holds (the plan), its fixed recipe, and its JSONL lines.

A truth file holds one line per (genome, seed, evaluated epoch) of finished trainings. A training's lines are
appended together, once it has finished, so a file never holds part of a training; running the plan again skips
every training it already holds. Pure Python (no Ray): `nas.truth_run` trains the plan as Ray trials.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from fidelity.sample import Member, spread
from pose.train import Recipe

KINDS = ("truth", "convergence")  # the truth recipe, and the same recipe at twice the epochs (its convergence check)
FIELDS = (
    "genome", "preset", "seed", "epoch", "epochs", "ap", "loss", "flops", "params", "recipe", "kind", "code",
    "wall_seconds", "cpu_seconds",
)  # fmt: skip


class TruthError(ValueError):
    """A truth file or plan that cannot be used as asked: one line naming what is wrong and how to fix it."""


@dataclass(frozen=True)
class TruthRecipe:
    """The one training recipe of a truth table, by name and settings (`recipe` in every line)."""

    name: str
    recipe: Recipe

    def settings(self) -> dict:
        """What decides the result, besides the seed (each line has its own): threads change the speed only."""
        fields = asdict(self.recipe)
        fields.pop("threads")
        fields.pop("seed")
        fields["input_hw"] = list(fields["input_hw"])
        return fields

    def record(self) -> dict:
        return {"name": self.name, **self.settings()}

    def doubled(self) -> TruthRecipe:
        """The convergence check's recipe: twice the epochs, all else the same."""
        epochs = self.recipe.epochs * 2
        return TruthRecipe(f"{self.name}-x2", replace(self.recipe, epochs=epochs))


@dataclass(frozen=True)
class Job:
    """One training of the plan."""

    member: Member
    seed: int
    kind: str
    recipe: TruthRecipe
    params: int = 0

    def key(self) -> tuple[str, int, str]:
        return (self.member.genome, self.seed, self.kind)

    def units(self) -> int:
        """Its cost in epochs (what the ETA counts)."""
        return self.recipe.recipe.epochs


@dataclass
class Plan:
    """The trainings of a truth table, in the order they run, so that its two checks are known early: first the
    largest genome's first seed (its kept checkpoint warm-starts the supernets of the one-shot `-init` variants),
    then the convergence genomes (every seed, then twice the epochs: is the recipe long enough?), then the other
    seeded genomes' seeds (the seed ceiling), then the other genomes' first seed."""

    jobs: list[Job] = field(default_factory=list)

    @classmethod
    def build(
        cls, members: list[Member], recipe: TruthRecipe, seeds: int, seeded: int, convergence: int, params: dict
    ) -> Plan:
        many = spread(members, seeded)
        doubled = spread(many, convergence)

        def truth(member: Member, seeds: range) -> list[Job]:
            return [Job(member, s, "truth", recipe, params.get(member.genome, 0)) for s in seeds]

        order = []
        for member in doubled:
            order += truth(member, range(seeds))
            order.append(Job(member, 0, "convergence", recipe.doubled(), params.get(member.genome, 0)))
        order += [job for m in many if m not in doubled for job in truth(m, range(seeds))]
        order += [job for m in members if m not in many for job in truth(m, range(1))]
        largest = max(members, key=lambda m: (m.flops, m.genome))
        first = [job for job in order if job.key() == (largest.genome, 0, "truth")]
        return cls(first + [job for job in order if job not in first])

    def pending(self, done: set[tuple[str, int, str]]) -> list[Job]:
        return [job for job in self.jobs if job.key() not in done]


# ---- the sample beside the file -----------------------------------------------------------------------------------
def sample_file(truth: Path) -> Path:
    """Where a truth's sample is written (`truth.jsonl` -> `truth.genomes.json`): the signals are computed on it."""
    return truth.with_name(truth.stem + ".genomes.json")


def write_sample(truth: Path, members: list[Member], data: str, space: str) -> Path:
    path = sample_file(truth)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {"space": space, "data": data, "genomes": [asdict(m) for m in members]}
    path.write_text(json.dumps(body, indent=1) + "\n")
    return path


@dataclass(frozen=True)
class Sample:
    """A truth's genomes, the data they train on and the name of their space."""

    members: list[Member]
    data: str
    space: str


def read_sample(truth: Path) -> Sample:
    """The truth's sample; without a sample file, the genomes its lines hold (synthetic data, space unknown)."""
    path = sample_file(truth)
    if path.is_file():
        body = json.loads(path.read_text())
        return Sample([Member(**m) for m in body["genomes"]], body["data"], body["space"])
    lines = read_lines(truth)
    members = {d["genome"]: Member(d["genome"], int(d["flops"]), d.get("preset")) for d in lines}
    return Sample(sorted(members.values(), key=lambda m: (m.flops, m.genome)), "synthetic", "unknown")


# ---- the JSONL file -----------------------------------------------------------------------------------------------
def read_lines(path: Path) -> list[dict]:
    """Every line of a truth (or signals) file; a line that is not JSON is an error naming it."""
    if not path.is_file():
        raise TruthError(f"{path} does not exist: give the file `hrnas bench truth` wrote (--out)")
    lines = []
    for number, text in enumerate(path.read_text().splitlines(), 1):
        if not text.strip():
            continue
        try:
            lines.append(json.loads(text))
        except json.JSONDecodeError as exc:
            raise TruthError(f"{path}:{number} is not a JSON line ({exc.msg}); remove or repair that line") from None
    return lines


def finished(lines: Iterable[dict]) -> set[tuple[str, int, str]]:
    """The trainings a file holds to their last epoch."""
    return {(d["genome"], int(d["seed"]), d["kind"]) for d in lines if int(d["epoch"]) == int(d["epochs"])}


def check_recipe(lines: Iterable[dict], recipe: TruthRecipe, path: Path) -> None:
    """A file holds one truth recipe: a run with another is refused before it trains."""
    wanted = {"truth": recipe.record(), "convergence": recipe.doubled().record()}
    for line in lines:
        if line["recipe"] != wanted[line["kind"]]:
            raise TruthError(
                f"{path} holds {line['kind']} lines of recipe {line['recipe']['name']} "
                f"({describe(line['recipe'])}); this run's is {wanted[line['kind']]['name']} "
                f"({describe(wanted[line['kind']])}): give the same --input/--epochs/--data, or another --out"
            )


def describe(record: dict) -> str:
    h, w = record["input_hw"]
    return f"{record['epochs']} epochs at {h}x{w}, batch {record['batch']}, lr {record['lr']:g}"


def append(path: Path, lines: list[dict]) -> None:
    """One training's lines in one write, flushed to disk: a file never holds part of a training."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(line, sort_keys=False) + "\n" for line in lines)
    with path.open("a") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def lines_of(job: Job, history: list[dict], clock: list[dict], code: str) -> list[dict]:
    """A finished training's lines: one per evaluated epoch, with the time it had taken by then."""
    rows = []
    for record, spent in zip(history, clock, strict=True):
        rows.append({
            "genome": job.member.genome,
            "preset": job.member.preset,
            "seed": job.seed,
            "epoch": int(record["epoch"]),
            "epochs": job.recipe.recipe.epochs,
            "ap": float(record["ap"]),
            "loss": float(record["loss"]),
            "flops": job.member.flops,
            "params": job.params,
            "recipe": job.recipe.record(),
            "kind": job.kind,
            "code": code,
            "wall_seconds": round(spent["wall_seconds"], 1),
            "cpu_seconds": round(spent["cpu_seconds"], 1),
        })  # fmt: skip
    return rows
