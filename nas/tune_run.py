"""The Ray Tune plumbing that a search and an ablation table share.

Start (or join) Ray and check that a trial fits on a node; open the MLflow experiment and the job's parent run;
fit a new Tuner or restore the one in `<folder>/tune`; stop gracefully on Ctrl-C (the job stays resumable and the
runs say they were not finished); then make MLflow agree with Tune's final state.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import ray
import torch
from mlflow.entities import Param
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.logger import JsonLoggerCallback

from nas.options import RunOptions, SearchError, TrialResources, code_version, resume_command, say
from nas.ray_common import EXIT_INTERRUPTED, ray_instance, recipe_config
from nas.tracking import SearchTracker
from nas.trial import TRAINING_DIR, flat_config, train_trial
from pose.train import Recipe, load_data


def trial_config(options: RunOptions, recipe: Recipe) -> dict:
    """What every trial of a job shares: its recipe, data and the device words it resolves where it runs."""
    resources = options.resources
    return {"recipe": recipe_config(recipe), "data": options.data, "device": resources.device, "amp": resources.amp}


def resource_params(options: RunOptions) -> dict:
    """The parent run's record of where trials ran."""
    resources = options.resources
    return {
        "cpus_per_trial": resources.cpus,
        "gpus_per_trial": resources.gpus,
        "device": resources.device,
        "amp": resources.amp,
        "ddp_per_trial": options.ddp_per_trial,
    }


@contextmanager
def before_first_trial(kind: str) -> Iterator[None]:
    """Ctrl-C during the checks before Ray starts (counting a big space takes a while): nothing is recorded yet, so
    one line and exit 130, not a traceback."""
    try:
        yield
    except KeyboardInterrupt:
        say(f"\nThe {kind} was interrupted before it started; nothing was recorded: run the same command again.")
        raise SystemExit(EXIT_INTERRUPTED) from None


def check_data(options: RunOptions) -> None:
    """Load the data every trial will load, once, before any trial (its annotation index is cached for them): a bad
    --data (images missing, annotations that do not parse, no person with keypoints) is one line now, not a
    traceback in every trial."""
    started = time.perf_counter()
    data = load_data(options.source)
    say(f"data: {data.description}: {len(data.train):,} training and {len(data.val):,} validation persons "
        f"({time.perf_counter() - started:.0f} s)")  # fmt: skip


# ---- Ray -------------------------------------------------------------------------------------------------------
@contextmanager
def ray_session(options: RunOptions) -> Iterator[int]:
    """Ray for the job's lifetime: the cluster at --address or a private local instance. Yields the number of
    trials that can run at once; a trial that fits on no node is an error before anything else happens."""
    os.environ.setdefault("TUNE_RESULT_BUFFER_LENGTH", "1")  # results (and MLflow curves) as soon as they exist
    where = options.address or "the local Ray instance"
    with ray_instance(options.folder, options.address, options.verbose):
        slots = trials_at_once(options.resources, where)  # processes of the trial's resources
        if slots < options.ddp_per_trial:
            gpu = ", a GPU" if options.resources.gpus else ""
            raise SearchError(
                f"{options.ddp_per_trial} Ray Train workers per trial of {options.resources.cpus} CPUs{gpu} each "
                f"(--ddp-per-trial or --gpus-per-trial): {where} has room for {slots} such workers; use "
                f"{slots} or fewer"
            )
        yield slots // options.ddp_per_trial


def trials_at_once(resources: TrialResources, where: str) -> int:
    """How many trials the cluster's alive nodes run at once, from each node's CPUs and GPUs (a trial runs on one
    node); an error if no node can run one."""
    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    return concurrency(resources, [(n.get("CPU", 0.0), n.get("GPU", 0.0)) for n in nodes], where)


def concurrency(resources: TrialResources, nodes: list[tuple[float, float]], where: str) -> int:
    """Trials of `resources` that fit at once on nodes of (CPUs, GPUs)."""
    largest = max((cpus for cpus, _ in nodes), default=0.0)
    if resources.cpus > largest:
        raise SearchError(
            f"--cpus-per-trial {resources.cpus}: no node of {where} has that many CPUs (the largest has "
            f"{largest:g}); use --cpus-per-trial {max(1, int(largest))} or fewer, or a cluster with bigger nodes"
        )
    per_node = [cpus // resources.cpus for cpus, _ in nodes]
    if resources.gpus:
        most = max((gpus for _, gpus in nodes), default=0.0)
        if resources.gpus > most:
            raise SearchError(
                f"--gpus-per-trial {resources.gpus:g}: no node of {where} has that many GPUs (the most has {most:g}); "
                "use fewer, or a cluster with GPU nodes"
            )
        # a small tolerance: Ray hands out GPU shares in 1e-4 units, so 3 x 1/3 fits one GPU
        per_node = [min(n, (gpus + 1e-6) // resources.gpus) for n, (_, gpus) in zip(per_node, nodes, strict=True)]
    return max(1, int(sum(per_node)))


# ---- MLflow parent run -------------------------------------------------------------------------------------------
def open_parent(
    client: MlflowClient, options: RunOptions, state: dict, name: str, tags: dict, params: dict
) -> tuple[str, str]:
    """The experiment (created with its artifacts under <storage>/mlartifacts) and the job's parent run: the
    resumed job's (RUNNING again), or a new one with its tags, the code version and its params in one batch."""
    experiment = client.get_experiment_by_name(options.experiment)
    if experiment is None:
        artifacts = (options.storage / "mlartifacts").as_uri()
        experiment_id = client.create_experiment(options.experiment, artifact_location=artifacts)
    else:
        experiment_id = experiment.experiment_id
    if state.get("parent_run_id"):
        client.update_run(state["parent_run_id"], status="RUNNING")
        return experiment_id, state["parent_run_id"]
    run = client.create_run(experiment_id, run_name=name, tags={**tags, "code_version": code_version()})
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    options.args.save(parent_run_id=run.info.run_id, experiment_id=experiment_id)
    return experiment_id, run.info.run_id


# ---- Tune --------------------------------------------------------------------------------------------------------
INTERRUPTED = threading.Event()  # set by the first Ctrl-C of this process


def on_ctrl_c(signum, frame) -> None:
    INTERRUPTED.set()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C stops at once
    say("interrupted: stopping the running trials (Ctrl-C again to stop at once) ...")


class CtrlC(tune.Callback):
    """Ctrl-C asks Tune to stop gracefully: the experiment state is saved with the running trials still RUNNING, so
    `--resume` continues them (Tune's own SIGINT handler is off: it hides that the job was interrupted). The stop
    request is Tune's SIGUSR1, sent from inside Tune's loop, where its handler is known to be installed. The flag
    is module-level because a restored Tuner brings its own (unpickled) copy of this callback."""

    def __init__(self) -> None:
        self.forwarded = False

    def __setstate__(self, state: dict) -> None:
        self.forwarded = False  # a resumed job has not been interrupted yet

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if INTERRUPTED.is_set() and not self.forwarded:
            self.forwarded = True
            signal.raise_signal(signal.SIGUSR1)


WEIGHTS = "checkpoints"  # in the job's folder: `<trial_id>.pt`, the trained weights of its finished trials


def keep_weights(trial_dir: Path, weights: Path, trial_id: str) -> None:
    """A finished trial's trained network (weights and genome, no optimizer state) to `weights/<trial_id>.pt`, for
    `hrnas export --run`; its training checkpoint is freed. The search keeps its front's and its top K's."""
    training = trial_dir / TRAINING_DIR
    checkpoint = training / "checkpoint.pt"
    if checkpoint.is_file():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        weights.mkdir(parents=True, exist_ok=True)
        tmp = weights / f".{trial_id}.tmp"
        torch.save({"model": state["model"], "meta": state["meta"]}, tmp)
        tmp.replace(weights / f"{trial_id}.pt")
    shutil.rmtree(training, ignore_errors=True)


class KeepWeights(tune.Callback):
    """A trial that ended on its own keeps its trained network's weights (small) and frees its checkpoint, so ten
    trials leave megabytes, not hundreds of them. An interrupted trial keeps its checkpoint, to resume from it."""

    def __init__(self, weights: Path) -> None:
        self.weights = weights

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        keep_weights(Path(trial.local_path), self.weights, trial.trial_id)


def fit(
    options: RunOptions,
    kind: str,
    name: str,
    new_tuner: Callable[[Callable, tune.RunConfig], tune.Tuner],
    tracker: SearchTracker,
    callbacks: list[tune.Callback],
    resume: bool,
    parent_id: str,
    trainable: Callable | None = None,
) -> tune.ResultGrid:
    """Run a Tuner named `name` in <folder>/tune (restored if --resume finds it), then make MLflow agree with Tune's
    results. `new_tuner(trainable, run_config)` builds a new one. Trials train their genome (`train_trial`), or run
    the given `trainable` (one-shot scoring: `nas.trial.score_trial` or `row_trial`). An interrupted job marks its
    parent and its unfinished runs KILLED, prints the command that resumes it and exits with 130."""
    if trainable is not None:
        trainable = tune.with_resources(trainable, options.resources.ray_resources())
    elif options.ddp_per_trial > 1:  # the trial drives a Ray Train run whose workers ask for the CPUs; Tune refuses
        # a trial that asks for nothing, so it holds one byte of memory
        trainable = tune.with_resources(
            tune.with_parameters(train_trial, ddp_workers=options.ddp_per_trial), {"cpu": 0, "memory": 1}
        )
    else:
        trainable = tune.with_resources(train_trial, options.resources.ray_resources())
    tune_path = options.folder / "tune"
    tuner = restored(tune_path / name, trainable, kind) if resume else None
    if tuner is None:
        run_config = tune.RunConfig(
            name=name,
            storage_path=str(tune_path),
            # result.json only (Tune reads its results back from it): MLflow holds the curves, so no TensorBoard
            # files, nor the hint to open them
            callbacks=[tracker, *callbacks, CtrlC(), KeepWeights(options.folder / WEIGHTS), JsonLoggerCallback()],
            verbose=1 if options.verbose else 0,  # Tune's own progress table only with --verbose
            failure_config=tune.FailureConfig(max_failures=0),
        )
        tuner = new_tuner(trainable, run_config)
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    previous = signal.signal(signal.SIGINT, on_ctrl_c)
    try:
        results = tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once; --resume starts from Tune's last saved state
        stop_interrupted(tracker, parent_id, kind, options.command)
    except SearchError:  # bad input found while running (too many rejections): the runs end, the line says why
        end_runs(tracker, parent_id, "FAILED")
        raise
    except Exception as exc:  # a crash in the driver: one line, the traceback in the job's folder, runs FAILED
        stop_crashed(tracker, parent_id, kind, options, exc)
    finally:
        signal.signal(signal.SIGINT, previous)
    unfinished = len(results) - results.num_terminated - results.num_errors
    if INTERRUPTED.is_set() or unfinished > 0:
        reconcile(tracker, results, complete_only=True)
        drop_finished_checkpoints(results, options.folder / WEIGHTS)
        stop_interrupted(tracker, parent_id, kind, options.command)
    reconcile(tracker, results)
    drop_finished_checkpoints(results, options.folder / WEIGHTS)
    if len(results) and results.num_errors == len(results):
        end_runs(tracker, parent_id, "FAILED")
        raise SearchError(f"every trial of the {kind} failed ({len(results)}); the first: {first_error(results)} "
                          f"(each trial's error is in its folder under {tune_path / name})")  # fmt: skip
    return results


def first_error(results: tune.ResultGrid) -> str:
    """The last line of the first trial error (the exception itself, not Ray's traceback)."""
    for result in results:
        if result.error is not None:
            lines = [line for line in str(result.error).splitlines() if line.strip()]
            return lines[-1].strip() if lines else type(result.error).__name__
    return "unknown"


def drop_finished_checkpoints(results: tune.ResultGrid, weights: Path) -> None:
    """The checkpoint of every trial that trained to its end, from Tune's final results, turned into its weights:
    `KeepWeights` does it as trials end, but a trial restored by a resumed job may end where it does not see it."""
    for result in results:
        if result.error is None and result.metrics and result.metrics.get("complete") and result.path:
            keep_weights(Path(result.path), weights, result.metrics.get("trial_id", Path(result.path).name))


def reconcile(tracker: SearchTracker, results: tune.ResultGrid, complete_only: bool = False) -> None:
    """Make MLflow agree with Tune's final state (a driver killed between the two is repaired here). After an
    interrupt only trials that ended on their own are finished (`complete_only`)."""
    for result in results:
        trial_id = result.metrics.get("trial_id") if result.metrics else None
        config = flat_config(result.config or {})
        if not trial_id or "genome" not in config:
            continue
        complete = bool(result.metrics.get("complete", False))
        if complete_only and not complete and result.error is None:
            continue
        run_id = tracker.child_run(trial_id, config)
        status = tracker.client.get_run(run_id).info.status
        if result.error is not None:
            if status != "FAILED":
                tracker.client.set_terminated(run_id, "FAILED")
        elif status != "FINISHED":
            tracker.log_epoch(run_id, result.metrics)
            tracker.finish(run_id, result.metrics, "FINISHED", stopped_early=not complete)


def end_runs(tracker: SearchTracker, parent_id: str, status: str) -> None:
    """The parent and every child run still RUNNING end with `status` (`--resume` sets them RUNNING again)."""
    client = tracker.client
    for run in client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and status = 'RUNNING'"
    ):
        client.set_terminated(run.info.run_id, status)
    client.set_terminated(parent_id, status)


def stop_interrupted(tracker: SearchTracker, parent_id: str, kind: str, command: str) -> NoReturn:
    """The parent and every run still RUNNING become KILLED; exit 130."""
    end_runs(tracker, parent_id, "KILLED")
    say(f"\nThe {kind} was interrupted; its finished trials are kept. Continue it with:\n  {resume_command(command)}")
    raise SystemExit(EXIT_INTERRUPTED)


DRIVER_ERROR = "driver-error.txt"  # in the job's folder: the traceback of a crash in the driver
EXIT_CRASHED = 1


def stop_crashed(tracker: SearchTracker, parent_id: str, kind: str, options: RunOptions, exc: Exception) -> NoReturn:
    """A crash in the driver: its runs end FAILED, its traceback goes to the job's folder, and one line says what
    happened and how to go on; exit 1."""
    end_runs(tracker, parent_id, "FAILED")
    path = options.folder / DRIVER_ERROR
    path.write_text("".join(traceback.format_exception(exc)))
    cause = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    say(f"\nThe {kind} stopped on an error in its driver ({cause}; traceback in {path}); its finished trials are "
        f"kept. Once the cause is fixed, continue it with:\n  {resume_command(options.command)}")  # fmt: skip
    raise SystemExit(EXIT_CRASHED)


def restored(path: Path, trainable, kind: str) -> tune.Tuner | None:
    """The Tuner saved in `path`, or None if there is none or it cannot be read (a driver that crashed while Tune
    wrote it): then that state is moved aside and the job goes on with a new Tuner; its finished trials are kept
    in MLflow, and the searcher does not hand them out again."""
    if not tune.Tuner.can_restore(str(path)):
        return None
    try:
        tuner = tune.Tuner.restore(str(path), trainable, resume_unfinished=True)
    except Exception as exc:  # EOFError, UnpicklingError, ...: whatever a half-written state raises
        aside = path.with_name(f"{path.name}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        path.rename(aside)
        say(f"the {kind}'s saved Tune state cannot be read ({type(exc).__name__}); moved it to {aside} and going on "
            "with a new one: finished trials are kept, unfinished ones start again")  # fmt: skip
        return None
    say(f"resuming the {kind} in {path}")
    return tuner
