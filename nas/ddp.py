"""Data-parallel training of one architecture on Ray Train (`hrnas train --ddp N`, and a search trial or
ablation row with `--ddp-per-trial N`, whose Tune trial drives the Ray Train run).

N TorchTrainer workers (gloo on CPU, nccl on CUDA, one GPU each) train one model: rank r takes its slice of every
global batch, in the order one process would see them (pose.loading.ShareOfBatches), and DDP averages the gradients.
Rank 0 alone evaluates and reports a checkpoint after every epoch; Ray Train keeps it under <out>/ray-train, so
rerunning the same command resumes from the latest one. The last checkpoint is also copied to <out>/checkpoint.pt,
where `hrnas evaluate` and `hrnas export` find it. Rank 0's progress lines reach this console through a Ray queue
(workers' own output, and Ray's, only with --verbose), also from the nodes of a cluster.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from contextlib import ExitStack, redirect_stderr
from dataclasses import dataclass
from pathlib import Path

import ray
import ray.train
import torch
from ray.train.torch import TorchConfig, TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback
from ray.util.queue import Queue

from nas.options import say
from nas.ray_common import (
    EXIT_INTERRUPTED,
    ConsoleQueue,
    QueueWriter,
    quiet_console,
    ray_instance,
    recipe_config,
    recipe_from_config,
)
from pose.coco import parse_data, worker_paths
from pose.device import Device, resolve_device
from pose.loading import DEFAULT_LOADING, Loading, Replicas
from pose.train import Recipe, load_data, train, training_result
from search_space.genome import Genome
from supernet.training import CHECKPOINT as SUPERNET_CHECKPOINT
from supernet.training import SpaceSource, SupernetRecipe, train_supernet

BACKENDS = {"cpu": "gloo", "cuda": "nccl"}  # torch.distributed backend per device type
RUN_NAME = "ray-train"  # Ray Train's run folder under --out: the same name resumes
CHECKPOINT = "checkpoint.pt"
# Ray Train's settings, passed on to its controller and workers (a user's own values win): a worker's print() is
# not turned into log records (rank 0's lines go to the console queue as they are); no preemption watcher (its
# start logs an error line on a private Ray, and hrnas does not resume from preemptions); 5 minutes, not 60 s, for
# the workers to start (2 of them took 21 s on the busy 2-core test machine).
RAY_TRAIN_ENV = {
    "RAY_TRAIN_ENABLE_PRINT_PATCH": "0",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "300",
}


@dataclass(frozen=True)
class DdpJob:
    """Everything a worker needs to train its share (picklable: workers load the data themselves)."""

    genome: str  # compact genome
    recipe: dict  # nas.tune_run.recipe_config
    data: str  # --data as typed
    val: str | None
    val_boxes: str | None
    box_threshold: float
    device: Device  # the kind of device (pose.device.planned_device); each worker resolves its own from `amp`
    workers: int
    verbose: bool = False
    loading: Loading = DEFAULT_LOADING  # each rank's data workers and cache budgets
    supernet: SupernetJob | None = None  # train this supernet instead of `genome` (`hrnas supernet train --ddp`)
    sync_bn: bool = False  # BatchNorm statistics over the global batch (`hrnas train --ddp N --sync-bn`, CUDA)
    amp: str = "auto"  # --amp as typed: a worker picks the precision its own GPU computes

    @property
    def checkpoint(self) -> str:
        """The file the training writes in its folder after every epoch."""
        return SUPERNET_CHECKPOINT if self.supernet is not None else CHECKPOINT


@dataclass(frozen=True)
class SupernetJob:
    """A supernet training's space (its YAML text) and options, for the workers."""

    space: str
    options: SupernetRecipe


def check_ddp(workers: int, batch: int, device_arg: str, device: Device) -> None:
    """Bad --ddp input, before Ray starts."""
    if workers < 1:
        raise ValueError(f"--ddp {workers}: the number of workers must be at least 1")
    if batch % workers:
        lower = batch - batch % workers
        raise ValueError(
            f"--batch {batch} does not split evenly between --ddp {workers} workers; use a global batch that is a "
            f"multiple of {workers} (e.g. --batch {lower or workers} or {lower + workers})"
        )
    if device.device.type not in BACKENDS:
        raise ValueError(f"--ddp trains on CPU (gloo) or CUDA (nccl), not on {device.device.type}; use --device cpu")
    if re.fullmatch(r"cuda:\d+", device_arg):
        raise ValueError(f"--ddp gives each worker a GPU of its own, not {device_arg}; use --device cuda")


def check_fits(workers: int, threads: int, gpu: bool, where: str) -> None:
    """An error if the cluster cannot run `workers` workers of `threads` CPUs (and a GPU each) at once."""
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    slots = sum(min(int(node.get("CPU", 0) // threads), int(node.get("GPU", 0)) if gpu else workers) for node in nodes)
    if slots < workers:
        cpus = sum(node.get("CPU", 0) for node in nodes)
        gpus = f" and {sum(node.get('GPU', 0) for node in nodes):g} GPUs" if gpu else ""
        largest = int(max((node.get("CPU", 0) for node in nodes), default=0))
        fix = f"--ddp {slots} or fewer, or fewer --threads" if slots else f"at most --threads {largest}"
        raise ValueError(
            f"--ddp {workers} --threads {threads}: {where} has {cpus:g} CPUs{gpus}, room for {slots} such workers; "
            f"use {fix}"
        )


def train_on_ray(
    job: DdpJob, out: Path | None, address: str | None = None, verbose: bool = False, storage: str | None = None
) -> dict:
    """Train with `job.workers` Ray Train workers and return what pose.train.train returns (from the last
    checkpoint, so a rerun of a finished training returns its result). Ray Train keeps the run's checkpoints in
    `storage` (a folder every node sees, or a URI; default `out`), the last one also copied to `out`."""
    quiet_console(verbose)
    recipe = recipe_from_config(job.recipe)
    gpu = job.device.device.type == "cuda"
    with ExitStack() as stack:
        folder = out if out is not None else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hrnas-")))
        stack.enter_context(ray_instance(folder, address, verbose))
        check_fits(job.workers, recipe.threads, gpu, address or "the local Ray instance")
        console = stack.enter_context(ConsoleQueue())
        trainer = torch_trainer(job, folder, console.queue, storage=storage)
        try:
            result = trainer.fit()
        except ray.train.WorkerGroupError as exc:
            raise_input_error(exc, f"{storage or folder.resolve()}/{RUN_NAME}")
            raise
        except (KeyboardInterrupt, SystemExit):  # Ray Train's Ctrl-C handler aborts the run, then exits
            again = "run the same command again" if out is not None else "use --out to make a training resumable"
            say(f"\ninterrupted: {again} to resume from the last finished epoch")
            raise SystemExit(EXIT_INTERRUPTED) from None
        with result.checkpoint.as_directory() as latest:
            state = torch.load(Path(latest) / job.checkpoint, map_location="cpu", weights_only=True)
            if out is not None:
                shutil.copyfile(Path(latest) / job.checkpoint, out / job.checkpoint)
    return training_result(json.loads(state["history"]), recipe.epochs)


def torch_trainer(
    job: DdpJob, folder: Path, console: Queue | None, callbacks: list | None = None, storage: str | None = None
) -> TorchTrainer:
    """The TorchTrainer of `job`, its Ray Train run named RUN_NAME in `storage` (default `folder`): the same storage
    resumes. On a cluster it must be a folder every node sees, or a URI: each worker uploads its checkpoints there."""
    for name, value in RAY_TRAIN_ENV.items():
        os.environ.setdefault(name, value)
    gpu = job.device.device.type == "cuda"
    return TorchTrainer(
        train_worker,
        train_loop_config={"job": job, "console": console},
        torch_config=TorchConfig(backend=BACKENDS[job.device.device.type]),
        scaling_config=ray.train.ScalingConfig(
            num_workers=job.workers,
            use_gpu=gpu,
            resources_per_worker={"CPU": recipe_from_config(job.recipe).threads, **({"GPU": 1} if gpu else {})},
        ),
        run_config=ray.train.RunConfig(
            name=RUN_NAME,
            storage_path=storage or str(folder.resolve()),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            logging_config=ray.train.LoggingConfig("INFO" if job.verbose else "WARNING"),
            callbacks=callbacks,
        ),
    )


class ReportToTune(TuneReportCallback):
    """Rank 0's epoch records, turned into a trial's metrics (`metrics_of`), passed on to the Tune trial."""

    def __init__(self, metrics_of: Callable[[dict], dict]) -> None:
        super().__init__()
        self.metrics_of = metrics_of

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        super().after_report(run_context, [self.metrics_of(metrics[0]), *metrics[1:]], checkpoint)


def train_in_trial(job: DdpJob, folder: Path, metrics_of: Callable[[dict], dict]) -> None:
    """A search trial or ablation row as a Ray Train run driven by its Tune trial (Ray 2.60 runs a TorchTrainer
    inside a Tune function trainable); its checkpoints live in `folder`, so a resumed trial continues."""
    try:
        torch_trainer(job, folder, None, [ReportToTune(metrics_of)]).fit()
    except ray.train.WorkerGroupError as exc:  # the first worker's error, as a plain trial error
        raise RuntimeError(str(next(iter(exc.worker_failures.values()), exc))) from None


def raise_input_error(failure: ray.train.WorkerGroupError, run_folder: str) -> None:
    """A worker's input error (a checkpoint of another recipe under --out) as the ValueError it is: one line that
    names Ray Train's run folder, not the worker's copy of the checkpoint."""
    for error in failure.worker_failures.values():  # rank -> the exception the worker raised
        if isinstance(error, ValueError):
            raise ValueError(re.sub(r"\S*/hrnas-ddp-[^/\s]+/\S+\.pt", str(run_folder), str(error))) from None


def train_worker(config: dict) -> None:
    """One Ray Train worker: its share of every global batch; rank 0 evaluates, prints and reports the checkpoint."""
    job: DdpJob = config["job"]
    console: Queue | None = config["console"]  # rank 0's stderr; None: nobody watches (a search trial)
    if not job.verbose:  # rank 0's stderr is the console: its lines only, not Ray Train's reports
        logging.getLogger().setLevel(logging.WARNING)
    # The fast path's gradients of depthwise kernels are channels-last, which differ from DDP's bucket views only in
    # the stride of a size-1 dimension (the same memory order): DDP copies them, which is harmless.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    context = ray.train.get_context()
    replicas = Replicas(context.get_world_rank(), context.get_world_size())
    device = worker_device(ray.train.torch.get_device(), job.amp)
    boxes = Path(job.val_boxes) if job.val_boxes else None
    data = load_data(parse_data(job.data, job.val), detections=boxes, box_threshold=job.box_threshold)
    recipe: Recipe = recipe_from_config(job.recipe)
    with tempfile.TemporaryDirectory(prefix="hrnas-ddp-") as tmp:
        latest = ray.train.get_checkpoint()
        if latest is not None:  # every rank loads it: the optimizer state is not broadcast
            latest.to_directory(tmp)

        def report(record: dict) -> None:
            metrics = {k: v for k, v in record.items() if isinstance(v, int | float)}
            checkpoint = ray.train.Checkpoint.from_directory(tmp) if replicas.rank == 0 else None
            ray.train.report(metrics, checkpoint=checkpoint, delete_local_checkpoint_after_upload=False)

        quiet = replicas.rank != 0 or console is None
        with redirect_stderr(sys.stderr if quiet else QueueWriter(console)):
            if job.supernet is None:
                genome = Genome.from_compact(job.genome)
                train(genome, data, recipe, Path(tmp), report, quiet, device, replicas=replicas, loading=job.loading,
                      sync_bn=job.sync_bn)  # fmt: skip
            else:
                source = SpaceSource.from_text(job.supernet.space, "the supernet's space")
                options = job.supernet.options
                train_supernet(source, data, recipe, options, Path(tmp), report, quiet, device, replicas, job.loading)


def worker_device(given: torch.device, amp: str) -> Device:
    """A worker's device and precision, resolved in the worker on the device Ray Train gives it (its GPU, whose
    compute capability decides --amp auto), not on the machine that started the job."""
    return resolve_device(str(given), amp)


def ddp_job(genome: Genome, recipe: Recipe, args, device: Device, loading: Loading = DEFAULT_LOADING) -> DdpJob:
    """The job of `hrnas train --ddp N` from its parsed arguments."""
    data, val, val_boxes = worker_paths(args.data, args.val, args.val_boxes)
    return DdpJob(
        genome.compact(), recipe_config(recipe), data, val, val_boxes, args.box_threshold, device, args.ddp,
        args.verbose, loading, sync_bn=args.sync_bn, amp=args.amp,
    )  # fmt: skip
