"""The options that say where a search's or a table's trials run, shared by `hrnas search` and `hrnas ablate`."""

from __future__ import annotations

import argparse

from nas.options import TRIAL_DEVICES, RunArgs
from pose.device import AMPS

DEFAULTS = RunArgs()


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
