"""A Tune searcher over Optuna's public ask/tell, behind the budget gate: an over-budget or invalid genome never
becomes a trial.

Each suggestion is asked of an Optuna study (multi-objective TPE or NSGA-II: maximise AP, minimise FLOPs), its genes
sampled define-by-run (a conditional gene only where it changes the network), its genome built and its complexity
computed at the canonical input. A genome over budget (or an invalid gene combination) is told to Optuna at once as an
infeasible trial (its `budget` constraint > 0: the amount over budget), so the sampler learns to avoid it, and
Optuna is asked again: the Tune trial slot is never used. Rejections are appended to a JSONL file so that the driver
can count and log them, also across a resumed search. The presets of the space under budget are enqueued, so they
are the first trials. The study's trials (in memory) are pickled with the searcher's state, so a killed search resumes
it; the sampler is not: it is rebuilt from its name and seed where the searcher is unpickled (Optuna's samplers need
not pickle: 5.1's NSGA-II holds a thread lock).
"""

from __future__ import annotations

import json
import pickle
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
from ray import cloudpickle
from ray.tune.search import Searcher

from analysis.runs import COST_METRICS
from nas.gate import BudgetGate, Cost
from nas.options import SearchError, say
from nas.ray_common import FAULTS_ENV, injected_fault
from search_space.genome import Genome, GenomeError
from search_space.space import PARAM_PREFIX, SearchSpace, decode

CONSTRAINT = "budget"  # the Optuna constraint: FLOPs (or predicted ms) over budget (<= 0: feasible)
EXPLORE_AFTER = 10  # duplicates in a row after which the next samples are drawn uniformly


# The Optuna releases hrnas is tested with (pyproject.toml bounds the dependency the same way)
OPTUNA_TESTED = "optuna>=5.0,<5.2"
NSGA2_POPULATION = 20  # genomes per NSGA-II generation (a one-shot search of 150 scores runs 7 or 8 of them)


def tpe_sampler(seed: int, startup_trials: int) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        # `group` is marked experimental (not deprecated) in Optuna; it is what conditional genes need
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed,
            multivariate=True,
            group=True,  # conditional genes: model each set of co-occurring genes together
            n_startup_trials=startup_trials,
        )


def nsga2_sampler(seed: int, startup_trials: int) -> optuna.samplers.BaseSampler:
    """Many cheap evaluations (one-shot scores): a genetic search over whole generations; the budget constraint
    (`trial.set_constraint`) ranks infeasible genomes last."""
    return optuna.samplers.NSGAIISampler(population_size=NSGA2_POPULATION, seed=seed)


SAMPLERS = {"tpe": tpe_sampler, "nsga2": nsga2_sampler}


@dataclass(frozen=True)
class SamplerSpec:
    """What builds a study's sampler: kept in the searcher's pickled state in place of the sampler itself."""

    name: str
    seed: int
    startup_trials: int

    def build(self, told: int = 0) -> optuna.samplers.BaseSampler:
        """`told`: trials the study holds already. A rebuilt sampler's seed moves on by that many, so a resumed
        search does not replay the random proposals it started with."""
        return SAMPLERS[self.name](self.seed + told, self.startup_trials)


def portable(study: optuna.Study) -> dict:
    """A study as public Optuna values that pickle in any release: its directions and its trials (waiting, running
    and told), without its sampler."""
    return {"directions": list(study.directions), "trials": study.get_trials(deepcopy=False)}


def rebuilt(state: dict, sampler: SamplerSpec) -> optuna.Study:
    """The study of `portable(...)` with a new sampler of `sampler`; trials keep their numbers and states."""
    study = optuna.create_study(directions=state["directions"], sampler=sampler.build(len(state["trials"])))
    study.add_trials(state["trials"])
    return study


def canonical(genomes) -> list[str]:
    """Genome lines (tags, saved states: either form) as canonical lines, the searcher's keys."""
    return [Genome.from_compact(line).canonical_line() for line in genomes]


class SamplerNotPortable(SearchError):
    """The searcher's state does not survive pickling (a new Optuna release changed what its objects hold)."""


class TooManyRejections(SearchError):
    """The sampler keeps proposing genomes the gate refuses: the budget admits too little of the space."""


class BudgetedSearcher(Searcher):
    # class-level defaults: a searcher pickled by a search started before these existed resumes with them
    limit: int | None = None
    finished_file: Path | None = None
    costs: tuple[str, ...] = ("flops",)

    def __init__(
        self,
        space: SearchSpace,
        gate: BudgetGate,
        anchors: list[dict[str, str]],
        seed: int,
        rejections_file: Path,
        max_rejections: int = 300,
        startup_trials: int = 5,
        sampler: str = "tpe",
        limit: int | None = None,
        finished_file: Path | None = None,
        costs: tuple[str, ...] = ("flops",),
    ) -> None:
        """`limit`: genomes to hand out in all (None: as many as Tune asks for). `finished_file`: a JSON list of
        compact genomes that finished in an earlier run of this search, read on restore (see `restore`). `costs`:
        the objectives minimised besides AP, keys of COST_METRICS."""
        metrics = ["ap", *(COST_METRICS[c] for c in costs)]
        super().__init__(metric=metrics, mode=["max", *("min" for _ in costs)])
        self.space, self.gate, self.rejections_file = space, gate, rejections_file
        self.max_rejections = max_rejections
        self.limit, self.finished_file, self.costs = limit, finished_file, tuple(costs)
        self.sampler = SamplerSpec(sampler, seed, startup_trials)
        self.study = optuna.create_study(
            directions=["maximize", *("minimize" for _ in costs)], sampler=self.sampler.build()
        )
        for params in anchors:
            self.study.enqueue_trial(params)
        self.random = random.Random(seed)
        self.live: dict[str, int] = {}  # Tune trial id -> Optuna trial number, until the trial ends
        self.suggested: set[str] = set()  # compact genomes handed to Tune
        if finished_file is not None and finished_file.is_file():  # a resumed job that starts a new Tuner
            self.suggested.update(canonical(json.loads(finished_file.read_text())))
        self.exhausted = False

    def _sample(self, trial: optuna.Trial) -> dict[str, str]:
        """Define-by-run: a conditional gene is only sampled where it changes the network."""
        genes = dict(self.space.base.genes)
        for key, choices in self.space.parameters().items():
            name = key.removeprefix(PARAM_PREFIX)
            if self.space.is_active(name, genes):
                genes[name] = decode(name, trial.suggest_categorical(key, choices))
        return dict(trial.params)

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.exhausted or (self.limit is not None and len(self.suggested) >= self.limit):
            return Searcher.FINISHED
        duplicates = 0
        for _ in range(self.max_rejections):
            if duplicates >= EXPLORE_AFTER:
                # TPE learns nothing from a duplicate and keeps proposing it: explore a uniformly random point
                self.study.enqueue_trial({k: self.random.choice(v) for k, v in self.space.parameters().items()})
            trial = self.study.ask()
            params = self._sample(trial)
            try:
                genome = self.space.genome(params)
            except GenomeError as exc:
                self._reject(trial, params, None, f"invalid combination: {exc}")
                continue
            if genome.canonical_line() in self.suggested:
                # Trained (or training) already: nothing new for Optuna, a failed sample it does not learn from.
                self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
                duplicates += 1
                continue
            cost = self.gate.cost(genome)
            flops, limited = cost.flops[self.gate.convention], self.gate.limited(cost)
            if not self.gate.admits(limited):
                self._reject(trial, params, cost, f"over budget: {self.gate.show(limited)}")
                continue
            if injected_fault(genome.compact()) == "driver":
                raise RuntimeError(f"injected driver crash ({FAULTS_ENV}) at {genome.compact()}")
            trial.set_constraint(CONSTRAINT, float(self.gate.over(limited)))
            self.live[trial_id] = trial.number
            self.suggested.add(genome.canonical_line())
            return {"params": params, "genome": genome.canonical_line(), "flops": flops, "cost": cost.metrics()}
        if self.suggested:
            say(
                f"search: {self.max_rejections} samples in a row were already trained, over budget or invalid; the "
                "space under budget looks exhausted, so no further trials start"
            )
            self.exhausted = True
            return Searcher.FINISHED
        raise TooManyRejections(
            f"{self.max_rejections} samples in a row were over budget or invalid: the space has too few genomes "
            f"under {self.gate.budget.text}; raise the budget or narrow the space"
        )

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        number = self.live.pop(trial_id, None)
        if number is None:
            return
        if error or not result or "ap" not in result:
            self.study.tell(number, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(number, [float(result["ap"]), *(float(result[COST_METRICS[c]]) for c in self.costs)])

    def _reject(self, trial: optuna.Trial, params: dict, cost: Cost | None, reason: str) -> None:
        limited = self.gate.limited(cost) if cost is not None else None
        trial.set_constraint(CONSTRAINT, float(self.gate.over(limited) if cost is not None else self.gate.limit))
        trial.set_user_attr("rejected", reason)
        # Objectives of a genome that is never trained: no accuracy, and its real cost when known.
        known = {"flops": None, "latency": None} if cost is None else {
            "flops": cost.flops[self.gate.convention], "latency": cost.latency_ms
        }  # fmt: skip
        costs = [float(known[c]) if known[c] is not None else 1e12 for c in self.costs]
        self.study.tell(trial, [0.0, *costs])
        record = {"time": time.time(), "params": params, "flops": known["flops"], "reason": reason}
        if known["latency"] is not None:
            record["predicted_latency_ms"] = known["latency"]
        self.rejections_file.parent.mkdir(parents=True, exist_ok=True)
        with self.rejections_file.open("a") as f:
            f.write(json.dumps(record) + "\n")

    # ---- resume: Tune pickles the searcher in its tuner state (tuner.pkl), saves it with its experiment state
    # (save) and restores it on Tuner.restore (restore). Both keep the study's trials, never its sampler.
    STATE = ("study", "live", "suggested", "exhausted", "random")

    def __getstate__(self) -> dict:
        return {**self.__dict__, "study": portable(self.study)}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.study = self._study_of(state["study"])

    def _study_of(self, saved: dict | optuna.Study) -> optuna.Study:
        """A saved study back; one pickled whole by an earlier hrnas (a study object) is kept as it is."""
        return saved if isinstance(saved, optuna.Study) else rebuilt(saved, self.sampler)

    def save(self, checkpoint_path: str) -> None:
        state = {**{name: getattr(self, name) for name in self.STATE}, "study": portable(self.study)}
        try:
            data = pickle.dumps(state)
        except Exception as exc:
            raise self.not_portable(exc) from exc
        with open(checkpoint_path, "wb") as f:
            f.write(data)

    def not_portable(self, exc: Exception) -> SamplerNotPortable:
        return SamplerNotPortable(
            f"--sampler {self.sampler.name}: the search's state cannot be saved with Optuna {optuna.__version__} "
            f"({type(exc).__name__}: {exc}); install a tested release: pip install {OPTUNA_TESTED!r}"
        )

    def check_portable(self, folder: Path) -> None:
        """Before the first trial: the searcher survives both of Ray's pickling paths (its tuner state and
        save/restore), or one line naming the sampler and the Optuna release."""
        try:
            copy = cloudpickle.loads(cloudpickle.dumps(self))
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / ".searcher-check.pkl"
            copy.save(str(path))
            copy.restore(str(path))
            path.unlink()
        except SamplerNotPortable:
            raise
        except Exception as exc:
            raise self.not_portable(exc) from exc

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)  # written by save() above, in this search's own folder
        for name in self.STATE:
            setattr(self, name, state[name])
        self.study = self._study_of(state["study"])
        # A driver killed between a trial's end (its MLflow run FINISHED) and Tune's next save of this state would
        # hand that genome out again, as a new trial and a duplicate run: the driver lists the finished genomes.
        self.suggested = set(canonical(self.suggested))  # a state saved by an earlier hrnas holds longer forms
        if self.finished_file is not None and self.finished_file.is_file():
            self.suggested.update(canonical(json.loads(self.finished_file.read_text())))
