"""Train every row of an ablation table under one proxy recipe, on Ray Tune, with one MLflow run per row.

A table lives in `<storage>/ablations/<table>/`: `ablation.json` (its options and MLflow parent run) and `tune/`.
Rows run concurrently (one CPU each by default), the most expensive first, so the slowest row never starts last.
Each row is an MLflow child run of a parent run for the table (tags `table`, `row`, `preset`); the parent holds
the finished table (Markdown, CSV, LaTeX) and its plot. A killed run continues with `--resume`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from ray import tune

from analysis.pareto import Point, pareto_front
from analysis.plots import PlotPoint, pareto_plot
from analysis.runs import child_runs
from analysis.tables import to_terminal, write_tables
from nas.driver import SearchError, check_ray_address, check_tracking_uri, local_store, save_state
from nas.progress import SearchProgress
from nas.search_run import create_parent, fit_on_ray, open_experiment, recipe_config
from nas.tracking import SearchTracker
from pose.coco import absolute_data, parse_data
from pose.synthetic import default_cache_dir, ensure_synthetic
from pose.train import Recipe
from search_space.ablation import AblationTable, ComplexityRow, load_table, table_complexity
from search_space.complexity import check_input_size, parse_input_size

COLUMNS = ["row", "params", "published_params", "flops", "published_flops", "ap", "published_ap"]


@dataclass
class AblationOptions:
    table: str
    data: str = "synthetic"
    epochs: int | None = None  # None: the table's own
    input: str = "128x96"
    batch: int = Recipe().batch
    lr: float = Recipe().lr
    seed: int = 0
    address: str | None = None
    tracking_uri: str | None = None
    experiment: str = "hrnas-ablation"
    storage: str = "runs"
    cpus_per_trial: int = 1
    command: str = ""

    @property
    def folder(self) -> Path:
        return Path(self.storage).resolve() / "ablations" / Path(self.table).stem

    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or local_store(self.storage)


def proxy_recipe(table: AblationTable, options: AblationOptions) -> dict:
    """The recipe every row trains with (the search's, at the table's epochs unless --epochs overrides them)."""
    epochs = options.epochs or table.epochs or Recipe().epochs
    fields = recipe_config(options)
    fields["epochs"] = epochs
    return fields


def describe_recipe(recipe: dict, data: str) -> str:
    return (
        f"proxy AP: {recipe['epochs']} epochs at {recipe['input_hw'][0]}x{recipe['input_hw'][1]} on {data} data, "
        f"batch {recipe['batch']}, Adam lr {recipe['lr']:g}, {recipe['loss']} loss, seed {recipe['seed']}; "
        "published AP: COCO val2017, 256x192, the papers' 210-epoch recipe, detector boxes"
    )


def complexity_rows(complexity: list[ComplexityRow], ap: dict[str, float | None] | None = None) -> list[dict]:
    """Table rows (printed figures) for the terminal, Markdown, CSV and LaTeX."""
    ap = ap or {}
    rows = []
    for c in complexity:
        rows.append(
            {
                "row": c.row.name,
                "params": c.params_printed + ("" if c.params_match in (None, True) else " (≠)"),
                "published_params": c.row.published.params,
                "flops": c.flops_printed + ("" if c.flops_match in (None, True) else " (≠)"),
                "published_flops": c.row.published.flops,
                "ap": ap.get(c.row.name),
                "published_ap": c.row.published.ap,
            }
        )
    return rows


def json_rows(complexity: list[ComplexityRow], ap: dict[str, float | None], runs: dict[str, Run]) -> list[dict]:
    """One object per row: raw params and FLOPs (the table's convention) beside the printed published figures."""
    out = []
    for c in complexity:
        run = runs.get(c.row.name)
        out.append(
            {
                "row": c.row.name,
                "preset": c.row.preset,
                "genes": c.row.genes,
                "genome": c.row.genome.compact(),
                "params": c.params,
                "params_printed": c.params_printed,
                "published_params": c.row.published.params,
                "params_match": c.params_match,
                "flops": c.flops,
                "flops_printed": c.flops_printed,
                "published_flops": c.row.published.flops,
                "flops_match": c.flops_match,
                "ap": ap.get(c.row.name),
                "published_ap": c.row.published.ap,
                "run_id": run.info.run_id if run else None,
                "status": run.info.status if run else None,
            }
        )
    return out


class AblationTracker(SearchTracker):
    """Names each child run after its table row and tags it with the table, row and preset."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, table: str) -> None:
        super().__init__(tracking_uri, experiment_id, parent_run_id, {})
        self.table = table

    def identity(self, config: dict) -> tuple[str | None, dict[str, str]]:
        return config["row"], {"table": self.table, "row": config["row"], "preset": config["preset"]}


def _state_file(folder: Path) -> Path:
    return folder / "ablation.json"


def prepare(options: AblationOptions, resume: bool) -> tuple[AblationOptions, dict, AblationTable]:
    """Check everything that needs neither Ray nor MLflow; a resumed table keeps its own options."""
    state: dict = {}
    if resume:
        path = _state_file(options.folder)
        if not path.is_file():
            raise SearchError(f"nothing to resume: {path} does not exist; give the --table and --storage of the run")
        state = json.loads(path.read_text())
        address = options.address
        options = AblationOptions(**state["options"])
        options.address = address or options.address
    elif _state_file(options.folder).is_file():
        raise SearchError(
            f"table {options.table!r} already ran in {options.folder}; add --resume to continue it, or give another "
            "--storage"
        )
    table = load_table(options.table)
    check_input_size(parse_input_size(options.input))
    if options.epochs is not None and options.epochs < 1:
        raise SearchError("--epochs must be at least 1")
    for name in ("cpus_per_trial", "batch"):
        if getattr(options, name) < 1:
            raise SearchError(f"--{name.replace('_', '-')} must be at least 1")
    if not options.lr > 0:
        raise SearchError(f"--lr {options.lr}: the learning rate must be positive")
    options.data = absolute_data(options.data)
    parse_data(options.data)
    check_tracking_uri(options.resolved_tracking_uri())
    if options.address:
        check_ray_address(options.address)
    return options, state, table


def _parent_run(client: MlflowClient, options: AblationOptions, state: dict, table: AblationTable, recipe: dict):
    experiment_id, resumed = open_experiment(client, options.experiment, options.storage, state)
    if resumed:
        return experiment_id, resumed
    params = {
        "table": table.name,
        "table_file": str(table.path),
        "complexity_input": f"{table.input_hw[0]}x{table.input_hw[1]}",
        "convention": table.convention,
        "input": options.input,
        "epochs": str(recipe["epochs"]),
        "data": options.data,
        "seed": str(options.seed),
        "recipe": json.dumps(recipe, sort_keys=True),
    }
    tags = {"kind": "ablation", "table": table.name, "command": options.command}
    run_id = create_parent(client, experiment_id, f"table {table.name}", tags, params)
    client.log_artifact(run_id, str(table.path), "table")
    return experiment_id, run_id


def row_configs(complexity: list[ComplexityRow]) -> list[dict]:
    """One Tune config per row, the most expensive first (they take longest, so they should start first)."""
    configs = [
        {
            "row": c.row.name,
            "preset": c.row.preset,
            "genome": c.row.genome.compact(),
            "flops": c.flops,
            "cost": {"params": c.params, **{f"flops_{k}": v for k, v in c.all_flops.items()}},
        }
        for c in complexity
    ]
    return sorted(configs, key=lambda c: -c["flops"])


def run_table(options: AblationOptions, resume: bool = False) -> dict:
    """Train every row (or continue a killed run); returns the summary that `--json` prints."""
    options, state, table = prepare(options, resume)
    complexity = table_complexity(table)
    recipe = proxy_recipe(table, options)
    if parse_data(options.data) is None:
        ensure_synthetic()
    os.environ.setdefault("HRNAS_CACHE", str(default_cache_dir()))
    folder = options.folder
    tracking_uri = options.resolved_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment_id, parent_id = _parent_run(client, options, state, table, recipe)
    state = {"options": asdict(options), "parent_run_id": parent_id, "experiment_id": experiment_id}
    save_state(folder, state, _state_file(folder))
    print(f"table {table.name}: {len(table.rows)} rows; {describe_recipe(recipe, options.data)}", file=sys.stderr)
    tracker = AblationTracker(tracking_uri, experiment_id, parent_id, table.name)
    concurrency = max(1, (os.cpu_count() or 1) // options.cpus_per_trial)
    progress = SearchProgress(len(table.rows), concurrency, None, table.convention)

    def new_tuner(trainable, run_config: tune.RunConfig) -> tune.Tuner:
        return tune.Tuner(
            trainable,
            param_space={"recipe": recipe, "data": options.data, "row": tune.grid_search(row_configs(complexity))},
            tune_config=tune.TuneConfig(num_samples=1, max_concurrent_trials=concurrency),
            run_config=run_config,
        )

    fit_on_ray(options, "ablation table", table.name, new_tuner, [tracker, progress], resume)
    return finish(client, options, table, complexity, recipe, experiment_id, parent_id)


def finish(
    client: MlflowClient,
    options: AblationOptions,
    table: AblationTable,
    complexity: list[ComplexityRow],
    recipe: dict,
    experiment_id: str,
    parent_id: str,
) -> dict:
    runs = {r.data.tags.get("row"): r for r in child_runs(client, experiment_id, parent_id)}
    ap = {
        name: r.data.metrics.get("ap")
        for name, r in runs.items()
        if r.info.status == "FINISHED" and r.data.tags.get("stopped_early") == "false"
    }
    line = describe_recipe(recipe, options.data)
    rows = complexity_rows(complexity, ap)
    out = options.folder / "report"
    caption = f"{table.title}. {line}."
    written = write_tables(COLUMNS, rows, out / table.name, caption=caption)
    plots = ablation_plot(table, complexity, ap, out)
    for path in [*written.values(), *plots]:
        client.log_artifact(parent_id, str(path), "table")
    failed = [name for name, r in runs.items() if r.info.status == "FAILED"]
    client.log_metric(parent_id, "rows_trained", float(len(ap)), int(time.time() * 1000))
    client.set_terminated(parent_id, "FAILED" if failed else "FINISHED")
    print_table(table, rows, line)
    if failed:
        print(f"rows that failed (no AP): {', '.join(failed)}; their errors are in {options.folder / 'tune'}")
    return {
        "table": table.name,
        "parent_run_id": parent_id,
        "experiment_id": experiment_id,
        "tracking_uri": options.resolved_tracking_uri(),
        "convention": table.convention,
        "recipe": line,
        "outputs": [str(p) for p in [*written.values(), *plots]],
        "rows": json_rows(complexity, ap, runs),
    }


def ablation_plot(table: AblationTable, complexity: list[ComplexityRow], ap: dict, out: Path) -> list[Path]:
    """Proxy AP against exact FLOPs, every point labelled with its row; the rows no other row beats are joined."""
    points = [
        PlotPoint(c.row.name, ap[c.row.name], c.flops, c.row.name, c.row.genome.compact())
        for c in complexity
        if ap.get(c.row.name) is not None
    ]
    front = {p.key for p in pareto_front([Point(p.key, p.ap, p.flops) for p in points])}
    title = f"{table.title} ({table.convention} FLOPs at {table.input_hw[0]}x{table.input_hw[1]})"
    return pareto_plot(
        points, front, None, title, out / f"{table.name}.png", out / f"{table.name}.html", marked="table rows"
    )


def print_table(table: AblationTable, rows: list[dict], line: str) -> None:
    unit = f"{table.convention} FLOPs at {table.input_hw[0]}x{table.input_hw[1]}"
    print(f"{table.title}\n({unit}; published: {table.source})")
    print(to_terminal(COLUMNS, rows))
    print(line)
    if any("(≠)" in str(r["params"]) + str(r["flops"]) for r in rows):
        print("(≠): our exact figure, printed the paper's way, differs from the published one (see the README)")


def complexity_only(options: AblationOptions) -> dict:
    """The complexity columns alone: no training, no Ray, no MLflow."""
    table = load_table(options.table)
    complexity = table_complexity(table)
    rows = complexity_rows(complexity)
    print_table(table, rows, "proxy AP: not trained (--complexity-only)")
    return {
        "table": table.name,
        "convention": table.convention,
        "input": f"{table.input_hw[0]}x{table.input_hw[1]}",
        "rows": json_rows(complexity, {}, {}),
    }
