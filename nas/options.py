"""The options of a search and of an ablation table: what the user typed, checked once, turned into typed values.

`SearchArgs` / `AblationArgs` hold the command line as typed (JSON-friendly: they are saved with the job, so a
resumed job rebuilds exactly the same options); `.parse()` checks every input that needs neither Ray nor MLflow
and returns `SearchOptions` / `AblationOptions`, whose budget, space, table, data and training recipe are parsed
values. Nothing downstream parses or checks them again.
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import ClassVar

import torch

from pose.coco import DataSource, absolute_data, parse_data
from pose.device import AMPS, resolve_device
from pose.train import Recipe
from search_space.ablation import AblationTable, load_table
from search_space.budget import Budget, LatencyBudget, parse_cost_budget
from search_space.complexity import CONVENTIONS, parse_input_size
from search_space.latency import LatencyError, Setting, parse_setting
from search_space.space import DEFAULT_SPACE, SearchSpace

SEARCH_FIDELITY = replace(Recipe(), epochs=1, batch=16, lr=1e-2)
"""The recipe every search trial trains at: train.py's recipe, cut to one epoch so that a search of ten trials
fits in minutes. Half the batch gives a one-epoch trial twice the optimiser steps, and a slightly lower peak rate
keeps those steps stable; the ranking of genomes, not their final AP, is what a trial must get right."""

SCHEDULERS = ("fifo", "asha")  # built in nas.schedulers (Ray is imported only once the inputs are known good)
STRATEGIES = ("trials", "one-shot")  # how a genome gets its AP: its own short training, or inherited supernet weights
SAMPLERS = ("auto", "tpe", "nsga2")  # built in nas.searcher; auto: TPE for trials, NSGA-II for one-shot
ONE_SHOT_EVALUATIONS = 150  # genomes a one-shot search scores by default
SEARCH_SUPERNET_EPOCHS = 3  # the supernet a one-shot search trains when it is given none (supernet.py's default)
OBJECTIVES = ("ap,flops", "ap,latency", "ap,flops,latency")  # AP and the costs a search minimises
CONFIRM_STARTS = ("scratch", "inherited")  # --confirm-from: train from PyTorch's init or the supernet's weights


class SearchError(ValueError):
    """A search or table that cannot start (or resume); the message says what is wrong and how to fix it."""


def hw_text(input_hw: tuple[int, int]) -> str:
    return f"{input_hw[0]}x{input_hw[1]}"


def local_store(storage: str | Path) -> str:
    """The default MLflow store: one SQLite file per storage folder, shared by searches and ablations."""
    return f"sqlite:///{Path(storage).resolve() / 'mlflow.db'}"


def describe_command(argv: list[str], script: str) -> str:
    """The command line as the user would retype it, kept with the runs: `python experiments/<script>.py ...` when
    the script was run, else `hrnas <script> ...` (a pip install has no experiments/ folder)."""
    ran_script = Path(sys.argv[0]).name == f"{script}.py"
    program = f"python experiments/{script}.py" if ran_script else f"hrnas {script}"
    return " ".join([program, *(shlex.quote(a) for a in argv)])


def resume_command(command: str) -> str:
    """The command that continues an interrupted job: its own command line with --resume."""
    return command if command.endswith(" --resume") else f"{command} --resume"


ROOT = Path(__file__).resolve().parents[1]


def code_version() -> str:
    """The git revision of a checkout, or the installed package's version (a pip install is no checkout, and the
    git repository around its site-packages, if any, is somebody else's)."""
    if (ROOT / ".git").exists():
        try:
            done = subprocess.run(
                ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, timeout=10
            )
            if done.stdout.strip():
                return done.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        return f"hrnas {importlib.metadata.version('hrnas')}"
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# ---- checks of what is outside the process ------------------------------------------------------------------
def check_tracking_uri(uri: str) -> None:
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise SearchError(
                f"cannot reach the MLflow tracking server at {uri} ({exc}); start it (e.g. `mlflow server --host "
                "127.0.0.1 --port 5000`) or leave out --tracking-uri to use the local SQLite store"
            ) from None
    elif uri.startswith("sqlite:///"):
        parent = Path(uri.removeprefix("sqlite:///")).parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SearchError(f"cannot create the folder of the MLflow store {uri} ({exc})") from None
    elif "://" in uri or uri.startswith("file:"):
        raise SearchError(f"--tracking-uri {uri!r}: use http(s)://HOST:PORT (an MLflow server) or sqlite:///PATH")


def check_ray_address(address: str) -> None:
    """Fail fast (5 s) on an address nobody listens on, rather than after Ray's long connection retries."""
    if address == "auto":
        return
    host_port = address.split("://", 1)[-1]
    host, sep, port = host_port.rpartition(":")
    if not sep or not port.isdigit():
        raise SearchError(f"--address {address!r}: expected HOST:PORT of a Ray head (e.g. 127.0.0.1:6379) or 'auto'")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise SearchError(
            f"cannot reach a Ray cluster at {address} ({exc}); start one with `ray start --head --node-ip-address "
            "127.0.0.1` (it prints the address) or leave out --address to run on a local Ray instance"
        ) from None


@dataclass(frozen=True)
class TrialResources:
    """What Ray reserves for each trial (CPUs, a share of a GPU) and where the trial trains, checked once.

    `device` is the word each trial resolves where it runs: Ray shows a trial only the GPUs it reserved, so `cuda`
    is the trial's own GPU (never `cuda:N`), and `auto` means CUDA exactly when the trial asks for a GPU.
    """

    cpus: int = 1
    gpus: float = 0.0
    device: str = "cpu"  # cpu | cuda | mps, as the trial resolves it
    amp: str = "auto"

    def ray_resources(self) -> dict[str, float]:
        return {"cpu": self.cpus, "gpu": self.gpus} if self.gpus else {"cpu": self.cpus}

    def describe(self) -> str:
        gpus = f", {self.gpus:g} GPU" if self.gpus else ""
        return f"{self.cpus} CPU{gpus} per trial, training on {self.device} (amp {self.amp})"


TRIAL_DEVICES = ("auto", "cpu", "cuda", "mps")


def parse_resources(cpus: int, gpus: float, device: str, amp: str, local: bool) -> TrialResources:
    """Check --cpus-per-trial, --gpus-per-trial, --device and --amp together, before Ray starts. On a local Ray
    the driver's machine is the trials' machine, so a GPU it lacks is an error here, not in every trial."""
    _at_least_one(cpus_per_trial=cpus)
    if device.startswith("cuda:"):
        raise SearchError(f"--device {device}: Ray gives each trial its own GPU; use --device cuda")
    if device not in TRIAL_DEVICES:
        raise SearchError(f"--device {device!r}: choose one of {', '.join(TRIAL_DEVICES)}")
    if amp not in AMPS:
        raise SearchError(f"--amp {amp!r}: choose one of {', '.join(AMPS)}")
    if not gpus >= 0:
        raise SearchError(f"--gpus-per-trial {gpus:g}: must be 0 (CPU trials) or more, e.g. 0.5 or 1")
    if gpus > 1 and gpus != int(gpus):
        raise SearchError(f"--gpus-per-trial {gpus:g}: a share above one GPU must be whole (1, 2, ...), or at most 1")
    word = device if device != "auto" else ("cuda" if gpus else "cpu")
    asked = f"--gpus-per-trial {gpus:g}" if gpus else f"--device {device}"
    if local and word == "cuda" and not torch.cuda.is_available():
        raise SearchError(
            f"{asked}: this machine has no CUDA device (or torch is built without CUDA) for the "
            "local Ray to give to trials; leave out --gpus-per-trial and --device cuda to train on CPU, or give the "
            "--address of a Ray cluster with GPU nodes"
        )
    if word == "cuda" and not gpus:
        raise SearchError(
            "--device cuda: a trial sees no GPU unless it reserves one; add --gpus-per-trial 1 (or 0.5 to put two "
            "trials on each GPU)"
        )
    if word != "cuda" and gpus:
        raise SearchError(f"--gpus-per-trial {gpus:g} with --device {device}: the trials would leave their GPUs idle")
    if local or word == "cpu":  # what the trials will resolve is known here (a cluster's GPUs are not)
        try:
            resolve_device(word, amp)
        except ValueError as exc:
            raise SearchError(str(exc)) from None
    return TrialResources(cpus, float(gpus), word, amp)


def trial_workers(resources: TrialResources, ddp_per_trial: int) -> tuple[TrialResources, int]:
    """What each Ray Train worker of a trial holds, and how many workers a trial has. A trial of several GPUs
    (--gpus-per-trial 2) trains as a Ray Train run of one worker per GPU, each with --cpus-per-trial CPUs: a single
    process would leave all but one GPU idle. CPU trials have --ddp-per-trial workers (1: the trial trains alone)."""
    if resources.gpus > 1:
        gpus = int(resources.gpus)
        if ddp_per_trial not in (1, gpus):
            raise SearchError(
                f"--ddp-per-trial {ddp_per_trial} --gpus-per-trial {resources.gpus:g}: a trial of several GPUs has "
                f"one worker per GPU; leave --ddp-per-trial out"
            )
        return replace(resources, gpus=1.0), gpus
    if ddp_per_trial > 1 and resources.device != "cpu":
        raise SearchError(
            f"--ddp-per-trial {ddp_per_trial} on GPUs: give each trial {ddp_per_trial} GPUs with --gpus-per-trial "
            f"{ddp_per_trial} (one worker per GPU) and leave --ddp-per-trial out"
        )
    return resources, ddp_per_trial


def check_latency_gpu(setting: Setting | None, place: dict) -> dict:
    """`place` (parse_place's), checked against --latency-device cuda: each trial times its genome on its GPU
    before training it, which must then be a GPU of its own (a share would time it beside another trial's
    training)."""
    resources: TrialResources = place["resources"]
    if setting is not None and setting.device == "cuda" and resources.gpus < 1:
        raise SearchError(
            f"--latency-device cuda with --gpus-per-trial {resources.gpus:g}: each trial times its genome on a GPU "
            "it holds alone; use --gpus-per-trial 1 (or more)"
        )
    return place


DRIVER_LOCK = "driver.lock"  # in a job's folder: held (flock) by the driver while it runs
_HELD_LOCKS: dict[Path, object] = {}  # this process's open lock files, held until it exits


def take_driver_lock(folder: Path, kind: str) -> None:
    """One driver per job folder: a second (a --resume while the first still runs) gets one line naming the first.
    The lock is the kernel's (flock), so a killed driver releases it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / DRIVER_LOCK).resolve()
    if path in _HELD_LOCKS:  # this process runs the job already (a command called twice in one process)
        return
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise SearchError(
            f"the {kind} in {folder} is running now ({holder}); wait for it to end, or stop it (Ctrl-C, or kill "
            "-INT its pid) and then --resume"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
    handle.flush()
    _HELD_LOCKS[path] = handle


def _at_least_one(**values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise SearchError(f"--{name.replace('_', '-')} must be at least 1")


# ---- what search and ablation share --------------------------------------------------------------------------
@dataclass(kw_only=True)
class RunArgs:
    """The command-line values every training job (search or table) has, as typed."""

    data: str = "synthetic"
    input: str = hw_text(Recipe().input_hw)
    seed: int = 0
    cpus_per_trial: int = 1
    gpus_per_trial: float = 0.0
    device: str = "auto"
    amp: str = "auto"
    ddp_per_trial: int = 1  # Ray Train workers per trial (each of cpus_per_trial CPUs), sharing each global batch
    address: str | None = None
    tracking_uri: str | None = None
    storage: str = "runs"
    experiment: str = ""
    verbose: bool = False
    command: str = ""

    STATE_FILE = "job.json"  # in `folder`: the args and the MLflow parent run of the job
    KIND = "job"
    ELSEWHERE = "another --storage"  # how to start a second job of the same kind instead of resuming
    FILES: ClassVar[tuple[str, ...]] = ()  # fields naming a file, made absolute when they exist

    def absolute(self) -> RunArgs:
        """A copy with its paths absolute: trials, and a resumed job, may run in another working directory."""
        given = {name: getattr(self, name) for name in self.FILES if getattr(self, name) is not None}
        files = {name: str(Path(value).resolve()) for name, value in given.items() if Path(value).exists()}
        return replace(self, data=absolute_data(self.data), storage=str(Path(self.storage).resolve()), **files)

    @property
    def folder(self) -> Path:
        """The job's folder (state file, Tune folder), known before the inputs are parsed (for --resume)."""
        raise NotImplementedError

    def parse(self) -> RunOptions:
        raise NotImplementedError

    def open(self, resume: bool) -> tuple[RunOptions, dict]:
        """The checked options and the saved state (empty for a new job). Every input is checked before the job's
        folder is looked at; a resumed job keeps the options it was started with (its Ray address may move)."""
        path = self.folder / self.STATE_FILE
        args, state = self.absolute(), {}
        if resume:
            if not path.is_file():
                raise SearchError(
                    f"nothing to resume: {path} does not exist; give the --storage and --experiment (or --table) of "
                    f"the interrupted {self.KIND}"
                )
            state = json.loads(path.read_text())
            known = {f.name for f in fields(self)}
            args = type(self)(**{k: v for k, v in state["options"].items() if k in known})
            self.check_same_as(args)
            args.address, args.verbose = self.address or args.address, self.verbose
        options = args.parse()
        if not resume and path.is_file():
            raise SearchError(
                f"a {self.KIND} already exists in {self.folder}; add --resume to continue it, or choose "
                f"{self.ELSEWHERE}"
            )
        take_driver_lock(self.folder, self.KIND)
        return options, state

    # What a resumed job may be given anew: where Ray runs, how much it prints, the command line it records.
    RESUME_SAFE: ClassVar[frozenset[str]] = frozenset({"address", "verbose", "command", "keep_checkpoints"})

    def check_same_as(self, saved: RunArgs) -> None:
        """--resume with an option (given on the command line, so not at its default) that differs from the saved
        job's: one line listing the differences."""
        given, defaults = self.absolute(), {f.name: f.default for f in fields(self)}
        differences = []
        for f in fields(self):
            mine, theirs = getattr(given, f.name), getattr(saved, f.name)
            required = defaults[f.name] is MISSING  # always on the command line (--budget, --table)
            if f.name in self.RESUME_SAFE or mine == theirs or (mine == defaults[f.name] and not required):
                continue
            flag = "--" + f.name.replace("_", "-")
            differences.append(f"{flag} {mine} (started with {theirs})")
        if differences:
            raise SearchError(
                f"--resume continues the {self.KIND} as it was started, but this command changes "
                f"{'; '.join(differences)}: leave those options out (or repeat the old values), or start a new "
                f"{self.KIND} with {self.ELSEWHERE}"
            )

    def save(self, **state: str) -> None:
        """Write the state atomically (a kill mid-write leaves the old file)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / self.STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"options": asdict(self), **state}, indent=1))
        tmp.replace(path)

    @property
    def workers_per_trial(self) -> tuple[int, str]:
        """Ray Train workers per trial and the option that set them: one per GPU of --gpus-per-trial above 1, else
        --ddp-per-trial (see `trial_workers`)."""
        if self.gpus_per_trial > 1:
            return int(self.gpus_per_trial), f"--gpus-per-trial {self.gpus_per_trial:g}"
        return self.ddp_per_trial, f"--ddp-per-trial {self.ddp_per_trial}"

    def parse_recipe(self, base: Recipe, epochs: int, batch: int, lr: float) -> Recipe:
        """The training recipe: `base` with this job's crop, epochs, batch, rate, seed and threads."""
        _at_least_one(epochs=epochs, batch=batch, ddp_per_trial=self.ddp_per_trial)
        if not lr > 0:
            raise SearchError(f"--lr {lr}: the learning rate must be positive")
        workers, flag = self.workers_per_trial
        if batch % workers:
            raise SearchError(
                f"--batch {batch} does not split evenly between the {workers} workers of {flag}; use a global batch "
                f"that is a multiple of {workers}"
            )
        input_hw = parse_input_size(self.input)
        return replace(
            base, input_hw=input_hw, epochs=epochs, batch=batch, lr=lr, seed=self.seed, threads=self.cpus_per_trial
        )

    def parse_place(self) -> dict:
        """Data, tracking store, Ray address and trial resources, checked; the fields of `RunOptions` besides the
        recipe."""
        resources = parse_resources(
            self.cpus_per_trial, self.gpus_per_trial, self.device, self.amp, local=self.address is None
        )
        resources, workers = trial_workers(resources, self.ddp_per_trial)
        data = absolute_data(self.data)
        source = parse_data(data)
        tracking_uri = self.tracking_uri or local_store(self.storage)
        check_tracking_uri(tracking_uri)
        if self.address:
            check_ray_address(self.address)
        return {
            "data": data,
            "source": source,
            "tracking_uri": tracking_uri,
            "address": self.address,
            "storage": Path(self.storage).resolve(),
            "experiment": self.experiment,
            "resources": resources,
            "ddp_per_trial": workers,
            "verbose": self.verbose,
            "command": self.command,
        }


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """A training job's checked inputs; `folder` holds its state file and Tune folder."""

    args: RunArgs = field(repr=False)  # saved with the job; a resumed job parses them again
    data: str  # absolute paths (trials run in other working directories)
    source: DataSource | None  # None: synthetic data
    recipe: Recipe
    tracking_uri: str
    address: str | None
    storage: Path
    experiment: str
    resources: TrialResources
    ddp_per_trial: int
    verbose: bool
    command: str

    @property
    def folder(self) -> Path:
        return self.args.folder


# ---- one-shot: what search and ablation share ----------------------------------------------------------------
@dataclass(kw_only=True)
class OneShotArgs(RunArgs):
    """How a job scores genomes with a supernet (`--strategy one-shot`), as typed."""

    strategy: str = "trials"
    supernet: str | None = None  # a trained supernet folder (None: train one, cached under --storage)
    supernet_epochs: int = SEARCH_SUPERNET_EPOCHS  # without --supernet: the supernet's training
    supernet_steps: int | None = None  # ... cut to this many steps per epoch (None: whole epochs)
    calibration: int = 256  # BatchNorm calibration images per scored genome

    def check_strategy(self) -> None:
        if self.strategy not in STRATEGIES:
            raise SearchError(f"--strategy {self.strategy!r}: choose one of {', '.join(STRATEGIES)}")
        if self.supernet is not None and self.strategy != "one-shot":
            raise SearchError("--supernet: only one-shot scoring uses a supernet; add --strategy one-shot")

    def parse_one_shot(self, space: SearchSpace, space_file: str, batch: int | None, lr: float | None) -> OneShot:
        """The supernet the job scores with: the given folder (checked: a checkpoint of this space and data), or
        the cached one it trains first, with supernet.py's recipe at --supernet-epochs (`batch`, `lr`: None for
        that recipe's)."""
        _at_least_one(calibration=self.calibration)
        if self.ddp_per_trial > 1:
            raise SearchError("--ddp-per-trial: one-shot scoring trains nothing; leave it out")
        if self.gpus_per_trial > 1:
            raise SearchError(
                f"--gpus-per-trial {self.gpus_per_trial:g}: a one-shot evaluation runs on one GPU; use 1 (or a share "
                "such as 0.25)"
            )
        folder = None
        if self.supernet is None:
            _at_least_one(supernet_epochs=self.supernet_epochs)
            if self.supernet_steps is not None:
                _at_least_one(supernet_steps=self.supernet_steps)
        else:
            folder = Path(self.supernet).resolve()
            check_supernet(folder, space, absolute_data(self.data))
        base = replace(Recipe(), max_steps=self.supernet_steps)
        recipe = self.parse_recipe(
            base, self.supernet_epochs, base.batch if batch is None else batch, base.lr if lr is None else lr
        )
        return OneShot(folder, self.calibration, space, space_file, recipe)


# ---- search ---------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class SearchArgs(OneShotArgs):
    budget: str
    space: str = str(DEFAULT_SPACE)
    trials: int = 10
    epochs: int = SEARCH_FIDELITY.epochs
    input: str = hw_text(SEARCH_FIDELITY.input_hw)
    batch: int | None = None  # None: the strategy's (trials: SEARCH_FIDELITY's; one-shot: the supernet's, Recipe's)
    lr: float | None = None
    convention: str = "torchstat"
    scheduler: str = "fifo"
    experiment: str = "hrnas-search"
    sampler: str = "auto"
    evaluations: int = ONE_SHOT_EVALUATIONS  # one-shot: genomes scored (trials: --trials)
    objectives: str = OBJECTIVES[0]
    latency_runtime: str = "ort"  # the latency a latency objective or budget means: runtime, device, batch, threads
    latency_device: str = "cpu"
    latency_batch: int = 1
    latency_threads: int = 1
    confirm: int = 0  # one-shot: front members trained standalone afterwards
    confirm_from: str = "scratch"
    confirm_epochs: int | None = None  # None: train.py's
    keep_checkpoints: int = 0  # trained weights kept besides the front's: the K best by AP
    confirm_steps: int | None = None  # ... cut to this many steps per epoch (None: whole epochs)
    STATE_FILE = "search.json"
    KIND = "search"
    ELSEWHERE = "another --experiment or --storage"
    FILES = ("space", "supernet")

    @property
    def folder(self) -> Path:
        return Path(self.storage).resolve() / self.experiment

    def parse(self) -> SearchOptions:
        budget = parse_cost_budget(self.budget)
        costs, latency = self.parse_objectives(budget)
        if self.convention not in CONVENTIONS:
            raise SearchError(f"--convention {self.convention!r}: choose one of {', '.join(CONVENTIONS)}")
        if self.scheduler not in SCHEDULERS:
            raise SearchError(f"--scheduler {self.scheduler!r}: choose one of {', '.join(SCHEDULERS)}")
        self.check_strategy()
        if self.sampler not in SAMPLERS:
            raise SearchError(f"--sampler {self.sampler!r}: choose one of {', '.join(SAMPLERS)}")
        space = SearchSpace.from_file(self.space)
        _at_least_one(trials=self.trials, evaluations=self.evaluations)
        if self.strategy == "one-shot" and self.scheduler != "fifo":
            raise SearchError(
                f"--scheduler {self.scheduler}: a one-shot score has no epochs to stop early at; use fifo"
            )
        one_shot = self.parse_one_shot(space, self.space, self.batch, self.lr) if self.strategy == "one-shot" else None
        # trials train at SEARCH_FIDELITY; a one-shot search's own supernet (if it is given none) at supernet.py's
        # defaults
        recipe = (
            one_shot.recipe
            if one_shot
            else self.parse_recipe(
                SEARCH_FIDELITY,
                self.epochs,
                SEARCH_FIDELITY.batch if self.batch is None else self.batch,
                SEARCH_FIDELITY.lr if self.lr is None else self.lr,
            )
        )
        return SearchOptions(
            args=self,
            confirm=self.parse_confirm(one_shot is not None, recipe),
            budget=budget,
            costs=costs,
            latency=latency,
            space=space,
            trials=self.evaluations if one_shot else self.trials,
            convention=self.convention,
            scheduler=self.scheduler,
            recipe=recipe,
            strategy=self.strategy,
            sampler=self.sampler if self.sampler != "auto" else ("nsga2" if one_shot else "tpe"),
            one_shot=one_shot,
            keep_checkpoints=self.parse_keep(),
            **check_latency_gpu(latency, self.parse_place()),
        )

    def parse_keep(self) -> int:
        if self.keep_checkpoints < 0:
            raise SearchError(f"--keep-checkpoints {self.keep_checkpoints}: give 0 or more (the K best trials' weights "
                              "are kept besides the front's)")  # fmt: skip
        return self.keep_checkpoints

    def parse_objectives(self, budget: Budget | LatencyBudget) -> tuple[tuple[str, ...], Setting | None]:
        """The costs minimised besides AP, and the latency setting where latency is an objective or the budget."""
        if self.objectives not in OBJECTIVES:
            raise SearchError(f"--objectives {self.objectives!r}: choose one of {', '.join(OBJECTIVES)}")
        costs = tuple(self.objectives.split(",")[1:])
        if budget.KIND == "latency" and "latency" not in costs:
            raise SearchError(
                f"--budget {budget.text} is a latency budget, but --objectives {self.objectives} has no latency: use "
                "--objectives ap,latency (or ap,flops,latency), or a FLOPs budget such as 0.5GFLOPs"
            )
        if "latency" not in costs:
            return costs, None
        try:
            setting = parse_setting(
                self.latency_runtime, self.latency_device, self.latency_batch, self.latency_threads,
                local=self.address is None,
            )  # fmt: skip
        except LatencyError as exc:
            raise SearchError(str(exc).replace("--", "--latency-", 1)) from None
        return costs, setting

    def parse_confirm(self, one_shot: bool, recipe: Recipe) -> Confirm | None:
        """--confirm K: train.py's recipe (its epochs unless --confirm-epochs; the supernet's batch and rate)."""
        if self.confirm < 0:
            raise SearchError(f"--confirm {self.confirm}: give the number of front members to train (0: none)")
        if self.confirm_from not in CONFIRM_STARTS:
            raise SearchError(f"--confirm-from {self.confirm_from!r}: choose one of {', '.join(CONFIRM_STARTS)}")
        if self.confirm == 0:
            return None
        if not one_shot:
            raise SearchError(
                "--confirm: a trials search's front is already trained; add --strategy one-shot, or train a front "
                "member with `hrnas train --genome ...`"
            )
        epochs = Recipe().epochs if self.confirm_epochs is None else self.confirm_epochs
        if self.confirm_steps is not None:
            _at_least_one(confirm_steps=self.confirm_steps)
        _at_least_one(confirm_epochs=epochs)
        trained = replace(recipe, epochs=epochs, max_steps=self.confirm_steps)
        return Confirm(self.confirm, self.confirm_from, trained)


def supernet_space(folder: Path) -> SearchSpace:
    """The space a --supernet folder was trained on (read from its checkpoint's meta, not its weights)."""
    from supernet.training import CHECKPOINT, SpaceSource, read_meta

    if not (folder / CHECKPOINT).is_file():
        raise SearchError(
            f"--supernet {folder}: no {CHECKPOINT} there; give the --out folder of `hrnas supernet train`, or leave "
            "out --supernet to train one for this job"
        )
    return SpaceSource.from_text(read_meta(folder / CHECKPOINT)["space"], f"{folder} (space)").space


def check_supernet(folder: Path, space: SearchSpace, data: str) -> None:
    """--supernet must hold a supernet of the job's space trained on the job's data."""
    trained = supernet_space(folder)
    if (trained.base, trained.choices) != (space.base, space.choices):
        raise SearchError(
            f"--supernet {folder} was trained on space {trained.name!r}, not on this search's space {space.name!r}: "
            "pass that space's YAML with --space, or leave out --supernet to train a supernet of this space"
        )
    saved = folder / "data.json"
    trained_on = json.loads(saved.read_text()).get("data", "synthetic") if saved.is_file() else "synthetic"
    if absolute_data(trained_on) != data:
        raise SearchError(
            f"--supernet {folder} was trained on --data {trained_on}, this search scores on --data {data}: give the "
            "same --data, or leave out --supernet to train a supernet on this data"
        )


@dataclass(frozen=True)
class OneShot:
    """How a one-shot job gets its supernet and scores genomes with it."""

    supernet: Path | None  # a trained supernet's folder; None: train (or reuse) the cached one (`recipe`)
    calibration: int  # BatchNorm calibration images per scored genome
    space: SearchSpace  # the supernet's space
    space_file: str  # its YAML (the cache key hashes its text)
    recipe: Recipe  # the training of the supernet the job trains when it is given none


@dataclass(frozen=True)
class Confirm:
    """--confirm: the front members trained standalone after a one-shot search, and how."""

    count: int  # front members, spread over FLOPs
    start: str  # scratch | inherited (fine-tuned from the supernet's weights)
    recipe: Recipe  # train.py's, with the search's crop, batch, rate and seed


@dataclass(frozen=True, kw_only=True)
class SearchOptions(RunOptions):
    """`recipe`: the trials' training, or for one-shot the training of the supernet the search trains if given none."""

    budget: Budget | LatencyBudget
    space: SearchSpace
    trials: int  # genomes to train (trials) or score (one-shot)
    convention: str
    scheduler: str
    strategy: str = "trials"
    sampler: str = "tpe"
    one_shot: OneShot | None = None  # set exactly for --strategy one-shot
    confirm: Confirm | None = None  # --confirm K (one-shot only)
    costs: tuple[str, ...] = ("flops",)  # minimised besides AP (--objectives)
    latency: Setting | None = None  # what latency means, where it is an objective or the budget
    keep_checkpoints: int = 0  # trained weights kept besides the front's: the K best by AP


# ---- ablation -------------------------------------------------------------------------------------------------
@dataclass(kw_only=True)
class AblationArgs(OneShotArgs):
    table: str
    epochs: int | None = None  # None: the table's own
    batch: int = Recipe().batch
    lr: float = Recipe().lr
    experiment: str = "hrnas-ablation"
    space: str | None = None  # one-shot: the supernet's space (None: --supernet's, else the default space)
    latency: bool = False  # also measure every row's latency
    STATE_FILE = "ablation.json"
    KIND = "table"
    FILES = ("table", "space", "supernet")

    @property
    def folder(self) -> Path:
        return Path(self.storage).resolve() / "ablations" / Path(self.table).stem

    def parse(self) -> AblationOptions:
        table = load_table(self.table)
        self.check_strategy()
        epochs = self.epochs if self.epochs is not None else table.epochs or Recipe().epochs
        recipe = self.parse_recipe(Recipe(), epochs, self.batch, self.lr)
        one_shot = None
        if self.strategy == "one-shot":
            if self.space is None and self.supernet is not None:
                space, space_file = supernet_space(Path(self.supernet).resolve()), ""
            else:
                space_file = self.space or str(DEFAULT_SPACE)
                space = SearchSpace.from_file(space_file)
            one_shot = self.parse_one_shot(space, space_file, self.batch, self.lr)
        return AblationOptions(args=self, table=table, recipe=recipe, one_shot=one_shot, **self.parse_place())


@dataclass(frozen=True, kw_only=True)
class AblationOptions(RunOptions):
    """A table's rows train with train.py's recipe at the table's epochs (--epochs, --batch, --lr override it)."""

    table: AblationTable
    one_shot: OneShot | None = None  # --strategy one-shot: rows in the supernet's space are scored with it


def say(message: str) -> None:
    """One line of hrnas's own progress on stderr (stdout is for results and the --json line)."""
    print(message, file=sys.stderr, flush=True)
