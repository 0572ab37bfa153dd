"""The supernet a one-shot search scores with: the one given with --supernet, or one trained for the search.

A trained-for-the-search supernet uses the supernet defaults (`hrnas supernet train`'s recipe and sandwich) at the
search's --supernet-epochs, and is cached under `<storage>/supernets/<space>-<key>`, the key hashing the space's
YAML, the data and the recipes: a second search of the same space and data, with another budget, reuses it. A
search interrupted while its supernet trains continues that training (from its last finished epoch) when the
same command runs again.

The supernet trains in a Ray task of its own, started by the job's Ray before any trial: it holds the recipe's
CPUs and, to train on CUDA, a whole GPU, and resolves its device and precision where it runs (a cluster's head may
have no GPU). Its folder must be on storage the driver sees (as every trial's folder): the driver logs the
finished training to MLflow from there.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import ray

from nas.options import OneShot, RunOptions, TrialResources, say
from nas.ray_common import AUGMENT_NAMES, EXIT_INTERRUPTED, in_task
from nas.supernet_run import RESULT, SupernetTracker, supernet_params, train_logged
from pose.coco import parse_data
from pose.device import planned_device, resolve_device
from pose.train import Recipe, load_data
from supernet.sampling import Candidates, candidates
from supernet.training import CHECKPOINT, SpaceSource, SupernetRecipe, supernet_meta, tracked_genomes, train_supernet

SUPERNETS = "supernets"  # under --storage: the supernets searches trained, one folder per key
SUPERNET_EXPERIMENT = "hrnas-supernet"  # the MLflow experiment of supernet trainings (as `hrnas supernet train`)


@dataclass(frozen=True)
class ReadySupernet:
    """A trained supernet for the search: its folder, its MLflow run (when known) and whether it existed before."""

    folder: Path
    run_id: str | None
    reused: bool


def cached_recipes(one_shot: OneShot) -> tuple[Recipe, SupernetRecipe]:
    """The recipes of a supernet trained for a job: supernet.py's defaults unless changed, trained with the
    driver's threads (as `hrnas supernet train`), whatever --cpus-per-trial the scores get."""
    return replace(one_shot.recipe, threads=Recipe().threads), SupernetRecipe()


def cache_key(source: SpaceSource, data: str, recipe: Recipe, options: SupernetRecipe) -> str:
    """What makes two searches' supernets the same: the space's text, the data and both recipes."""
    meta = {**supernet_meta(source, recipe, options), "data": data}
    return hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:12]


def run_id_of(folder: Path) -> str | None:
    result = folder / RESULT
    return json.loads(result.read_text()).get("mlflow_run_id") if result.is_file() else None


def ensure_supernet(options: RunOptions, one_shot: OneShot, kind: str) -> ReadySupernet:
    """The given supernet, the cached one of this space and data, or one trained now in a Ray task (logged to
    MLflow; call it with the job's Ray running). Ctrl-C while it trains: one line saying how to continue, exit
    130."""
    try:
        return _ensure_supernet(options, one_shot)
    except KeyboardInterrupt:
        say(f"\nThe {kind} was interrupted while its supernet trained; the finished epochs are kept: run the same "
            "command again to continue.")  # fmt: skip
        raise SystemExit(EXIT_INTERRUPTED) from None


def _ensure_supernet(options: RunOptions, one_shot: OneShot) -> ReadySupernet:
    if one_shot.supernet is not None:
        return ReadySupernet(one_shot.supernet, run_id_of(one_shot.supernet), reused=True)
    space = one_shot.space
    source = SpaceSource(space, Path(one_shot.space_file).read_text())
    recipe, supernet_options = cached_recipes(one_shot)
    key = cache_key(source, options.data, recipe, supernet_options)
    folder = options.storage / SUPERNETS / f"{space.name}-{key}"
    if (folder / RESULT).is_file():
        say(f"one-shot: reusing the supernet in {folder} (trained for an earlier job of this space and data)")
        return ReadySupernet(folder, run_id_of(folder), reused=True)
    steps = f", {recipe.max_steps} steps each" if recipe.max_steps else ""
    resumed = " (continuing its last run)" if (folder / CHECKPOINT).is_file() else ""
    say(f"one-shot: training the supernet of space {space.name!r} for {recipe.epochs} epoch(s){steps}"
        f"{resumed} into {folder}; later searches and tables of this space and data reuse it")  # fmt: skip
    resources = options.resources
    device = planned_device("cuda" if resources.device == "cuda" else "cpu", resources.amp)
    data = load_data(options.source)
    pool = candidates(source.space, supernet_options.parsed_budget(), len(data.train[0].keypoints))
    tracked = {name: genome.compact() for name, genome in tracked_genomes(source.space, pool).items()}
    tracker = SupernetTracker(options.tracking_uri, SUPERNET_EXPERIMENT, options.storage, folder)
    params = supernet_params(source, pool, recipe, supernet_options, data, device, AUGMENT_NAMES[recipe.augment])
    if device.device.type == "cuda":
        params["amp"] = resources.amp  # as asked: the task resolves it on its GPU
    task = SupernetTask(
        source.text, options.data, recipe, supernet_options, folder, device.device.type, resources.amp, pool
    )

    where: dict = {}

    def train(on_epoch) -> dict:  # the task's epochs are logged when it returns
        result = in_task(train_task, task, resources=task_resources(resources, recipe, largest_node_cpus()))
        where.update(result["where"])
        return result

    summary = train_logged(tracker, source, folder, params, tracked, options.command, {"data": options.data}, train)
    say(f"one-shot: supernet trained in {summary['train_seconds']:.0f} s by a Ray task on {where['device']} "
        f"(amp {where['amp']})")  # fmt: skip
    return ReadySupernet(folder, summary["mlflow_run_id"], reused=False)


@dataclass(frozen=True)
class SupernetTask:
    """What the supernet's training task needs (picklable: the task loads the data itself, where it runs)."""

    space_text: str
    data: str  # absolute paths (nas.options)
    recipe: Recipe
    options: SupernetRecipe
    folder: Path
    device: str  # cpu or cuda: the task resolves it on the device Ray gives it
    amp: str
    pool: Candidates  # the genomes to sample, counted once in the driver


def task_resources(resources: TrialResources, recipe: Recipe, largest: float = math.inf) -> dict[str, float]:
    """What the training task holds: the recipe's threads (at most the `largest` node's CPUs, or it would wait
    forever) and, to train on CUDA, one whole GPU."""
    return {"num_cpus": min(recipe.threads, largest), "num_gpus": 1 if resources.device == "cuda" else 0}


def largest_node_cpus() -> float:
    """The CPUs of the cluster's largest alive node."""
    return max((node.get("Resources", {}).get("CPU", 0.0) for node in ray.nodes() if node.get("Alive")), default=1.0)


def train_task(task: SupernetTask) -> dict:
    """The supernet's training inside its Ray task (`nas.ray_common.in_task`): device and precision resolved here,
    on the task's GPU; Ctrl-C cancels the task, whose finished epochs stay in its checkpoint."""
    device = resolve_device(task.device, task.amp)
    source = SpaceSource.from_text(task.space_text, "the supernet's space")
    data = load_data(parse_data(task.data))
    result = train_supernet(
        source, data, task.recipe, task.options, task.folder, None, False, device, pool=task.pool, track=False
    )
    return {**result, "where": {"pid": os.getpid(), "device": str(device.device), "amp": device.amp_name}}
