"""Ray Tune's OptunaSearch behind the budget gate: an over-budget or invalid genome never becomes a trial.

Each suggestion is sampled by Optuna (multi-objective TPE: maximise AP, minimise FLOPs), its genome built and its
complexity computed at the canonical input. A genome over budget (or an invalid gene combination) is told to
Optuna at once as an infeasible trial (constraint value > 0, the amount over budget), so the sampler learns to
avoid it, and Optuna is asked again - the Tune trial slot is never used. Rejections are appended to a JSONL file
so that the driver can count and log them, also across a resumed search.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import optuna
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from nas.gate import BudgetGate
from search_space.genome import GenomeError
from search_space.space import PARAM_PREFIX, SearchSpace, decode

CONSTRAINT_ATTR = "constraint"
METRICS, MODES = ["ap", "flops"], ["max", "min"]


def constraint_of(trial: optuna.trial.FrozenTrial) -> Sequence[float]:
    """Optuna's view of feasibility: <= 0 within budget (module-level so the sampler pickles with the search)."""
    return trial.user_attrs.get(CONSTRAINT_ATTR, [0.0])


class TooManyRejections(RuntimeError):
    pass


class BudgetedOptunaSearch(OptunaSearch):
    def __init__(
        self,
        space: SearchSpace,
        gate: BudgetGate,
        anchors: list[dict[str, str]],
        seed: int,
        rejections_file: Path,
        max_rejections: int = 300,
        startup_trials: int = 5,
    ) -> None:
        self.search_space, self.gate, self.rejections_file = space, gate, rejections_file
        self.max_rejections = max_rejections
        self.suggested: set[str] = set()  # compact genomes handed to Tune
        self.choices = space.parameters()
        sampler = optuna.samplers.TPESampler(
            seed=seed,
            multivariate=True,
            group=True,  # conditional genes: model each set of co-occurring genes together
            n_startup_trials=startup_trials,
            constraints_func=constraint_of,
        )
        super().__init__(
            space=self.define, metric=list(METRICS), mode=list(MODES), sampler=sampler, points_to_evaluate=anchors
        )

    def define(self, trial) -> None:
        """Define-by-run: a conditional gene is only sampled where it changes the network."""
        genes = dict(self.search_space.base.genes)
        for key, choices in self.choices.items():
            name = key.removeprefix(PARAM_PREFIX)
            if self.search_space.is_active(name, genes):
                genes[name] = decode(name, trial.suggest_categorical(key, choices))

    def suggest(self, trial_id: str) -> dict | str | None:
        for _ in range(self.max_rejections):
            params = super().suggest(trial_id)
            if params is None:
                return None
            ot_trial = self._ot_trials[trial_id]
            try:
                genome = self.search_space.genome(params)
            except GenomeError as exc:
                self._reject(trial_id, ot_trial, params, None, f"invalid combination: {exc}")
                continue
            if genome.compact() in self.suggested:
                # Trained (or training) already: tell Optuna nothing new, as a failed sample it does not learn from.
                self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
                del self._ot_trials[trial_id]
                continue
            cost = self.gate.cost(genome)
            flops = cost.flops[self.gate.convention]
            if flops > self.gate.budget.raw:
                self._reject(trial_id, ot_trial, params, flops, f"over budget: {self.gate.show(flops)}")
                continue
            ot_trial.set_user_attr(CONSTRAINT_ATTR, [float(flops - self.gate.budget.raw)])
            self.suggested.add(genome.compact())
            return {"params": params, "genome": genome.compact(), "flops": flops, "cost": cost.metrics()}
        if self.suggested:
            print(
                f"search: {self.max_rejections} samples in a row were already trained, over budget or invalid; the "
                "space under budget looks exhausted, so no further trials start",
                file=sys.stderr,
            )
            return Searcher.FINISHED
        raise TooManyRejections(
            f"{self.max_rejections} samples in a row were over budget or invalid: the space has too few genomes "
            f"under {self.gate.budget.text}; raise the budget or narrow the space"
        )

    def _reject(self, trial_id: str, ot_trial, params: dict, flops: int | None, reason: str) -> None:
        over = float(flops - self.gate.budget.raw) if flops is not None else float(self.gate.budget.raw)
        ot_trial.set_user_attr(CONSTRAINT_ATTR, [over])
        ot_trial.set_user_attr("rejected", reason)
        # Objectives of a genome that is never trained: no accuracy, and its real cost when known.
        self._ot_study.tell(ot_trial, [0.0, float(flops if flops is not None else 2 * self.gate.budget.raw)])
        del self._ot_trials[trial_id]  # the Tune trial id is reused for the next sample
        self.rejections_file.parent.mkdir(parents=True, exist_ok=True)
        with self.rejections_file.open("a") as f:
            f.write(json.dumps({"time": time.time(), "params": params, "flops": flops, "reason": reason}) + "\n")
