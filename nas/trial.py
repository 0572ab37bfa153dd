"""One search trial, run by Ray Tune in a worker: the short training of one genome, reported after every epoch.

The trial's checkpoint lives in its Tune trial folder, so a trial restarted by a resumed search continues from
its last finished epoch instead of starting over.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from ray import tune

from nas.ray_common import FAULTS_ENV, injected_fault, recipe_config, recipe_from_config
from pose.coco import parse_data
from pose.device import CPU, Device, planned_device, resolve_device
from pose.train import Data, Recipe, load_data, train
from search_space.genome import Genome
from supernet.model import SuperNet
from supernet.score import ScoringSet, score, scoring_set
from supernet.training import CHECKPOINT, restore

TRAINING_DIR = "training"  # in the Tune trial folder: the trial's checkpoint


def flat_config(config: dict) -> dict:
    """A trial's config with its grid entry `row` (an ablation row: genome, flops, cost, names) merged in."""
    return {**config, **config["row"]} if isinstance(config.get("row"), dict) else config


def train_trial(config: dict, ddp_workers: int = 1) -> None:
    """Tune function trainable: trains config['genome'] and reports metrics after every epoch; with several
    `ddp_workers`, as a Ray Train run of that many workers that split each global batch (nas.ddp)."""
    config = flat_config(config)
    genome = Genome.from_compact(config["genome"])
    recipe = recipe_from_config(config["recipe"])
    fault = injected_fault(config["genome"])
    if fault == "crash":
        raise RuntimeError(f"injected crash ({FAULTS_ENV}) for {config['genome']}")
    if fault == "nan":
        recipe = replace(recipe, lr=math.inf)
    out_dir = Path(tune.get_context().get_trial_dir()) / TRAINING_DIR
    fixed = {"flops": config["flops"], **config["cost"], **measured_latency(config, genome)}

    def metrics_of(record: dict) -> dict:
        metrics = {k: v for k, v in record.items() if isinstance(v, int | float) and v is not None}
        if fault == "poor":
            metrics["ap"] -= 1.0
        if fault == "slow":
            time.sleep(SLOW_FAULT_SECONDS)
        return {**metrics, **fixed, "epochs_total": recipe.epochs, "complete": record["epoch"] >= recipe.epochs}

    if ddp_workers > 1:
        from nas.ddp import DdpJob, train_in_trial  # Ray Train is imported only for such trials

        device = planned_device(config.get("device", "cpu"), config.get("amp", "auto"))  # each worker resolves its own
        job = DdpJob(
            config["genome"], recipe_config(recipe), config["data"], None, None, 0.0, device, ddp_workers,
            amp=config.get("amp", "auto"),
        )  # fmt: skip
        train_in_trial(job, out_dir, metrics_of)  # a worker per GPU on CUDA (--gpus-per-trial N)
        return
    device = resolve_device(config.get("device", "cpu"), config.get("amp", "auto"))  # the trial's own GPU, if any
    data = load_data(parse_data(config["data"]))
    initial = inherited_weights(config["supernet"], genome) if config.get("start") == "inherited" else None
    train(
        genome, data, recipe, out_dir, lambda record: tune.report(metrics_of(record)), quiet=True, device=device,
        initial=initial,
    )  # fmt: skip


SLOW_FAULT_SECONDS = 60.0  # the `slow` fault's wait after each epoch: a trial still running when a test stops it
LATENCY_SECONDS = 1.0  # timed seconds of a trial's latency measurement (on the trial's own CPUs)


def measured_latency(config: dict, genome: Genome) -> dict[str, float]:
    """The genome's measured latency (`latency_ms`) where the search has a latency objective or budget; measured on
    the trial's CPUs, beside whatever else runs on the machine."""
    if "latency" not in config:
        return {}
    from search_space.latency import Setting, measure_latency

    return {"latency_ms": measure_latency(genome, Setting.from_config(config["latency"]), LATENCY_SECONDS).median_ms}


def inherited_weights(folder: str, genome: Genome) -> dict[str, torch.Tensor]:
    """A genome's weights cut from a supernet, to fine-tune from (`--confirm-from inherited`); its BatchNorm
    statistics settle in the first training steps."""
    supernet = restore(Path(folder) / CHECKPOINT, CPU)[0]
    return supernet.extract(genome).state_dict()


@dataclass
class Scorer:
    """What scoring needs besides the genome, loaded once per worker process (Tune reuses the process for the
    next one-shot trial): the supernet, its recipe, the data and the calibration and validation crops."""

    supernet: SuperNet
    recipe: Recipe
    data: Data
    prepared: ScoringSet


_SCORERS: dict[tuple, Scorer] = {}


def scorer_for(folder: str, data: str, calibration: int, threads: int, device: Device) -> Scorer:
    key = (folder, data, calibration, threads, str(device.device))
    if key not in _SCORERS:
        _SCORERS.clear()  # one supernet per worker at a time
        supernet, _, recipe, _, _ = restore(Path(folder) / CHECKPOINT, device)
        recipe = replace(recipe, threads=threads)
        loaded = load_data(parse_data(data))
        _SCORERS[key] = Scorer(supernet, recipe, loaded, scoring_set(loaded, recipe, calibration, device=device))
    return _SCORERS[key]


def score_trial(config: dict) -> None:
    """Tune function trainable of a one-shot search: scores config['genome'] with the supernet's weights
    (BatchNorm recalibrated, COCOeval as train.py scores) and reports once."""
    config = flat_config(config)
    if injected_fault(config["genome"]) == "crash":
        raise RuntimeError(f"injected crash ({FAULTS_ENV}) for {config['genome']}")
    threads = int(config["recipe"]["threads"])
    torch.set_num_threads(threads)
    device = resolve_device(config.get("device", "cpu"), config.get("amp", "auto"))
    scorer = scorer_for(config["supernet"], config["data"], int(config["calibration"]), threads, device)
    start = time.perf_counter()
    stats = score(
        scorer.supernet, Genome.from_compact(config["genome"]), scorer.data, scorer.recipe,
        int(config["calibration"]), device, prepared=scorer.prepared,
    )  # fmt: skip
    metrics = {k: v for k, v in stats.items() if isinstance(v, int | float) and k not in {"flops", "params"}}
    seconds = time.perf_counter() - start
    tune.report(
        {
            **metrics,
            **measured_latency(config, Genome.from_compact(config["genome"])),
            "flops": config["flops"],  # in the search's convention (the score's own is torchstat)
            **config["cost"],
            "score_seconds": seconds,
            "epoch": 1,
            "epochs_total": 1,
            "complete": True,
        }
    )


def row_trial(config: dict) -> None:
    """Tune function trainable of a one-shot ablation table: a row whose genome is in the supernet's space is scored
    with its weights, any other row is trained standalone (config['signal'] says which)."""
    (score_trial if flat_config(config)["signal"] == "inherited" else train_trial)(config)
