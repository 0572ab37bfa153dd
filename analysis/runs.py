"""Searches read back from MLflow: their trials, the Pareto front among them, its hypervolume, table and plot.

The search driver writes its report through these functions and `experiments/report.py` rebuilds it from any
MLflow store, so the figures a user sees later are computed exactly as at the end of the search.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from analysis.pareto import Point, hypervolume, hypervolume_nd, non_dominated, normalised_hypervolume, pareto_front
from analysis.plots import FLOPS_AXIS, LATENCY_AXIS, PlotPoint, pareto_plot
from analysis.tables import LATENCY_COLUMNS, write_tables
from search_space.complexity import format_flops

COST_METRICS = {"flops": "flops", "latency": "predicted_latency_ms"}  # cost objective -> the run metric it reads
PLOT_AXES = {"flops": FLOPS_AXIS, "latency": LATENCY_AXIS}
PARETO_COLUMNS = ["trial_id", "preset", "ap", "ap50", "ar", "flops", "flops_M", "params_M", "genome"]
CONFIRMED_COLUMNS = ["trial_id", "preset", "ap", "confirmed_ap", "ap50", "ar", "flops", "flops_M", "params_M", "genome"]


CONFIRMED_CAPTION = ". ap: inherited from the supernet; confirmed_ap: trained standalone (--confirm), where trained"


def is_confirmation(run: Run) -> bool:
    """A standalone training of a one-shot front member (`--confirm`), not one of the search's own genomes."""
    return run.data.tags.get("confirm") == "true"


@dataclass
class Search:
    """One search (a parent run of kind `search`) and its child runs."""

    parent: Run
    runs: list[Run]  # every child: the search's genomes and the --confirm trainings of its front

    @property
    def run_id(self) -> str:
        return self.parent.info.run_id

    @property
    def name(self) -> str:
        return self.parent.info.run_name or self.run_id

    @property
    def budget_raw(self) -> int | None:
        """The FLOPs budget (raw, the search's convention); None for a latency budget."""
        raw = self.parent.data.params.get("budget_raw")
        return int(raw) if raw not in (None, "None") else None

    @property
    def costs(self) -> tuple[str, ...]:
        """The objectives minimised besides AP (`--objectives`; searches before it: FLOPs)."""
        return tuple(self.parent.data.params.get("objectives", "ap,flops").split(",")[1:])

    @property
    def budget_metric(self) -> str:
        """The run metric the budget limits."""
        return COST_METRICS["latency" if self.parent.data.params.get("budget_kind") == "latency" else "flops"]

    @property
    def limit(self) -> float:
        """The budget, in the units of `budget_metric`."""
        if self.budget_metric == "flops":
            return float(self.budget_raw)
        return float(self.parent.data.params["budget_ms"])

    @property
    def convention(self) -> str:
        return self.parent.data.params.get("convention", "torchstat")

    @property
    def scored(self) -> list[Run]:
        """The search's own genomes (trained, or scored with inherited weights)."""
        return [r for r in self.runs if not is_confirmation(r)]

    @property
    def confirmations(self) -> dict[str, Run]:
        """The finished --confirm trainings, by the genome they confirm."""
        return {
            r.data.tags["genome"]: r
            for r in self.runs
            if is_confirmation(r) and r.info.status == "FINISHED" and "ap" in r.data.metrics
        }

    @property
    def eligible(self) -> list[Run]:
        return eligible_runs(self.scored, self.limit, self.budget_metric)

    @property
    def front(self) -> list[Run]:
        if self.costs == ("flops",):
            return front_runs(self.eligible)
        return front_runs_nd(self.eligible, self.costs)

    def reference(self) -> tuple[float, ...]:
        """The hypervolume's reference point, one value per cost: the budget for the cost it limits, else the largest
        value among the eligible runs (so a search's hypervolume is comparable with another's only in the
        budgeted cost, or where both reach the same largest value)."""
        eligible = self.eligible
        values = []
        for cost in self.costs:
            metric = COST_METRICS[cost]
            if metric == self.budget_metric:
                values.append(self.limit)
            else:
                values.append(max((r.data.metrics[metric] for r in eligible), default=0.0))
        return tuple(values)

    def hypervolume(self, reference_flops: float | None = None) -> float:
        """Normalised hypervolume of the front against (AP 0, the reference of each cost): the volume it dominates
        over the volume of AP 1 at zero cost. Against FLOPs alone, the reference is the budget unless given."""
        if self.costs == ("flops",):
            return normalised_hypervolume(points(self.front), reference_flops or self.limit)
        reference = self.reference()
        if not all(r > 0 for r in reference):
            return 0.0
        vectors = [objective_vector(r, self.costs) for r in self.front]
        return hypervolume_nd(vectors, (0.0, *reference)) / math.prod(reference)


def child_runs(client: MlflowClient, experiment_id: str, parent_id: str) -> list[Run]:
    return client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")


def eligible_runs(runs: list[Run], limit: float, metric: str = "flops") -> list[Run]:
    """Runs that may sit on a front: finished, trained to the end (not stopped by ASHA), within the budget (`metric`
    at most `limit`)."""
    return [
        r
        for r in runs
        if r.info.status == "FINISHED"
        and r.data.tags.get("stopped_early") == "false"
        and "ap" in r.data.metrics
        and r.data.metrics.get(metric, float("inf")) <= limit
    ]


def objective_vector(run: Run, costs: tuple[str, ...]) -> tuple[float, ...]:
    """(-AP, each cost): every objective minimised."""
    return (-run.data.metrics["ap"], *(run.data.metrics[COST_METRICS[c]] for c in costs))


def front_runs_nd(eligible: list[Run], costs: tuple[str, ...]) -> list[Run]:
    """The Pareto-optimal runs for AP and `costs`, in the order of the first cost."""
    keep = non_dominated({r.info.run_id: objective_vector(r, costs) for r in eligible})
    first = COST_METRICS[costs[0]]
    return sorted((r for r in eligible if r.info.run_id in keep), key=lambda r: r.data.metrics[first])


def points(runs: list[Run]) -> list[Point]:
    return [Point(r.info.run_id, r.data.metrics["ap"], r.data.metrics["flops"]) for r in runs]


def front_runs(eligible: list[Run]) -> list[Run]:
    """The Pareto-optimal runs (max AP, min FLOPs), in FLOPs order."""
    front_ids = {p.key for p in pareto_front(points(eligible))}
    return sorted((r for r in eligible if r.info.run_id in front_ids), key=lambda r: r.data.metrics["flops"])


def pareto_rows(front: list[Run], convention: str, confirmations: dict[str, Run] | None = None) -> list[dict]:
    """The front's table rows; with `confirmations`, each member's standalone AP beside its inherited one."""
    confirmed = {genome: run.data.metrics["ap"] for genome, run in (confirmations or {}).items()}
    return [
        {
            "trial_id": r.data.tags.get("trial_id"),
            "preset": r.data.tags.get("preset"),
            "ap": r.data.metrics.get("ap"),
            **({"confirmed_ap": confirmed.get(r.data.tags.get("genome"))} if confirmations else {}),
            "ap50": r.data.metrics.get("ap50"),
            "ar": r.data.metrics.get("ar"),
            "flops": int(r.data.metrics["flops"]),
            "flops_M": format_flops(int(r.data.metrics["flops"]), convention),
            "params_M": f"{r.data.metrics.get('params', 0) / 1e6:.2f}M",
            **{k: r.data.metrics.get(k) for k in LATENCY_COLUMNS if k in r.data.metrics},
            "genome": r.data.tags.get("genome"),
        }
        for r in front
    ]


def write_search_report(search: Search, out: Path, title: str) -> list[Path]:
    """The front as Markdown/CSV/LaTeX tables and the AP-vs-FLOPs plot (PNG and interactive HTML)."""
    out.mkdir(parents=True, exist_ok=True)
    front, confirmations = search.front, search.confirmations
    columns = CONFIRMED_COLUMNS if confirmations else PARETO_COLUMNS
    if "latency" in search.costs:
        columns = [*columns[:-1], *LATENCY_COLUMNS, columns[-1]]
    caption = f"Pareto front: {title}" + (CONFIRMED_CAPTION if confirmations else "")
    rows = pareto_rows(front, search.convention, confirmations)
    written = write_tables(columns, rows, out / "pareto", caption=caption)
    front_keys = {r.data.tags.get("trial_id", r.info.run_id) for r in front}
    plots = []
    for cost in search.costs:  # one plot per cost (pareto.png for the first); the front is the joint one
        metric = COST_METRICS[cost]
        plot_points = [
            PlotPoint(
                r.data.tags.get("trial_id", r.info.run_id),
                r.data.metrics["ap"],
                r.data.metrics[metric],
                r.data.tags.get("preset", ""),
                r.data.tags.get("genome", ""),
            )
            for r in search.eligible
        ]
        name = "pareto" if cost == search.costs[0] else f"pareto-{cost}"
        budget = search.limit if metric == search.budget_metric else None
        what = f"FLOPs ({search.convention})" if cost == "flops" else "predicted latency"
        plots += pareto_plot(
            plot_points, front_keys, budget, f"{title}: AP vs {what}", out / f"{name}.png", out / f"{name}.html",
            axis=PLOT_AXES[cost],
        )  # fmt: skip
    return [*written.values(), *plots]


def load_search(client: MlflowClient, parent_id: str) -> Search:
    parent = client.get_run(parent_id)
    if parent.data.tags.get("kind") != "search":
        raise ValueError(f"run {parent_id} is not a search (its tag 'kind' is {parent.data.tags.get('kind')!r})")
    return Search(parent, child_runs(client, parent.info.experiment_id, parent_id))


def find_searches(client: MlflowClient, experiment: str) -> list[Search]:
    """Every search in the experiment, oldest first."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise ValueError(f"no experiment {experiment!r} in this MLflow store; experiments: {names}")
    parents = client.search_runs(
        [found.experiment_id], filter_string="tags.kind = 'search'", order_by=["attributes.start_time ASC"]
    )
    return [Search(p, child_runs(client, found.experiment_id, p.info.run_id)) for p in parents]


def compare_hypervolumes(searches: list[Search]) -> list[dict]:
    """One row per search: its own normalised hypervolume and one against a common reference (the largest budget),
    so that searches with different budgets can be read side by side."""
    flops_only = [s for s in searches if s.costs == ("flops",) and s.budget_metric == "flops"]
    common = max((s.budget_raw for s in flops_only), default=0)
    rows = []
    for s in searches:
        rows.append(
            {
                "search": s.name,
                "run_id": s.run_id,
                "status": s.parent.info.status,
                "budget": s.parent.data.params.get("budget"),
                "trials": len(s.scored),
                "eligible": len(s.eligible),
                "front": len(s.front),
                "best_ap": max((r.data.metrics["ap"] for r in s.eligible), default=None),
                "hypervolume": s.hypervolume(),
                "hypervolume_common": (
                    hypervolume(points(s.front), (0.0, common)) / common if common and s in flops_only else None
                ),
            }
        )
    return rows


@dataclass(frozen=True)
class TrainedRun:
    """A search trial's trained network, as its MLflow run records it."""

    run_id: str
    genome: str
    checkpoint: Path | None  # None: its weights were not kept


def trained_run(client: MlflowClient, run_id: str | None = None, trial_id: str | None = None) -> TrainedRun:
    """The run of `run_id`, or the search trial of `trial_id`; ValueError naming what is missing."""
    if run_id is not None:
        try:
            run = client.get_run(run_id)
        except Exception:  # MLflow raises its own for an unknown id
            raise ValueError(f"--run {run_id}: no such run in {client.tracking_uri}; give the --storage or "
                             "--tracking-uri of its search") from None  # fmt: skip
    else:
        found = client.search_runs(
            [e.experiment_id for e in client.search_experiments()], filter_string=f"tags.trial_id = '{trial_id}'"
        )
        if not found:
            raise ValueError(f"--trial {trial_id}: no search trial with that id in {client.tracking_uri}; give the "
                             "--storage or --tracking-uri of its search")  # fmt: skip
        run = found[0]
    genome = run.data.tags.get("genome")
    if genome is None:
        raise ValueError(f"run {run.info.run_id} is not a search trial (it has no genome tag)")
    path = run.data.tags.get("checkpoint")
    return TrainedRun(run.info.run_id, genome, Path(path) if path else None)
