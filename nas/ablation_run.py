"""Train every row of an ablation table under one proxy recipe, on Ray Tune, with one MLflow run per row.

A table lives in `<storage>/ablations/<table>/`: `ablation.json` (its options and MLflow parent run) and `tune/`.
Rows run concurrently (one CPU each by default), the most expensive first, so the slowest row never starts last.
Each row is an MLflow child run of a parent run for the table (tags `table`, `row`, `preset`); the parent holds
the finished table (Markdown, CSV, LaTeX) and its plot. A killed run continues with `--resume`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import mlflow
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from ray import tune

from analysis.fidelity import describe_fidelity
from analysis.pareto import Point, pareto_front
from analysis.plots import PlotPoint, pareto_plot
from analysis.runs import child_runs
from analysis.tables import to_terminal, write_tables
from nas.one_shot import ReadySupernet, ensure_supernet
from nas.options import AblationOptions, OneShot, hw_text, say
from nas.progress import SearchProgress
from nas.ray_common import REUSE_ACTORS, quiet_console, recipe_config
from nas.store import tracking_client
from nas.supernet_run import RESULT
from nas.tracking import SearchTracker
from nas.trial import row_trial
from nas.tune_run import (
    before_first_trial,
    check_data,
    fit,
    open_parent,
    ray_session,
    resource_params,
    trial_config,
)
from pose.train import Recipe
from search_space.ablation import AblationTable, ComplexityRow, load_table, table_complexity
from search_space.latency import Setting, measure_latencies
from search_space.space import SearchSpace, SpaceError

COLUMNS = ["row", "params", "published_params", "flops", "published_flops", "ap", "published_ap"]
ONE_SHOT_COLUMNS = [*COLUMNS[:6], "signal", COLUMNS[6]]  # which rows were scored with the supernet


def describe_recipe(recipe: Recipe, data: str) -> str:
    return (
        f"proxy AP: {recipe.epochs} epochs at {hw_text(recipe.input_hw)} on {data} data, batch {recipe.batch}, "
        f"Adam lr {recipe.lr:g}, {recipe.loss} loss, seed {recipe.seed}; "
        "published AP: COCO val2017, 256x192, the papers' 210-epoch recipe, detector boxes"
    )


def describe_one_shot(supernet: ReadySupernet, one_shot: OneShot, recipe: Recipe, data: str) -> str:
    """The line under a one-shot table: both signals, and the supernet's own fidelity (the inherited AP of the
    presets it tracked while it trained, against their published COCO AP)."""
    result = supernet.folder / RESULT
    trained = json.loads(result.read_text()) if result.is_file() else {}
    aps = {k.removeprefix("ap."): v for k, v in trained.items() if k.startswith("ap.") and isinstance(v, float)}
    how = f"{trained['epochs']} epochs, seed {trained['seed']}, " if "epochs" in trained else ""
    fidelity = describe_fidelity(aps) if aps else f"fidelity not recorded (no {RESULT})"
    return (
        f"rows marked inherited: AP with the weights of the supernet {supernet.folder} ({how}space "
        f"{one_shot.space.name!r}), BatchNorm recalibrated on {one_shot.calibration} images; its {fidelity} "
        f"(bench/fidelity.py: over seeds); rows marked trained: {describe_recipe(recipe, data)}"
    )


def rows_in_space(complexity: list[ComplexityRow], space: SearchSpace) -> set[str]:
    """The rows whose genome the supernet's space holds (they are scored with it; the others are trained)."""
    inside = set()
    for c in complexity:
        try:
            space.params_of(c.row.genome)
        except SpaceError:
            continue
        inside.add(c.row.name)
    return inside


def table_latency(table: AblationTable, complexity: list[ComplexityRow]) -> tuple[dict[str, float], str]:
    """Every row's latency (onnxruntime, CPU, batch 1, one thread, at the table's input), measured interleaved, and
    the line that says so."""
    setting = Setting(input_hw=table.input_hw)
    say(f"measuring every row's latency ({setting.describe()}) ...")
    measured = measure_latencies({c.row.name: c.row.genome for c in complexity}, setting)
    spread = max(m.relative_spread for m in measured.values())
    line = (f"latency_ms: {setting.describe()}, the median of interleaved runs on this machine (interquartile range "
            f"at most {spread:.0%} of it)")  # fmt: skip
    return {name: m.median_ms for name, m in measured.items()}, line


def columns_of(inherited: set[str] | None, latency: dict[str, float] | None) -> list[str]:
    """The table's columns: a signal column for one-shot, a latency column with --latency."""
    columns = COLUMNS if inherited is None else ONE_SHOT_COLUMNS
    if latency is not None:
        at = columns.index("published_flops") + 1
        columns = [*columns[:at], "latency_ms", *columns[at:]]
    return columns


def complexity_rows(
    complexity: list[ComplexityRow],
    ap: dict[str, float | None] | None = None,
    inherited: set[str] | None = None,
    latency: dict[str, float] | None = None,
) -> list[dict]:
    """Table rows (printed figures) for the terminal, Markdown, CSV and LaTeX; with `inherited` (one-shot), a
    signal column; with `latency`, the measured latency."""
    ap = ap or {}
    rows = []
    for c in complexity:
        signal = {} if inherited is None else {"signal": "inherited" if c.row.name in inherited else "trained"}
        rows.append(
            {
                **signal,
                "row": c.row.name,
                "params": c.params_printed + ("" if c.params_match in (None, True) else " (≠)"),
                "published_params": c.row.published.params,
                "flops": c.flops_printed + ("" if c.flops_match in (None, True) else " (≠)"),
                "published_flops": c.row.published.flops,
                **({"latency_ms": latency.get(c.row.name)} if latency is not None else {}),
                "ap": ap.get(c.row.name),
                "published_ap": c.row.published.ap,
            }
        )
    return rows


def json_rows(
    complexity: list[ComplexityRow],
    ap: dict[str, float | None],
    runs: dict[str, Run],
    inherited: set[str] | None,
    latency: dict[str, float] | None = None,
) -> list[dict]:
    """One object per row: raw params and FLOPs (the table's convention) beside the printed published figures,
    (one-shot) whether its AP was inherited or trained, and (--latency) its measured latency."""
    out = []
    for c in complexity:
        run = runs.get(c.row.name)
        signal = {} if inherited is None else {"signal": "inherited" if c.row.name in inherited else "trained"}
        out.append(
            {
                **signal,
                "row": c.row.name,
                "preset": c.row.preset,
                "genes": c.row.genes,
                "genome": c.row.genome.canonical_line(),
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
                **({"latency_ms": latency[c.row.name]} if latency else {}),
            }
        )
    return out


class AblationTracker(SearchTracker):
    """Names each child run after its table row and tags it with the table, row and preset."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, table: str) -> None:
        super().__init__(tracking_uri, experiment_id, parent_run_id, {})
        self.table = table

    def orphan_of(self, config: dict) -> list:
        return []  # a table's rows are a fixed grid that Tune restores whole

    def identity(self, config: dict) -> tuple[str | None, dict[str, str]]:
        signal = config.get("signal", "trained")
        tags = {"signal": signal, "inherited": str(signal == "inherited").lower()}
        return config["row"], {"table": self.table, "row": config["row"], "preset": config["preset"], **tags}


def row_configs(complexity: list[ComplexityRow], inherited: set[str]) -> list[dict]:
    """One Tune config per row, the most expensive first (they take longest, so they should start first); a row in
    `inherited` is scored with the supernet."""
    configs = [
        {
            "signal": "inherited" if c.row.name in inherited else "trained",
            "row": c.row.name,
            "preset": c.row.preset,
            "genome": c.row.genome.canonical_line(),
            "flops": c.flops,
            "cost": {"params": c.params, **{f"flops_{k}": v for k, v in c.all_flops.items()}},
        }
        for c in complexity
    ]
    return sorted(configs, key=lambda c: -c["flops"])


def run_table(options: AblationOptions, state: dict, resume: bool) -> dict:
    """Train every row (or continue an interrupted run); returns the summary that `--json` prints."""
    quiet_console(options.verbose)
    table, recipe = options.table, options.recipe
    with before_first_trial("ablation table"):
        complexity = table_complexity(table)
        check_data(options)
        latency = table_latency(table, complexity) if options.args.latency else None
    one_shot = options.one_shot
    inherited = rows_in_space(complexity, one_shot.space) if one_shot else set()
    mlflow.set_tracking_uri(options.tracking_uri)
    client = tracking_client(options.tracking_uri)
    with ray_session(options) as concurrency:
        # the supernet trained, if it must be, in a Ray task before any row
        supernet = ensure_supernet(options, one_shot, "ablation table") if one_shot else None
        line = (
            describe_one_shot(supernet, one_shot, recipe, options.data)
            if supernet
            else describe_recipe(recipe, options.data)
        )
        say(
            f"table {table.name}: {len(table.rows)} rows"
            + (f", {len(inherited)} in the supernet's space" if one_shot else "")
            + f"; {line}"
        )
        experiment_id, parent_id = open_parent(
            client, options, state, f"table {table.name}", *parent_fields(options, supernet)
        )
        if not resume:
            client.log_artifact(parent_id, str(table.path), "table")
        tracker = AblationTracker(options.tracking_uri, experiment_id, parent_id, table.name)
        progress = SearchProgress(len(table.rows), concurrency, None, table.convention)
        config = {**trial_config(options, recipe), "row": tune.grid_search(row_configs(complexity, inherited))}
        if supernet is not None:
            config.update(supernet=str(supernet.folder), calibration=one_shot.calibration)

        def new_tuner(trainable, run_config: tune.RunConfig) -> tune.Tuner:
            return tune.Tuner(
                trainable,
                param_space=config,
                tune_config=tune.TuneConfig(
                    num_samples=1, max_concurrent_trials=concurrency, reuse_actors=REUSE_ACTORS
                ),
                run_config=run_config,
            )

        trainable = row_trial if supernet is not None else None
        fit(options, "ablation table", table.name, new_tuner, tracker, [progress], resume, parent_id, trainable)
    return finish(client, options, complexity, experiment_id, parent_id, line, inherited if one_shot else None, latency)


def parent_fields(options: AblationOptions, supernet: ReadySupernet | None = None) -> tuple[dict, dict]:
    """Tags and params of a table's parent run."""
    table = options.table
    params = {
        "table": table.name,
        "table_file": str(table.path),
        "complexity_input": hw_text(table.input_hw),
        "convention": table.convention,
        "input": options.args.input,
        "epochs": options.recipe.epochs,
        "data": options.data,
        "seed": options.recipe.seed,
        "recipe": json.dumps(recipe_config(options.recipe), sort_keys=True),
        "strategy": options.args.strategy,
        **resource_params(options),
    }
    tags = {"kind": "ablation", "table": table.name, "command": options.command, "strategy": options.args.strategy}
    if supernet is not None:
        params.update(supernet=str(supernet.folder), calibration=options.one_shot.calibration)
        if supernet.run_id:
            tags["supernet_run_id"] = supernet.run_id
    return tags, params


def finish(
    client: MlflowClient,
    options: AblationOptions,
    complexity: list[ComplexityRow],
    experiment_id: str,
    parent_id: str,
    line: str,
    inherited: set[str] | None,
    latency: tuple[dict[str, float], str] | None = None,
) -> dict:
    """The table from the rows' MLflow runs; `inherited`: the rows scored with the supernet (None: no supernet);
    `latency`: each row's measured latency and the line that says how."""
    table = options.table
    runs = {r.data.tags.get("row"): r for r in child_runs(client, experiment_id, parent_id)}
    ap = {
        name: r.data.metrics.get("ap")
        for name, r in runs.items()
        if r.info.status == "FINISHED" and r.data.tags.get("stopped_early") == "false"
    }
    measured, latency_line = latency if latency is not None else (None, "")
    rows = complexity_rows(complexity, ap, inherited, measured)
    columns = columns_of(inherited, measured)
    line = f"{line}; {latency_line}" if latency_line else line
    out = options.folder / "report"
    caption = f"{table.title}. {line}."
    written = write_tables(columns, rows, out / table.name, caption=caption)
    plots = ablation_plot(table, complexity, ap, out)
    for path in [*written.values(), *plots]:
        client.log_artifact(parent_id, str(path), "table")
    failed = [name for name, r in runs.items() if r.info.status == "FAILED"]
    client.log_metric(parent_id, "rows_trained", float(len(ap)), int(time.time() * 1000))
    client.set_terminated(parent_id, "FAILED" if failed else "FINISHED")
    print_table(table, rows, line, columns)
    if failed:
        print(f"rows that failed (no AP): {', '.join(failed)}; their errors are in {options.folder / 'tune'}")
    return {
        "table": table.name,
        "parent_run_id": parent_id,
        "experiment_id": experiment_id,
        "tracking_uri": options.tracking_uri,
        "convention": table.convention,
        "recipe": line,
        "outputs": [str(p) for p in [*written.values(), *plots]],
        "rows": json_rows(complexity, ap, runs, inherited, measured),
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


def print_table(table: AblationTable, rows: list[dict], line: str, columns: list[str] = COLUMNS) -> None:
    unit = f"{table.convention} FLOPs at {table.input_hw[0]}x{table.input_hw[1]}"
    print(f"{table.title}\n({unit}; published: {table.source})")
    print(to_terminal(columns, rows))
    print(line)
    if any("(≠)" in str(r["params"]) + str(r["flops"]) for r in rows):
        print("(≠): our exact figure, printed the paper's way, differs from the published one (docs/complexity.md)")


def complexity_only(table_name: str, latency: bool = False) -> dict:
    """The complexity columns alone (and with `latency` the measured latency): no training, no Ray, no MLflow."""
    table = load_table(table_name)
    complexity = table_complexity(table)
    measured, latency_line = table_latency(table, complexity) if latency else (None, "")
    rows = complexity_rows(complexity, latency=measured)
    line = "proxy AP: not trained (--complexity-only)" + (f"; {latency_line}" if latency else "")
    print_table(table, rows, line, columns_of(None, measured))
    return {
        "table": table.name,
        "convention": table.convention,
        "input": f"{table.input_hw[0]}x{table.input_hw[1]}",
        "rows": json_rows(complexity, {}, {}, None, measured),
    }
