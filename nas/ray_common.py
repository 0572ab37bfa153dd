"""What every Ray job of hrnas shares, below the drivers and the trainables (so that none of them imports another
to get it): starting and stopping Ray with the job's runtime environment, a quiet console, and the training recipe
as a JSON-friendly config.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr
from dataclasses import asdict, replace
from pathlib import Path
from typing import TypeVar

import optuna
import ray
from ray.util.queue import Empty, Queue

from pose.dataset import AUGMENTATIONS
from pose.synthetic import default_cache_dir
from pose.train import Recipe

EXIT_INTERRUPTED = 130  # the shell's code for a command ended by Ctrl-C
# Tune's reuse_actors for every job: a finished trial's process (Python, torch and Ray imported; a loaded supernet)
# runs the next trial instead of a new process being started and imported. Every trial seeds and sets up its own
# state; a failed trial's process is never reused. 8 tiny trainings of `hrnas bench truth` took 44 s instead of
# 84 s (bench/RESULTS.md, issue 24).
REUSE_ACTORS = True
# Loggers whose INFO lines are noise to a user of hrnas (shown with --verbose).
RAY_TOKEN_LOGGER = "ray._private.authentication.authentication_token_setup"
NOISY_LOGGERS = ("alembic", "mlflow", "ray", "ray.tune", "ray.train", "filelock")


def quiet_console(verbose: bool) -> None:
    """By default a user sees hrnas's own lines: no MLflow database lines, Ray banners, Tune's configuration box,
    Optuna's study lines. Call it before the first MLflow or Ray call."""
    if verbose:
        return
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    logging.getLogger("ray.tune.tune").setLevel(logging.ERROR)  # its Ctrl-C lines offer Tuner.restore, not --resume
    logging.getLogger(RAY_TOKEN_LOGGER).setLevel(logging.ERROR)  # "token authentication is enabled": as it should be
    # "Failed to fetch metrics ... FileNotFoundError" for every trial that never started (an interrupted job)
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)


# Fault injection for the test suite and for trying the failure path by hand: HRNAS_FAULTS is a `;`-separated
# list of `KIND:PATTERN`; a trial whose compact genome contains PATTERN crashes (`crash`) or trains with an
# infinite learning rate (`nan`: the weights blow up, the loss becomes NaN and training stops with an error), or
# reports its AP lowered by 1 (`poor`: a trial worse than every other, which an early-stopping scheduler must stop),
# or waits a minute after each epoch (`slow`: a trial still running when a test interrupts it); `driver` crashes the
# search's driver when its searcher hands that genome out.
FAULTS_ENV = "HRNAS_FAULTS"


def injected_fault(genome: str) -> str | None:
    """The fault HRNAS_FAULTS injects for this genome (`crash`, `nan`, `poor` in its trial; `driver` in the search's
    driver as it hands the genome out), if any."""
    for item in filter(None, os.environ.get(FAULTS_ENV, "").split(";")):
        kind, _, pattern = item.partition(":")
        if pattern and pattern in genome:
            return kind
    return None


T = TypeVar("T")

AUGMENT_NAMES = {augment: name for name, augment in AUGMENTATIONS.items()}


def recipe_config(recipe: Recipe) -> dict:
    """The recipe as a JSON-friendly trial config (see nas.trial.recipe_from_config)."""
    return {**asdict(recipe), "augment": AUGMENT_NAMES[recipe.augment]}


def recipe_from_config(recipe: dict) -> Recipe:
    fields = dict(recipe)
    fields["input_hw"] = tuple(fields["input_hw"])
    fields["augment"] = AUGMENTATIONS[fields["augment"]]
    return replace(Recipe(), **fields)


def terminate_as_ctrl_c(signum: int, frame) -> None:
    """SIGTERM (`kill`, a batch scheduler's preemption, `timeout`) stops a job as Ctrl-C does (runs KILLED, state
    kept for `--resume`), where Ray's own handler would abort the driver and leave its MLflow runs RUNNING."""
    print("terminated (SIGTERM): stopping as on Ctrl-C ...", file=sys.stderr, flush=True)
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):
        raise KeyboardInterrupt
    handler(signal.SIGINT, frame)


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """`terminate_as_ctrl_c` while inside (the main thread only: Python allows handlers nowhere else)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, terminate_as_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


@contextmanager
def ray_instance(folder: Path, address: str | None, verbose: bool, log_to_driver: bool = False) -> Iterator[None]:
    """The Ray cluster at `address`, or a private local instance whose every process stops on exit (`folder`
    holds the job's temporary files). Workers' output reaches this console with `verbose` or `log_to_driver`."""
    previous_tmpdir = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(folder / "tmp")
    Path(os.environ["TMPDIR"]).mkdir(parents=True, exist_ok=True)
    level = logging.INFO if verbose else logging.WARNING
    log_to_driver = log_to_driver or verbose
    temp = None
    if address:
        os.environ.setdefault("RAY_AUTH_MODE", "token")  # `ray start` turns token auth on
        ray.init(address=address, runtime_env=runtime_env(), log_to_driver=log_to_driver, logging_level=level)
    else:
        # One private instance per job folder, its temp folder (sockets, logs) apart from other Ray users', under
        # /tmp because unix socket paths must stay under 108 bytes. Ray detects the CPUs it may use itself. Its
        # GCS, raylet and agents listen on all interfaces (Ray 2.60 has no switch for that, and turns a node IP of
        # 127.0.0.1 into the host's address); token authentication, on by default, guards them.
        temp = Path("/tmp") / f"hrnas-ray-{hashlib.sha1(str(folder).encode()).hexdigest()[:10]}"
        temp.mkdir(parents=True, exist_ok=True)
        ray.init(
            include_dashboard=False,
            _temp_dir=str(temp),
            runtime_env=runtime_env(),
            log_to_driver=log_to_driver,
            logging_level=level,
            configure_logging=verbose,
        )
    try:
        with sigterm_as_ctrl_c():  # after ray.init, which installs Ray's aborting handler
            yield
    finally:
        ray.shutdown()
        if temp is not None:  # the local instance's sockets and logs (trial errors stay in the Tune folder)
            shutil.rmtree(temp, ignore_errors=True)
        if previous_tmpdir is None:  # the folder may be a temporary one, gone after the job
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous_tmpdir


# Environment variables a trial needs from the driver. On a cluster started with `ray start`, the workers inherit
# the environment of that command, not the driver's: these travel in the job's runtime environment instead.
CACHE_ENV = "HRNAS_CACHE"


# The driver's settings of the collective libraries (NCCL_SOCKET_IFNAME, NCCL_IB_DISABLE, TORCH_NCCL_..., GLOO_...)
# reach every worker: a node's own environment does not have what the user set where they typed the command.
FORWARDED_PREFIXES = ("NCCL_", "TORCH_NCCL_", "GLOO_")


def runtime_env() -> dict:
    """The job's Ray runtime environment: the driver's cache folder (synthetic data, annotation indexes, complexity),
    its fault injection and its NCCL and gloo settings reach every worker on every node. Data paths travel in the
    trial config, absolute."""
    env = {CACHE_ENV: str(default_cache_dir().resolve())}
    if FAULTS_ENV in os.environ:
        env[FAULTS_ENV] = os.environ[FAULTS_ENV]
    env.update({k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIXES)})
    return {"env_vars": env}


class ConsoleQueue:
    """Lines that rank 0 writes to its stderr, printed on this console while the training runs."""

    def __init__(self) -> None:
        self.queue = Queue(actor_options={"num_cpus": 0})
        self.done = threading.Event()
        self.printer = threading.Thread(target=self._print, daemon=True)

    def __enter__(self) -> ConsoleQueue:
        self.printer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.printer.join()
        self.queue.shutdown(force=True)  # no grace period: every line has been printed

    def _print(self) -> None:
        while True:
            try:
                sys.stderr.write(self.queue.get(timeout=0.5))
                sys.stderr.flush()
            except Empty:
                if self.done.is_set():
                    return


class QueueWriter:
    """A text stream whose writes go to a ConsoleQueue (a worker's sys.stderr)."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def write(self, text: str) -> int:
        if text:
            self.queue.put(text)
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def in_task(function: Callable[..., T], *args, resources: dict[str, float]) -> T:
    """`function(*args)` run as a Ray task holding `resources` (num_cpus, num_gpus), its stderr printed on this
    console as it comes; Ctrl-C cancels the task. The function is imported by name where the task runs."""
    with ConsoleQueue() as console:
        ref = ray.remote(_with_console).options(max_retries=0, **resources).remote(console.queue, function, *args)
        try:
            return ray.get(ref)
        except KeyboardInterrupt:
            ray.cancel(ref, force=True)
            raise


def _with_console(queue: Queue, function: Callable[..., T], *args) -> T:
    with redirect_stderr(QueueWriter(queue)):
        return function(*args)
