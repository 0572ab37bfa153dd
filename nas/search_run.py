"""The search: gate the space, anchor the presets, run the budgeted Optuna searcher on Ray Tune, record the front.

A search lives in `<storage>/<experiment>/`: `search.json` (its options and MLflow parent run), `tune/` (Ray
Tune's experiment state and trial folders) and `rejected.jsonl`. Every input was checked by
`SearchArgs.open` before this module (and Ray, Optuna, MLflow) is imported.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient
from ray import tune

from analysis.pareto import spread
from analysis.runs import COST_METRICS, Search, child_runs, pareto_rows, write_search_report
from analysis.tables import LATENCY_COLUMNS
from nas.front import print_front
from nas.gate import BudgetGate
from nas.one_shot import ReadySupernet, ensure_supernet
from nas.options import SearchOptions, say
from nas.progress import SearchProgress
from nas.ray_common import REUSE_ACTORS, in_task, quiet_console, ray_instance
from nas.schedulers import scheduler_for
from nas.searcher import BudgetedSearcher
from nas.signal_fidelity import state_fidelity
from nas.store import tracking_client
from nas.tracking import ConfirmTracker, SearchTracker
from nas.trial import score_trial
from nas.tune_run import (
    WEIGHTS,
    before_first_trial,
    check_data,
    fit,
    open_parent,
    ray_session,
    resource_params,
    trial_config,
)
from pose.synthetic import default_cache_dir
from search_space.genome import Genome
from search_space.latency import Setting
from search_space.latency_table import LatencyTable, fit_space, load_table
from search_space.presets import PRESETS, load_preset
from search_space.space import SearchSpace, SpaceError

FINISHED_GENOMES = "finished-genomes.json"  # in the search folder, written on --resume for the restored searcher


def anchors_for(space: SearchSpace, gate: BudgetGate) -> tuple[list[dict[str, str]], dict[str, str], list[str]]:
    """The presets in the space that fit the budget, cheapest first, as Optuna points to evaluate first."""
    points, names, notes = [], {}, []
    presets = sorted(PRESETS, key=lambda name: gate.flops(load_preset(name)))
    for name in presets:
        genome = load_preset(name)
        try:
            params = space.params_of(genome)
        except SpaceError as exc:
            notes.append(f"{name}: not in space {space.name!r} ({exc})")
            continue
        if not gate.fits(genome):
            notes.append(f"{name}: over budget ({gate.show(gate.limited(gate.cost(genome)))})")
            continue
        points.append(params)
        names[genome.canonical_line()] = name
    return points, names, notes


def latency_table(options: SearchOptions) -> LatencyTable:
    """The latency table of the search's latency setting. On the CPU: this machine's, cached or fitted now. On a
    GPU: read or fitted by a Ray task that holds a whole GPU (before any trial: nothing else runs on it), on the
    node Ray gives it (the driver's machine may have no GPU)."""
    if options.latency.device != "cuda":
        return table_here(options.space, options.latency)
    with ray_instance(options.folder, options.address, options.verbose):
        return in_task(table_here, options.space, options.latency, resources={"num_cpus": 1, "num_gpus": 1})


def table_here(space: SearchSpace, setting: Setting) -> LatencyTable:
    """This machine's table for `setting`: cached, or fitted now on the space."""
    table = load_table(setting)
    if table is not None:
        say(f"latency: this machine's table for {setting.describe()} ({len(table.parts)} parts, fitted on "
            f"{len(table.fitted_on)} genomes)")  # fmt: skip
        return table
    say(f"latency: no table for {setting.describe()} on this machine yet; fitting one (minutes, once) ...")
    presets = {name: load_preset(name) for name in PRESETS}
    return fit_space(space, setting, presets, progress=say)[0]


def run(options: SearchOptions, state: dict, resume: bool) -> dict:
    """Run (or resume) a search; returns the summary that `--json` prints."""
    quiet_console(options.verbose)
    space, folder = options.space, options.folder
    with before_first_trial("search"):
        table = latency_table(options) if options.latency is not None else None
        gate = BudgetGate(
            options.budget, options.convention, cache_file=default_cache_dir() / "complexity.json", latency=table
        )
        what = options.latency.describe() if options.budget.KIND == "latency" else options.convention
        say(f"{options.budget.describe(what)}; space {space.name!r} ({space.size():,} genomes); objectives: "
            f"{options.args.objectives}")  # fmt: skip
        say("counting the complexity of the cheapest genomes and of the presets (cached after the first time) ...")
        gate.check_space(space)
        anchors, anchor_names, notes = anchors_for(space, gate)
        say(f"anchors (evaluated first): {', '.join(anchor_names.values()) or 'none'}")
        for note in notes:
            say(f"  not an anchor: {note}")
        check_data(options)
    rejections, finished = folder / "rejected.jsonl", folder / FINISHED_GENOMES

    def new_searcher() -> BudgetedSearcher:
        return BudgetedSearcher(
            space, gate, anchors, options.recipe.seed, rejections, sampler=options.sampler,
            limit=options.trials, finished_file=finished, costs=options.costs,
        )  # fmt: skip

    new_searcher().check_portable(folder)  # a sampler that cannot be saved fails here, not in Ray
    mlflow.set_tracking_uri(options.tracking_uri)
    client = tracking_client(options.tracking_uri)
    with ray_session(options) as concurrency:
        supernet = None  # trained, if it must be, in a Ray task before any trial
        if options.one_shot is not None:
            supernet = ensure_supernet(options, options.one_shot, "search")
        experiment_id, parent_id = open_parent(
            client, options, state, f"search {options.budget.text} {space.name}", *parent_fields(options, supernet)
        )
        if not resume:
            client.log_artifact(parent_id, str(options.args.space), "space")
        child_tags = {"strategy": options.strategy, **({"inherited": "true"} if supernet else {})}
        if options.latency is not None:
            child_tags.update(options.latency.tags())
        tracker = SearchTracker(options.tracking_uri, experiment_id, parent_id, anchor_names, child_tags)
        # the running front against the first cost (the final one is the joint front of every cost)
        cost = COST_METRICS[options.costs[0]]
        progress = SearchProgress(options.trials, concurrency, rejections, options.convention, cost)

        config = trial_config(options, options.recipe)
        if options.latency is not None:  # every trained or scored genome's latency is measured too
            config["latency"] = options.latency.as_config()
        if supernet is not None:
            config.update(supernet=str(supernet.folder), calibration=options.one_shot.calibration)

        if resume:  # what the restored searcher must not hand out again (BudgetedSearcher.restore)
            runs = child_runs(client, experiment_id, parent_id)
            finished.write_text(json.dumps([r.data.tags["genome"] for r in runs if r.info.status == "FINISHED"]))

        def new_tuner(trainable, run_config: tune.RunConfig) -> tune.Tuner:
            return tune.Tuner(
                trainable,
                param_space=config,
                tune_config=tune.TuneConfig(
                    search_alg=new_searcher(),
                    num_samples=options.trials,
                    max_concurrent_trials=concurrency,
                    scheduler=scheduler_for(options),
                    reuse_actors=REUSE_ACTORS,  # a worker keeps its loaded supernet for the next genome
                ),
                run_config=run_config,
            )

        trainable = score_trial if supernet is not None else None
        fit(options, "search", options.experiment, new_tuner, tracker, [progress], resume, parent_id, trainable)
        if options.confirm is not None:
            confirm_front(options, client, gate, experiment_id, parent_id, supernet, concurrency, resume)
    return finish(client, options, experiment_id, parent_id, supernet)


def confirm_front(
    options: SearchOptions,
    client: MlflowClient,
    gate: BudgetGate,
    experiment_id: str,
    parent_id: str,
    supernet: ReadySupernet,
    concurrency: int,
    resume: bool,
) -> None:
    """--confirm K: K members of the inherited-AP front, spread over FLOPs, trained standalone as Ray trials (a Tune
    experiment `<experiment>-confirm` beside the search's, resumed with it)."""
    confirm = options.confirm
    front = Search(client.get_run(parent_id), child_runs(client, experiment_id, parent_id)).front
    chosen = spread(front, confirm.count)
    start = "fine-tuned from the supernet's weights" if confirm.start == "inherited" else "from scratch"
    steps = f", {confirm.recipe.max_steps} steps each" if confirm.recipe.max_steps else ""
    say(f"confirming {len(chosen)} of the front's {len(front)} genomes: each trains standalone {start} for "
        f"{confirm.recipe.epochs} epoch(s){steps} (train.py's recipe)")  # fmt: skip
    rows = [
        {
            "genome": r.data.tags["genome"],
            "preset": r.data.tags.get("preset"),
            "confirms": r.info.run_id,
            "flops": int(r.data.metrics["flops"]),
            "cost": gate.cost(Genome.from_compact(r.data.tags["genome"])).metrics(),
            "known": {"inherited_ap": r.data.metrics["ap"]},
        }
        for r in chosen
    ]
    tracker = ConfirmTracker(options.tracking_uri, experiment_id, parent_id, confirm.start)
    progress = SearchProgress(len(rows), concurrency, None, options.convention)
    config = {
        **trial_config(options, confirm.recipe),
        "supernet": str(supernet.folder),
        "start": confirm.start,
        "row": tune.grid_search(rows),
    }

    def new_tuner(trainable, run_config: tune.RunConfig) -> tune.Tuner:
        return tune.Tuner(
            trainable,
            param_space=config,
            tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=concurrency, reuse_actors=REUSE_ACTORS),
            run_config=run_config,
        )

    name = f"{options.experiment}-confirm"
    fit(options, "search's confirmation", name, new_tuner, tracker, [progress], resume, parent_id)


def parent_fields(options: SearchOptions, supernet: ReadySupernet | None = None) -> tuple[dict, dict]:
    """Tags and params of a search's parent run."""
    args = options.args
    params = {
        "budget": args.budget,
        "budget_raw": getattr(options.budget, "raw", None),
        "convention": options.convention,
        "space": options.space.name,
        "space_file": args.space,
        "trials": options.trials,
        "epochs": options.recipe.epochs,
        "input": args.input,
        "data": options.data,
        "seed": options.recipe.seed,
        "scheduler": options.scheduler,
        "strategy": options.strategy,
        "sampler": options.sampler,
        "objectives": options.args.objectives,
        "budget_kind": options.budget.KIND,
        **({"budget_ms": options.budget.ms} if options.budget.KIND == "latency" else {}),
        **(options.latency.tags() if options.latency is not None else {}),
        **resource_params(options),
    }
    tags = {"kind": "search", "command": options.command, "strategy": options.strategy}
    if supernet is not None:
        params.update(supernet=str(supernet.folder), calibration=options.one_shot.calibration)
        if supernet.run_id:
            tags["supernet_run_id"] = supernet.run_id
    return tags, params


def what_ap_means(options: SearchOptions) -> str:
    """One line: what the AP column is (a proxy, and on which data), so that nobody reads it as COCO AP."""
    data = "the synthetic default data (not COCO: it ranks genomes; it is no COCO AP)" if options.source is None \
        else options.data  # fmt: skip
    h, w = options.recipe.input_hw
    if options.one_shot is not None:
        how = "inherited from the supernet's weights (BatchNorm recalibrated), no training of its own"
    else:
        how = f"after {options.recipe.epochs} epoch(s) of training at {h}x{w}"
    return f"ap: COCO OKS keypoint AP on the validation split of {data}, {how}; a search proxy, not a final accuracy"


def keep_front_weights(client: MlflowClient, runs: list, front: list, top: int, weights: Path) -> int:
    """The trained weights of the front's members and of the `top` best trials by AP stay (tag `checkpoint` on
    their runs, for `hrnas export --run`); the others' are deleted. Returns how many stay."""
    finished = [r for r in runs if r.info.status == "FINISHED" and "ap" in r.data.metrics]
    best = sorted(finished, key=lambda r: -r.data.metrics["ap"])[:top]
    keep = {r.info.run_id for r in [*front, *best]}
    kept = 0
    for run in runs:
        path = weights / f"{run.data.tags.get('trial_id', '')}.pt"
        if not path.is_file():
            continue
        if run.info.run_id in keep:
            client.set_tag(run.info.run_id, "checkpoint", str(path))
            kept += 1
        else:
            path.unlink()
    return kept


def finish(
    client: MlflowClient, options: SearchOptions, experiment_id: str, parent_id: str, supernet: ReadySupernet | None
) -> dict:
    folder = options.folder
    search = Search(client.get_run(parent_id), child_runs(client, experiment_id, parent_id))
    runs, eligible, front, confirmations = search.scored, search.eligible, search.front, search.confirmations
    front_ids = {r.info.run_id for r in front}
    for r in runs:
        client.set_tag(r.info.run_id, "pareto", str(r.info.run_id in front_ids).lower())
    scored = {r.info.run_id: r for r in runs}
    for confirmation in confirmations.values():  # the scored run shows its standalone AP too
        confirmed = scored.get(confirmation.data.tags["confirms"])
        if confirmed is not None and "confirmed_ap" not in confirmed.data.metrics:
            ap = confirmation.data.metrics["ap"]
            client.log_metric(confirmed.info.run_id, "confirmed_ap", ap, int(time.time() * 1000))
    kept = keep_front_weights(client, runs, front, options.keep_checkpoints, folder / WEIGHTS)
    rows = pareto_rows(front, options.convention, confirmations if options.confirm else None)
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
        "confirmed": len(confirmations),
    }
    hv = search.hypervolume()
    now = int(time.time() * 1000)
    for key, value in {**counts, "hypervolume": hv}.items():
        client.log_metric(parent_id, key, float(value), now)
    client.set_terminated(parent_id, "FINISHED")
    print(f"\nPareto front: {len(front)} genome(s), non-dominated among the {len(eligible)} trial(s) that finished "
          f"within budget ({counts['trials_failed']} failed; {counts['rejected_over_budget']} sample(s) over budget "
          f"were never trained); normalised hypervolume {hv:.4f}")  # fmt: skip
    print_front(rows, options.space.base.compact())
    print(what_ap_means(options))
    if options.confirm:
        recipe = options.confirm.recipe
        print(f"ap: inherited from the supernet; confirmed_ap: trained standalone ({options.confirm.start}, "
              f"{recipe.epochs} epochs{f' of {recipe.max_steps} steps' if recipe.max_steps else ''}), for "
              f"{len(confirmations)} members spread over FLOPs")  # fmt: skip
    fidelity_line, _ = state_fidelity(client, parent_id, options)
    print(fidelity_line)
    print(f"report: {folder / 'report'} (pareto.md, pareto.csv, pareto.tex, pareto.png, pareto.html)")
    if kept:
        print(f"weights: the trained networks of {kept} trial(s) (the front's, and --keep-checkpoints's best) "
              f"in {folder / WEIGHTS}; export one: hrnas export --run RUN_ID --storage {options.storage}")  # fmt: skip
    view = share_view(client, experiment_id, parent_id, options.costs)
    print_ui_hint(options.tracking_uri, experiment_id, view)
    return {
        "parent_run_id": parent_id,
        "experiment": options.experiment,
        "experiment_id": experiment_id,
        "tracking_uri": options.tracking_uri,
        "budget_raw": getattr(options.budget, "raw", None),
        "budget_ms": getattr(options.budget, "ms", None),
        "objectives": options.args.objectives,
        "convention": options.convention,
        "hypervolume": hv,
        "strategy": options.strategy,
        "supernet": str(supernet.folder) if supernet else None,
        "supernet_reused": supernet.reused if supernet else None,
        **counts,
        "pareto": [
            {
                "trial_id": r.data.tags.get("trial_id"),
                "run_id": r.info.run_id,
                "preset": r.data.tags.get("preset"),
                "genes": {k.removeprefix("gene."): v for k, v in r.data.params.items() if k.startswith("gene.")},
                "genome": r.data.tags.get("genome"),
                "ap": r.data.metrics["ap"],
                **({"confirmed_ap": row.get("confirmed_ap")} if options.confirm else {}),
                "flops": int(r.data.metrics["flops"]),
                "params": int(r.data.metrics.get("params", 0)),
                **{k: r.data.metrics[k] for k in LATENCY_COLUMNS if k in r.data.metrics},
            }
            for r, row in zip(front, rows, strict=True)
        ],
    }


SHARED_VIEW = "mlflow.sharedViewState."  # the MLflow UI reads a view (columns, filter, order) from this experiment tag


def share_view(client: MlflowClient, experiment_id: str, parent_id: str, costs: tuple[str, ...]) -> str:
    """A view of the search's trials for the MLflow UI: its children, best AP first, with AP, the costs, params and
    the Pareto tag as columns (the UI opens it from `?viewStateShareKey=KEY`). Returns KEY."""
    metrics = ["ap", *(COST_METRICS[c] for c in costs), "params"]
    view = {
        "searchFilter": f"tags.`mlflow.parentRunId` = '{parent_id}'",
        "orderByKey": "metrics.`ap`",
        "orderByAsc": False,
        "selectedColumns": [*(f"metrics.`{m}`" for m in dict.fromkeys(metrics)), "tags.`pareto`", "tags.`preset`"],
    }
    key = f"hrnas-{parent_id}"
    client.set_experiment_tag(experiment_id, SHARED_VIEW + key, json.dumps(view))
    return key


def print_ui_hint(uri: str, experiment_id: str, view: str | None = None) -> None:
    """How to open the runs: the MLflow UI of this environment (its absolute path: no venv needs to be active), at
    the search's own view when it has one."""
    page = f"#/experiments/{experiment_id}" + (f"?viewStateShareKey={view}" if view else "/runs")
    if not uri.startswith("sqlite:"):
        print(f"\nOpen the runs: {uri.rstrip('/')}/{page}")
        return
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    command = str(mlflow_bin) if mlflow_bin.is_file() else "mlflow"
    print(f"\nOpen the runs: {command} ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000")
    print(f"  then http://127.0.0.1:5000/{page}")


def _rejections(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
