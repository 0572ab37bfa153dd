"""A supernet training's MLflow run (tag kind=supernet), written from the driver only (so SQLite is safe).

The MLflow run is found again by its `out` tag, so a resumed training continues its run; metrics are written from
this process only (per epoch as they come, or, for --ddp, rank 0's records after the run), so SQLite is safe.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag

from analysis.curves import plot_supernet_curves
from nas.options import code_version, say
from nas.store import tracking_client
from pose.device import Device
from pose.train import Data, Recipe, training_result
from supernet.sampling import Candidates
from supernet.training import CHECKPOINT, SpaceSource, SupernetRecipe

KIND = "supernet"
RESULT = "result.json"  # in a supernet's folder: the summary and per-epoch history of its training


class SupernetTracker:
    """One MLflow run per supernet --out folder: created with the options as params and the space as an artifact, or
    found again (by its `out` tag) and continued when the training resumes."""

    def __init__(self, tracking_uri: str, experiment: str, storage: Path, out: Path) -> None:
        self.client, self.tracking_uri = tracking_client(tracking_uri), tracking_uri
        found = self.client.get_experiment_by_name(experiment)
        if found is None:
            artifacts = (storage / "mlartifacts").as_uri()
            self.experiment_id = self.client.create_experiment(experiment, artifact_location=artifacts)
        else:
            self.experiment_id = found.experiment_id
        self.out = str(out.resolve())
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.kind = '{KIND}' and tags.out = '{self.out}'", max_results=1
        )
        self.run_id = runs[0].info.run_id if runs else None

    def start(self, name: str, params: dict, tags: dict, space_text: str) -> str:
        if self.run_id is not None:
            self.client.update_run(self.run_id, status="RUNNING")
            return self.run_id
        all_tags = {"kind": KIND, "out": self.out, "code_version": code_version(), **tags}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        self.run_id = run.info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()])
        self.client.log_text(self.run_id, space_text, "space.yaml")
        return self.run_id

    def epoch(self, record: dict) -> None:
        """An epoch's numbers as metrics at step = epoch (loss, ap.<genome>, images/s, seconds)."""
        now = int(time.time() * 1000)
        metrics = [
            Metric(key, float(value), now, record["epoch"])
            for key, value in record.items()
            if key != "epoch" and isinstance(value, int | float) and math.isfinite(value)
        ]
        self.client.log_batch(self.run_id, metrics=metrics)

    def missing_epochs(self, history: list[dict]) -> list[dict]:
        """The records of `history` not logged yet (a --ddp training logs after the run)."""
        logged = {m.step for m in self.client.get_metric_history(self.run_id, "loss")}
        return [record for record in history if record["epoch"] not in logged]

    def finish(self, files: list[Path], status: str = "FINISHED") -> None:
        for path in files:
            self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, status)

    def tag(self, tags: dict) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])


def supernet_params(
    source: SpaceSource,
    pool: Candidates,
    recipe: Recipe,
    options: SupernetRecipe,
    data: Data,
    device: Device,
    augment: str,
    ddp: int = 1,
) -> dict:
    """A supernet run's params: the space and its sampling, the recipe and where it trained."""
    return {
        "space": source.space.name,
        "sampled_genomes": len(pool.genomes),
        "largest": pool.largest.compact(),
        "smallest": pool.smallest.compact(),
        "input": f"{recipe.input_hw[0]}x{recipe.input_hw[1]}",
        **{k: getattr(recipe, k) for k in ("epochs", "batch", "lr", "loss", "seed", "max_steps")},
        "augment": augment,
        "sandwich": options.sandwich,
        "distill": options.distill,
        "budget": options.budget,
        "calibration": options.calibration,
        "data": data.description,
        "device": str(device.device),
        "amp": device.amp_name,
        "ddp": ddp,
    }


def train_logged(
    tracker: SupernetTracker,
    source: SpaceSource,
    out: Path,
    params: dict,
    tracked: dict[str, str],
    command: str,
    data_args: dict,
    train: Callable[[Callable[[dict], None]], dict],
) -> dict:
    """Run `train(on_epoch)` (which trains into `out`, resuming from its checkpoint) inside the supernet's MLflow run:
        per-epoch metrics, then the checkpoint, the curves and result.json as artifacts. `tracked`: the genomes scored
    after each epoch (name -> compact genome). `data_args` ({data, val}) is
        written to <out>/data.json (what `hrnas supernet eval` scores on by default). Returns the summary."""
    run_id = tracker.start(f"supernet-{source.space.name}", params, {"command": command}, source.text)
    say(f"MLflow run {run_id} of the supernet ({tracker.tracking_uri})")
    out.mkdir(parents=True, exist_ok=True)
    (out / "data.json").write_text(json.dumps(data_args))
    try:
        result = train(tracker.epoch)
        for record in tracker.missing_epochs(result["history"]):  # a --ddp training logs after the run
            tracker.epoch(record)
    except BaseException:
        tracker.finish([], "KILLED")
        raise
    epochs = int(params["epochs"])
    result = {**training_result(result["history"], epochs), "tracked": tracked}
    # the checkpoint stays in its folder alone (tag `checkpoint`); MLflow gets the small files
    tracker.tag({"checkpoint": str((out / CHECKPOINT).resolve())})
    files = []
    if any(key.startswith("ap.") for key in result):
        files.append(plot_supernet_curves(result["history"], out / "curves.png", f"supernet of {source.space.name}"))
    summary = {
        **{k: v for k, v in result.items() if k != "history"},
        "space": source.space.name,
        "sampled_genomes": params["sampled_genomes"],
        "seed": params["seed"],
        "out": str(out),
        "mlflow_run_id": run_id,
    }
    (out / RESULT).write_text(json.dumps({**summary, "history": result["history"]}, indent=1))
    tracker.finish([*files, out / RESULT])
    return summary
