"""The search driver: check every input, start (or join) Ray, run the Tune + Optuna search, keep MLflow in step.

Everything that can be wrong with the inputs is checked before the first trial: the budget, the space, the data,
the tracking store, the Ray address, and whether any genome of the space fits the budget.
A search lives in `<storage>/<experiment>/`: `search.json` (its options and MLflow parent run), `tune/` (Ray
Tune's experiment state and trial folders), `rejected.jsonl`, and the Ray temp folder of a local instance.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.gate import BudgetGate
from pose.coco import DataError, absolute_data, parse_data
from pose.synthetic import default_cache_dir, ensure_synthetic
from search_space.budget import parse_budget
from search_space.complexity import CONVENTIONS, check_input_size, parse_input_size
from search_space.presets import PRESETS, load_preset
from search_space.space import DEFAULT_SPACE, SearchSpace, SpaceError

ROOT = Path(__file__).resolve().parents[1]


class SearchError(ValueError):
    """A search that cannot start (or resume); the message says what is wrong and how to fix it."""


@dataclass
class SearchOptions:
    budget: str
    space: str = str(DEFAULT_SPACE)
    trials: int = 10
    data: str = "synthetic"
    epochs: int = 1
    input: str = "128x96"
    batch: int = 16  # one-epoch trials learn more from twice the steps of train.py's batch 32
    lr: float = 1e-2
    convention: str = "torchstat"
    address: str | None = None
    tracking_uri: str | None = None
    experiment: str = "hrnas-search"
    storage: str = "runs"
    seed: int = 0
    cpus_per_trial: int = 1
    scheduler: str = "fifo"
    command: str = ""

    @property
    def folder(self) -> Path:
        return Path(self.storage).resolve() / self.experiment

    def resolved_tracking_uri(self) -> str:
        return self.tracking_uri or local_store(self.storage)


def local_store(storage: str) -> str:
    """The default MLflow store: one SQLite file per storage folder, shared by searches and ablations."""
    return f"sqlite:///{Path(storage).resolve() / 'mlflow.db'}"


# ---- input checks -------------------------------------------------------------------------------------------
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


def validate(options: SearchOptions) -> tuple[Any, SearchSpace, Any]:
    """Budget, space, sizes and data; everything that needs no Ray or MLflow."""
    budget = parse_budget(options.budget)
    if options.convention not in CONVENTIONS:
        raise SearchError(f"--convention {options.convention!r}: choose one of {', '.join(CONVENTIONS)}")
    space = SearchSpace.from_file(options.space)
    check_input_size(parse_input_size(options.input))
    if not options.lr > 0:
        raise SearchError(f"--lr {options.lr}: the learning rate must be positive")
    for name in ("trials", "epochs", "cpus_per_trial", "batch"):
        if getattr(options, name) < 1:
            raise SearchError(f"--{name.replace('_', '-')} must be at least 1")
    if options.scheduler not in SCHEDULERS:
        raise SearchError(f"--scheduler {options.scheduler!r}: choose one of {', '.join(SCHEDULERS)}")
    source = parse_data(options.data)
    return budget, space, source


def anchors_for(space: SearchSpace, gate: BudgetGate) -> tuple[list[dict[str, str]], dict[str, str], list[str]]:
    """The presets in the space that fit the budget, cheapest first, as Optuna points to evaluate first."""
    points, names, notes = [], {}, []
    presets = sorted(PRESETS, key=lambda name: gate.flops(load_preset(name)))
    for name in presets:
        genome = load_preset(name)
        try:
            params = space.params_of(genome)
        except SpaceError as exc:
            notes.append(f"{name}: not in space {space.name!r} ({exc})")
            continue
        if not gate.fits(genome):
            notes.append(f"{name}: over budget ({gate.show(gate.flops(genome))})")
            continue
        points.append(params)
        names[genome.compact()] = name
    return points, names, notes


def code_version() -> str:
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


# ---- schedulers ---------------------------------------------------------------------------------------------
def _fifo(options: SearchOptions):
    return None


def _asha(options: SearchOptions):
    from ray.tune.schedulers import ASHAScheduler

    # Rungs in epochs, not seconds, and no earlier than half the recipe: a small model is compared with the others
    # at the same number of epochs, never stopped for being slow, and not judged on its first noisy epoch.
    return ASHAScheduler(
        time_attr="epoch",
        metric="ap",
        mode="max",
        max_t=options.epochs,
        grace_period=max(1, options.epochs // 2),
        reduction_factor=2,
    )


SCHEDULERS = {"fifo": _fifo, "asha": _asha}


# ---- state --------------------------------------------------------------------------------------------------
def state_file(folder: Path) -> Path:
    return folder / "search.json"


def load_state(options: SearchOptions) -> dict:
    path = state_file(options.folder)
    if not path.is_file():
        raise SearchError(
            f"nothing to resume: {path} does not exist; give the --storage and --experiment of the killed search"
        )
    return json.loads(path.read_text())


def save_state(folder: Path, state: dict, path: Path | None = None) -> None:
    """Write the state atomically (a kill mid-write leaves the old file), to `search.json` unless `path` is given."""
    folder.mkdir(parents=True, exist_ok=True)
    path = path or state_file(folder)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(path)


def options_from_args(args: Any, options_class: type = SearchOptions) -> Any:
    """The options dataclass filled from parsed arguments (the ones it has fields for and that were given)."""
    names = options_class.__dataclass_fields__
    return options_class(**{k: v for k, v in vars(args).items() if k in names and v is not None})


def run_command(job: Callable[[], dict], as_json: bool) -> int:
    """Exit code of a command-line job: bad input (every input error here is a ValueError naming what is wrong and
    the fix) is one `error:` line and 2; with --json the job's summary is the last line of the output."""
    try:
        summary = job()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(summary))
    return 0


def describe_command(argv: list[str], script: str = "search.py") -> str:
    return f"python experiments/{script} " + " ".join(shlex.quote(a) for a in argv)


def prepare(options: SearchOptions, resume: bool) -> tuple[SearchOptions, dict, tuple]:
    """Check everything; returns the options in force (a resumed search keeps its own), the saved state, and the
    parsed budget, space and data source."""
    if resume:
        state = load_state(options)
        saved = SearchOptions(**state["options"])
        saved.address = options.address or saved.address  # the cluster may have moved
        options = saved
    else:
        if state_file(options.folder).is_file():
            raise SearchError(
                f"a search already exists in {options.folder}; add --resume to continue it, or choose another "
                "--experiment or --storage"
            )
        state = {}
    options.data = absolute_data(options.data)
    parsed = validate(options)
    check_tracking_uri(options.resolved_tracking_uri())
    if options.address:
        check_ray_address(options.address)
    return options, state, parsed


def run(options: SearchOptions, resume: bool = False) -> dict:
    """Run (or resume) a search; returns the summary that `--json` prints."""
    from nas.search_run import execute  # Ray, Optuna and MLflow load only once the inputs are known to be good

    options, state, (budget, space, source) = prepare(options, resume)
    gate = BudgetGate(budget, options.convention, cache_file=default_cache_dir() / "complexity.json")
    print(f"{budget.describe(options.convention)}; space {space.name!r} ({space.size():,} genomes)", file=sys.stderr)
    gate.check_space(space)
    anchors, anchor_names, notes = anchors_for(space, gate)
    print(f"anchors (evaluated first): {', '.join(anchor_names.values()) or 'none'}", file=sys.stderr)
    for note in notes:
        print(f"  not an anchor: {note}", file=sys.stderr)
    if source is None:
        started = time.perf_counter()
        root = ensure_synthetic()
        print(f"synthetic data: {root} ({time.perf_counter() - started:.0f}s)", file=sys.stderr)
    os.environ.setdefault("HRNAS_CACHE", str(default_cache_dir()))
    return execute(options, state, budget, space, gate, anchors, anchor_names, resume)


__all__ = ["DataError", "SearchError", "SearchOptions", "run"]
