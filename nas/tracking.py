"""MLflow records of a search, written from the driver only (one writer, so a SQLite store is safe).

One parent run per search; one child run per Tune trial (tag `mlflow.parentRunId`), found again by its `trial_id`
tag, so a resumed search continues the same runs instead of duplicating them. Every gene is a param
`gene.<name>`; metrics are AP/AR, the budget-convention `flops`, `params` and the other conventions under their
own names, with per-epoch curves (step = epoch).
"""

from __future__ import annotations

import math
import time
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from ray import tune

from nas.trial import flat_config
from search_space.genome import Genome

EPOCH_METRICS = (
    *("loss", "ap", "ap50", "ap75", "apm", "apl", "ar", "images_per_second", "train_seconds", "score_seconds"),
    "gpu_peak_mib",  # CUDA trials only
)
FINAL_METRICS = ("ap", "ap50", "ap75", "apm", "apl", "ar", "ar50", "ar75", "arm", "arl", "latency_ms")


def gene_params(genome: Genome) -> dict[str, str]:
    """Every gene as a flat string param `gene.<name>` (what the MLflow UI can filter and compare on)."""
    return {
        f"gene.{name}": ",".join(map(str, v)) if isinstance(v, list) else str(v) for name, v in genome.genes.items()
    }


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class SearchTracker(tune.Callback):
    """Tune callback mirroring every trial into an MLflow child run of the search's parent run."""

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        anchors: dict[str, str],
        child_tags: dict[str, str] | None = None,
    ) -> None:
        self.tracking_uri, self.experiment_id, self.parent_run_id = tracking_uri, experiment_id, parent_run_id
        self.anchors = anchors  # compact genome -> preset name
        self.child_tags = child_tags or {}  # tags of every child run (a search's strategy)
        self._client: MlflowClient | None = None
        self._runs: dict[str, str] = {}
        self._logged_steps: dict[str, set[tuple[str, int]]] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_client"], state["_runs"], state["_logged_steps"] = None, {}, {}
        return state

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    # ---- child runs --------------------------------------------------------------------------------------
    def child_run(self, trial_id: str, config: dict) -> str:
        """The child run of a trial: found by its trial_id tag, or created (with params and complexity)."""
        if trial_id in self._runs:
            return self._runs[trial_id]
        config = flat_config(config)
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.trial_id = '{trial_id}' and tags.`mlflow.parentRunId` = '{self.parent_run_id}'",
        )
        found = found or self.orphan_of(config)
        if found:
            run_id = found[0].info.run_id
            self.client.set_tag(run_id, "trial_id", trial_id)
            self._logged_steps[run_id] = {
                (key, m.step) for key in EPOCH_METRICS for m in self.client.get_metric_history(run_id, key)
            }
        else:
            genome = Genome.from_compact(config["genome"])
            name, own_tags = self.identity(config)
            tags = {"mlflow.parentRunId": self.parent_run_id, "trial_id": trial_id, "genome": config["genome"]}
            run = self.client.create_run(
                self.experiment_id, tags={**tags, **own_tags}, run_name=name or f"trial {trial_id}"
            )
            run_id = run.info.run_id
            now = int(time.time() * 1000)
            self.client.log_batch(
                run_id,
                metrics=[Metric("flops", config["flops"], now, 0)]
                + [Metric(k, v, now, 0) for k, v in {**config["cost"], **config.get("known", {})}.items()],
                params=[Param(k, v) for k, v in gene_params(genome).items()],
            )
            self._logged_steps[run_id] = set()
        self._runs[trial_id] = run_id
        return run_id

    def orphan_of(self, config: dict) -> list:
        """The unfinished run of the same genome that a killed driver left behind, when Tune lost its trial (it
        started after Tune's last save of the search): the new trial of that genome continues that run, so a search
        keeps one run per genome. A search hands each genome out once, so such a run has no live trial."""
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.genome = '{config['genome']}' and tags.`mlflow.parentRunId` = '{self.parent_run_id}' "
            "and attributes.status != 'FINISHED'",
        )

    def identity(self, config: dict) -> tuple[str | None, dict[str, str]]:
        """Run name (None: `trial <id>`) and tags that say what a trial is: a preset anchor or an Optuna sample."""
        preset = self.anchors.get(config["genome"])
        return preset, {"pareto": "false", **self.child_tags, **({"preset": preset} if preset else {})}

    def log_epoch(self, run_id: str, result: dict) -> None:
        epoch = int(result.get("epoch", 0))
        now = int(time.time() * 1000)
        done = self._logged_steps.setdefault(run_id, set())
        metrics = [
            Metric(key, float(result[key]), now, epoch)
            for key in EPOCH_METRICS
            if _finite(result.get(key)) and (key, epoch) not in done
        ]
        if metrics:
            self.client.log_batch(run_id, metrics=metrics)
            done.update((m.key, epoch) for m in metrics)

    def finish(self, run_id: str, result: dict, status: str, stopped_early: bool = False) -> None:
        now = int(time.time() * 1000)
        epoch = int(result.get("epoch", 0))
        done = self._logged_steps.get(run_id, set())
        metrics = [
            Metric(k, float(result[k]), now, epoch)
            for k in FINAL_METRICS
            if _finite(result.get(k)) and (k, epoch) not in done  # an epoch's curve point is its final value
        ]
        tags = [RunTag("stopped_early", str(stopped_early).lower())]
        self.client.log_batch(run_id, metrics=metrics, tags=tags)
        self.client.set_terminated(run_id, status)

    # ---- Tune hooks --------------------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        run_id = self.child_run(trial.trial_id, trial.config)
        if self.client.get_run(run_id).info.status != "RUNNING":  # a trial restarted by a resumed search
            self.client.update_run(run_id, status="RUNNING")

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        self.log_epoch(self.child_run(trial.trial_id, trial.config), result)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        result = trial.last_result or {}
        run_id = self.child_run(trial.trial_id, trial.config)
        self.log_epoch(run_id, result)
        self.finish(run_id, result, "FINISHED", stopped_early=not result.get("complete", False))

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        run_id = self.child_run(trial.trial_id, trial.config)
        error = str(getattr(trial, "error_file", "") or "")
        self.client.set_tag(run_id, "error_file", error)
        self.client.set_terminated(run_id, "FAILED")


class ConfirmTracker(SearchTracker):
    """The --confirm trainings of a one-shot front: child runs of the search tagged `confirm=true`, each naming the
    scored run it confirms and holding that run's inherited AP (`inherited_ap`) beside its own `ap`."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, start: str) -> None:
        super().__init__(tracking_uri, experiment_id, parent_run_id, {})
        self.start = start

    def orphan_of(self, config: dict) -> list:
        return [run for run in super().orphan_of(config) if run.data.tags.get("confirm") == "true"]

    def identity(self, config: dict) -> tuple[str | None, dict[str, str]]:
        tags = {"strategy": "one-shot", "inherited": "false", "confirm": "true", "confirm_from": self.start}
        preset = config.get("preset")
        return f"confirm {preset or config['confirms'][:8]}", {
            **tags,
            "confirms": config["confirms"],
            **({"preset": preset} if preset else {}),
        }
