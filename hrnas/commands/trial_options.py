"""The options that say where a search's or a table's trials run and how they score genomes with a supernet,
shared by `hrnas search` and `hrnas ablate`."""

from __future__ import annotations

import argparse
import os

from nas.options import STRATEGIES, TRIAL_DEVICES, OneShotArgs, RunArgs
from pose.device import AMPS

DEFAULTS = RunArgs()
ONE_SHOT = OneShotArgs()


def add_address_argument(p: argparse.ArgumentParser, what: str) -> None:
    """--address HOST:PORT of the Ray cluster that runs `what`; its default is $RAY_ADDRESS, as for Ray's own tools,
    else a private local Ray instance."""
    p.add_argument("--address", default=os.environ.get("RAY_ADDRESS") or None, help=f"HOST:PORT of the Ray cluster "
                   f"that runs {what} (default: $RAY_ADDRESS, else a private local Ray)")  # fmt: skip


def add_trial_resource_arguments(p: argparse.ArgumentParser, unit: str) -> None:
    p.add_argument("--cpus-per-trial", type=int, default=DEFAULTS.cpus_per_trial, help="CPUs (and torch threads) "
                   f"per {unit}; as many {unit}s at once as the cluster's nodes hold (default "
                   f"{DEFAULTS.cpus_per_trial})")  # fmt: skip
    p.add_argument("--gpus-per-trial", type=float, default=DEFAULTS.gpus_per_trial, help=f"GPUs per {unit}, "
                   "fractional to share one (0.5: two per GPU); default 0 (CPU)")  # fmt: skip
    p.add_argument("--device", default=DEFAULTS.device, choices=TRIAL_DEVICES, help="where each trial trains: auto "
                   "(CUDA when it has a GPU share, default), cpu, cuda (its own GPU), mps")  # fmt: skip
    p.add_argument("--amp", default=DEFAULTS.amp, choices=AMPS, help="mixed precision: auto (bf16 on CUDA that "
                   "supports it, off on CPU; default), bf16, fp16 (CUDA, with a grad scaler), off")  # fmt: skip
    p.add_argument("--ddp-per-trial", type=int, default=DEFAULTS.ddp_per_trial, metavar="N", help=f"train each "
                   f"{unit} as N Ray Train workers of --cpus-per-trial CPUs that split each global --batch (default "
                   "1: one process)")  # fmt: skip


def add_one_shot_arguments(p: argparse.ArgumentParser, strategy_help: str) -> None:
    p.add_argument("--strategy", default=ONE_SHOT.strategy, choices=list(STRATEGIES), help=strategy_help)
    p.add_argument("--supernet", default=None, metavar="DIR", help="one-shot: a supernet (the --out of `hrnas "
                   "supernet train`) of this space and data; default: train one, cached under --storage")  # fmt: skip
    p.add_argument("--supernet-epochs", type=int, default=ONE_SHOT.supernet_epochs, help="one-shot without "
                   f"--supernet: epochs of the supernet it trains (default {ONE_SHOT.supernet_epochs})")  # fmt: skip
    p.add_argument("--supernet-steps", type=int, default=None, metavar="N", help="one-shot without --supernet: "
                   "stop each supernet epoch after N steps (default: whole epochs)")  # fmt: skip
    p.add_argument("--calibration", type=int, default=ONE_SHOT.calibration, help="one-shot: BatchNorm calibration "
                   f"images per scored genome (default {ONE_SHOT.calibration})")  # fmt: skip
