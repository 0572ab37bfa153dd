"""A supernet training's MLflow run (tag kind=supernet), written from the driver only (so SQLite is safe).

The MLflow run is found again by its `out` tag, so a resumed training continues its run; metrics are written from
this process only (per epoch as they come, or, for --ddp, rank 0's records after the run), so SQLite is safe.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from nas.options import code_version

KIND = "supernet"


class SupernetTracker:
    """One MLflow run per supernet --out folder: created with the options as params and the space as an artifact, or
    found again (by its `out` tag) and continued when the training resumes."""

    def __init__(self, tracking_uri: str, experiment: str, storage: Path, out: Path) -> None:
        self.client = MlflowClient(tracking_uri)
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
