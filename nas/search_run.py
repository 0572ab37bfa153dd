"""The part of a search that needs Ray, Optuna and MLflow: parent run, Tuner (new or restored), final Pareto front."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import mlflow
import ray
from mlflow.entities import Param
from mlflow.tracking import MlflowClient
from ray import tune

from analysis.runs import PARETO_COLUMNS, Search, child_runs, pareto_rows, write_search_report
from analysis.tables import to_terminal
from nas.driver import SCHEDULERS, SearchOptions, code_version, save_state
from nas.gate import BudgetGate
from nas.progress import SearchProgress
from nas.searcher import BudgetedOptunaSearch
from nas.tracking import SearchTracker
from nas.trial import flat_config, train_trial
from pose.train import Recipe
from search_space.complexity import parse_input_size
from search_space.space import SearchSpace


def recipe_config(options: SearchOptions) -> dict:
    """The fidelity every trial trains at (JSON-friendly; see nas.trial.recipe_from_config)."""
    recipe = Recipe(
        input_hw=parse_input_size(options.input),
        epochs=options.epochs,
        batch=options.batch,
        lr=options.lr,
        threads=options.cpus_per_trial,
    )
    fields = asdict(recipe)
    fields["augment"] = "short"
    fields["seed"] = options.seed
    return fields


def start_ray(options: SearchOptions) -> Path | None:
    """Join the cluster at --address, or start a private local instance; returns the local temp folder."""
    if options.address:
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # `ray start` turns token auth on
        ray.init(address=options.address, log_to_driver=False)
        return None
    # A local instance binds to 127.0.0.1 and keeps its temp folder (sockets, logs) apart from other Ray users:
    # one per search folder, under /tmp because unix socket paths must stay under 108 bytes.
    temp = Path("/tmp") / f"hrnas-ray-{hashlib.sha1(str(options.folder).encode()).hexdigest()[:10]}"
    temp.mkdir(parents=True, exist_ok=True)
    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        _temp_dir=str(temp),
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        configure_logging=False,
    )
    return temp


def open_experiment(client: MlflowClient, name: str, storage: str, state: dict) -> tuple[str, str | None]:
    """The experiment (created with its artifacts under <storage>/mlartifacts) and the parent run a resumed job
    continues (None for a new job)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        artifacts = (Path(storage).resolve() / "mlartifacts").as_uri()
        experiment_id = client.create_experiment(name, artifact_location=artifacts)
    else:
        experiment_id = experiment.experiment_id
    if state.get("parent_run_id"):
        client.update_run(state["parent_run_id"], status="RUNNING")
    return experiment_id, state.get("parent_run_id")


def parent_run(client: MlflowClient, options: SearchOptions, state: dict, space: SearchSpace, budget) -> tuple:
    experiment_id, resumed = open_experiment(client, options.experiment, options.storage, state)
    if resumed:
        return experiment_id, resumed
    params = {
        "budget": options.budget,
        "budget_raw": str(budget.raw),
        "convention": options.convention,
        "space": space.name,
        "space_file": options.space,
        "trials": str(options.trials),
        "epochs": str(options.epochs),
        "input": options.input,
        "data": options.data,
        "seed": str(options.seed),
        "scheduler": options.scheduler,
    }
    tags = {"kind": "search", "command": options.command}
    run_id = create_parent(client, experiment_id, f"search {options.budget} {space.name}", tags, params)
    client.log_artifact(run_id, options.space, "space")
    return experiment_id, run_id


def create_parent(client: MlflowClient, experiment_id: str, name: str, tags: dict, params: dict) -> str:
    """A parent run (search or ablation table) with its tags, the code version and its params in one batch."""
    run = client.create_run(experiment_id, run_name=name, tags={**tags, "code_version": code_version()})
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return run.info.run_id


def execute(
    options: SearchOptions,
    state: dict,
    budget,
    space: SearchSpace,
    gate: BudgetGate,
    anchors: list[dict],
    anchor_names: dict[str, str],
    resume: bool,
) -> dict:
    folder = options.folder
    tracking_uri = options.resolved_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment_id, parent_id = parent_run(client, options, state, space, budget)
    save_state(folder, {"options": asdict(options), "parent_run_id": parent_id, "experiment_id": experiment_id})
    tracker = SearchTracker(tracking_uri, experiment_id, parent_id, anchor_names)
    concurrency = max(1, (os.cpu_count() or 1) // options.cpus_per_trial)
    progress = SearchProgress(options.trials, concurrency, folder / "rejected.jsonl")

    def new_tuner(trainable, run_config: tune.RunConfig) -> tune.Tuner:
        searcher = BudgetedOptunaSearch(space, gate, anchors, options.seed, folder / "rejected.jsonl")
        return tune.Tuner(
            trainable,
            param_space={"recipe": recipe_config(options), "data": options.data},
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=options.trials,
                max_concurrent_trials=concurrency,
                scheduler=SCHEDULERS[options.scheduler](options),
            ),
            run_config=run_config,
        )

    fit_on_ray(options, "search", options.experiment, new_tuner, [tracker, progress], resume)
    return finish(client, options, experiment_id, parent_id, budget, folder)


def fit_on_ray(options, kind: str, name: str, new_tuner: Callable, callbacks: list, resume: bool) -> None:
    """Run a Tuner named `name` in <folder>/tune (restored if --resume finds it) on the cluster at --address or a
    private local Ray, then make MLflow agree with Tune's results. `new_tuner(trainable, run_config)` builds it."""
    trainable = tune.with_resources(train_trial, {"cpu": options.cpus_per_trial})
    tune_path = options.folder / "tune"
    os.environ["TMPDIR"] = str(options.folder / "tmp")
    Path(os.environ["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TUNE_RESULT_BUFFER_LENGTH", "1")  # results (and MLflow curves) as soon as they exist
    ray_temp = start_ray(options)
    try:
        if resume and tune.Tuner.can_restore(str(tune_path / name)):
            print(f"resuming the {kind} in {tune_path / name}", file=sys.stderr)
            tuner = tune.Tuner.restore(str(tune_path / name), trainable, resume_unfinished=True)
        else:
            run_config = tune.RunConfig(
                name=name,
                storage_path=str(tune_path),
                callbacks=callbacks,
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0),
            )
            tuner = new_tuner(trainable, run_config)
        results = tuner.fit()
        reconcile(callbacks[0], results)
    finally:
        ray.shutdown()
        if ray_temp is not None:  # the local instance's sockets and logs (trial errors stay in the Tune folder)
            shutil.rmtree(ray_temp, ignore_errors=True)


def reconcile(tracker: SearchTracker, results) -> None:
    """Make MLflow agree with Tune's final state (a driver killed between the two is repaired here)."""
    for result in results:
        trial_id = result.metrics.get("trial_id") if result.metrics else None
        config = flat_config(result.config or {})
        if not trial_id or "genome" not in config:
            continue
        run_id = tracker.child_run(trial_id, config)
        status = tracker.client.get_run(run_id).info.status
        if result.error is not None:
            if status != "FAILED":
                tracker.client.set_terminated(run_id, "FAILED")
        elif status != "FINISHED":
            tracker.log_epoch(run_id, result.metrics)
            tracker.finish(run_id, result.metrics, "FINISHED", stopped_early=not result.metrics.get("complete", False))


def finish(client: MlflowClient, options: SearchOptions, experiment_id: str, parent_id: str, budget, folder: Path):
    search = Search(client.get_run(parent_id), child_runs(client, experiment_id, parent_id))
    runs, eligible, front = search.runs, search.eligible, search.front
    front_ids = {r.info.run_id for r in front}
    for r in runs:
        client.set_tag(r.info.run_id, "pareto", str(r.info.run_id in front_ids).lower())
    rows = pareto_rows(front, options.convention)
    for path in write_search_report(search, folder / "report", options.experiment):
        client.log_artifact(parent_id, str(path), "pareto")
    rejected = _rejections(folder / "rejected.jsonl")
    counts = {
        "trials_finished": sum(r.info.status == "FINISHED" for r in runs),
        "trials_failed": sum(r.info.status == "FAILED" for r in runs),
        "trials_stopped_early": sum(r.data.tags.get("stopped_early") == "true" for r in runs),
        "rejected_over_budget": sum(1 for r in rejected if r["reason"].startswith("over budget")),
        "rejected_invalid": sum(1 for r in rejected if r["reason"].startswith("invalid")),
        "front_size": len(front),
    }
    hv = search.hypervolume()
    now = int(time.time() * 1000)
    for key, value in {**counts, "hypervolume": hv}.items():
        client.log_metric(parent_id, key, float(value), now)
    client.set_terminated(parent_id, "FINISHED")
    print(f"\nPareto front ({len(front)} of {len(eligible)} finished trials within budget; normalised hypervolume "
          f"{hv:.4f}; {counts['trials_failed']} failed, {counts['rejected_over_budget']} samples rejected over "
          "budget before training):")  # fmt: skip
    print(to_terminal(PARETO_COLUMNS, rows))
    uri = options.resolved_tracking_uri()
    if uri.startswith("sqlite:"):
        print(f"\nOpen the runs: mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000")
        print(f"  then http://127.0.0.1:5000/#/experiments/{experiment_id}/runs")
    else:
        print(f"\nOpen the runs: {uri.rstrip('/')}/#/experiments/{experiment_id}/runs")
    return {
        "parent_run_id": parent_id,
        "experiment": options.experiment,
        "experiment_id": experiment_id,
        "tracking_uri": uri,
        "budget_raw": budget.raw,
        "convention": options.convention,
        "hypervolume": hv,
        **counts,
        "pareto": [
            {
                "trial_id": r.data.tags.get("trial_id"),
                "run_id": r.info.run_id,
                "preset": r.data.tags.get("preset"),
                "genes": {k.removeprefix("gene."): v for k, v in r.data.params.items() if k.startswith("gene.")},
                "genome": r.data.tags.get("genome"),
                "ap": r.data.metrics["ap"],
                "flops": int(r.data.metrics["flops"]),
                "params": int(r.data.metrics.get("params", 0)),
            }
            for r in front
        ],
    }


def _rejections(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
