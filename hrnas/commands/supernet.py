"""A weight-sharing supernet: train it once for a whole search space, then score any genome of the space in seconds.

hrnas supernet train --out runs/supernet                          # the default space on the synthetic default data
hrnas supernet train --space my-space.yaml --budget 0.5GFLOPs --epochs 20 --out runs/sn --json
hrnas supernet train --data /data/coco --input 256x192 --device cuda --ddp 4 --out runs/sn-coco
hrnas supernet eval --supernet runs/supernet --arch litehrnet-30 --json
hrnas supernet eval --supernet runs/supernet --arch litehrnet-18 --gene width=60 --save wide.pt

`train` resumes from <out>/supernet.pt when it exists, and logs one MLflow run (tag kind=supernet). `eval`
recalibrates the genome's BatchNorm statistics on --calibration training images, then scores it with COCOeval on the
validation split exactly as `hrnas train` does; `--save` writes the extracted network as a checkpoint that
`hrnas train --init-from`, `hrnas export --checkpoint` read.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import torch

from blocks.network import PoseNet
from checkpoints.load import read_weights
from hrnas.commands.train import (
    DEFAULT,
    add_data_arguments,
    add_ddp_arguments,
    add_device_arguments,
    add_loading_arguments,
    add_recipe_arguments,
    describe_ddp,
    device_from_args,
    loading_from_args,
    ray_storage_from_args,
    recipe_from_args,
    val_boxes_from_args,
)
from hrnas.errors import Parser, run_command
from hrnas.paths import check_writable
from pose.coco import parse_data, worker_paths
from pose.device import resolve_device
from pose.loading import ALONE
from pose.train import load_data
from search_space.genome import Genome
from search_space.presets import add_architecture_arguments, architecture_from_args, load_architecture
from search_space.space import DEFAULT_SPACE
from supernet.calibrate import DEFAULT_CALIBRATION
from supernet.sampling import candidates
from supernet.score import score
from supernet.training import (
    CHECKPOINT,
    NO_BUDGET,
    SpaceSource,
    SupernetRecipe,
    check_resumable,
    load_checkpoint,
    restore,
    supernet_meta,
    tracked_genomes,
    train_supernet,
)

SUPERNET_EPOCHS = 3  # about 30 minutes on a 2-core CPU at 128x96 (bench/RESULTS.md: how long, what it scores)
DEFAULT_OPTIONS = SupernetRecipe()
DISTILL = {"on": True, "off": False}
STORAGE = "runs"  # the folder of the default MLflow store, as for `hrnas search` and `hrnas ablate`


def build_parser() -> Parser:
    p = Parser(prog="hrnas supernet", description=__doc__)
    commands = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    train = commands.add_parser("train", help="train the supernet of a search space", description=__doc__)
    train.add_argument("--space", default=str(DEFAULT_SPACE), help="search space YAML (default: the default space)")
    add_data_arguments(train)
    add_recipe_arguments(train, SUPERNET_EPOCHS)
    train.add_argument("--sandwich", type=int, default=DEFAULT_OPTIONS.sandwich,
                       help="random genomes per step besides the largest and the smallest "
                       f"(default {DEFAULT_OPTIONS.sandwich})")  # fmt: skip
    train.add_argument("--progressive", type=int, default=DEFAULT_OPTIONS.progressive, metavar="P",
                       help="progressive shrinking: P phases of equal epochs, phase p sampling the largest p/P of the "
                       "genomes by FLOPs (default 1: all of them from the start)")  # fmt: skip
    train.add_argument("--distill", choices=list(DISTILL), default="on",
                       help="in-place distillation from the largest subnet (default on)")  # fmt: skip
    train.add_argument("--budget", default=DEFAULT_OPTIONS.budget,
                       help="sample only genomes within this FLOPs budget (torchstat, 256x192); the largest genome "
                       f"is the largest within it (default {DEFAULT_OPTIONS.budget}, the search's; none: the whole "
                       "space)")  # fmt: skip
    train.add_argument("--calibration", type=int, default=DEFAULT_CALIBRATION,
                       help=f"BatchNorm calibration images when scoring after each epoch (default "
                       f"{DEFAULT_CALIBRATION})")  # fmt: skip
    add_loading_arguments(train)
    add_device_arguments(train)
    train.add_argument("--out", required=True, help="folder for supernet.pt and result.json; an existing one resumes")
    train.add_argument("--init-from", default=None, metavar="CHECKPOINT",
                       help="start the shared weights from this network's (any layout `hrnas train --init-from` "
                       "reads): of the largest sampled genome, or of --init-arch")  # fmt: skip
    train.add_argument("--init-arch", default=None, metavar="ARCH",
                       help="with --init-from: the member of the space the checkpoint holds (a preset or genome "
                       "file; default: the largest genome sampled); only its slices are set")  # fmt: skip
    add_ddp_arguments(train)
    train.add_argument("--tracking-uri", default=None,
                       help="MLflow server http://HOST:PORT (default: SQLite file <storage>/mlflow.db)")  # fmt: skip
    train.add_argument("--experiment", default="hrnas-supernet", help="MLflow experiment (default hrnas-supernet)")
    train.add_argument("--storage", default=STORAGE, help=f"folder of the default MLflow store (default {STORAGE})")
    train.add_argument("--json", action="store_true", help="last line: one JSON object with the result")

    score = commands.add_parser("eval", help="score one genome with the supernet's weights", description=__doc__)
    score.add_argument("--supernet", required=True, help="the --out folder of `hrnas supernet train`")
    add_architecture_arguments(score)
    score.add_argument("--calibration", type=int, default=DEFAULT_CALIBRATION,
                       help=f"images for the BatchNorm recalibration (default {DEFAULT_CALIBRATION})")  # fmt: skip
    score.add_argument("--data", default=None, help="score on other data (default: the data it was trained on)")
    score.add_argument("--val", default=None, help="validation ANN.json:IMAGE_DIR (with --data)")
    score.add_argument("--save", default=None, metavar="MODEL.pt", help="also write the extracted network")
    score.add_argument("--threads", type=int, default=DEFAULT.threads)
    add_device_arguments(score)
    score.add_argument("--json", action="store_true", help="last line: one JSON object")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    job = {"train": train_command, "eval": evaluate_command}[args.command]
    return run_command(lambda: job(args, argv), args.json)


def supernet_recipe_from_args(args: argparse.Namespace) -> SupernetRecipe:
    if args.calibration < 1:
        raise ValueError(f"--calibration {args.calibration}: need at least one calibration image")
    if args.sandwich < 0:
        raise ValueError(f"--sandwich {args.sandwich}: the number of random genomes must be 0 or more")
    if args.progressive < 1:
        raise ValueError(f"--progressive {args.progressive}: the number of phases must be 1 (none) or more")
    budget = None if args.budget.lower() == NO_BUDGET else args.budget
    return SupernetRecipe(args.sandwich, DISTILL[args.distill], budget, args.calibration, args.progressive)


def check_init_options(args: argparse.Namespace) -> Genome | None:
    """--init-from / --init-arch checked before any work; the --init-arch genome (None: the largest sampled)."""
    if args.init_from is None:
        if args.init_arch is not None:
            raise ValueError("--init-arch names the member that --init-from holds; give --init-from CHECKPOINT")
        return None
    if args.ddp is not None:
        raise ValueError("--init-from is for one-process supernet training; leave out --ddp to warm-start")
    if not Path(args.init_from).is_file():
        raise ValueError(f"--init-from {args.init_from}: no such file")
    return load_architecture(args.init_arch) if args.init_arch else None


def initial_member(args: argparse.Namespace, init_arch: Genome | None, source: SpaceSource, pool, joints: int):
    """The member genome (`init_arch`, else the largest sampled) and its checked weights for --init-from (strict:
    every tensor of that network)."""
    if args.init_from is None:
        return None
    member = init_arch or pool.largest
    try:
        source.space.params_of(member)
    except ValueError as exc:
        raise ValueError(f"--init-arch {args.init_arch}: not in the space {source.space.name}: {exc}") from None
    weights = read_weights(Path(args.init_from), member, "--init-from")
    hint = "name the space's member it holds with --init-arch (default: the largest genome sampled)"
    fitted = weights.fit(PoseNet(member.resolve(joints)).state_dict(), hint=hint)
    print(f"--init-from {weights.describe()}\n  for {member.compact()}: {fitted.describe()}", file=sys.stderr)
    return member, fitted.state


def train_command(args: argparse.Namespace, argv: list[str]) -> dict:
    """Check every input, then train the supernet (resuming from --out), log it and print the scores."""
    source = SpaceSource.from_file(args.space)
    recipe = recipe_from_args(args)
    options = supernet_recipe_from_args(args)
    options.parsed_budget()  # a malformed budget is an error now, not after the data are loaded
    loading = loading_from_args(args)
    device = device_from_args(args, recipe)
    ray_storage = ray_storage_from_args(args)
    init_arch = check_init_options(args)
    out = check_writable(Path(args.out), "--out", folder=True)
    data_source = parse_data(args.data, args.val)
    if (out / CHECKPOINT).is_file():  # another space, recipe or options: refused before the data are loaded
        check_resumable(
            load_checkpoint(out / CHECKPOINT)["meta"], supernet_meta(source, recipe, options), out / CHECKPOINT
        )
    from nas.options import check_tracking_uri, describe_command, local_store  # MLflow and Ray load after the checks
    from nas.supernet_run import SupernetTracker, supernet_params, train_logged

    tracking_uri = args.tracking_uri or local_store(args.storage)
    check_tracking_uri(tracking_uri)
    boxes = val_boxes_from_args(args)
    data = load_data(data_source, detections=boxes, box_threshold=args.box_threshold)
    joints = len(data.train[0].keypoints)
    pool = candidates(source.space, options.parsed_budget(), joints)
    initial = initial_member(args, init_arch, source, pool, joints)
    print(f"data: {data.description}; {len(data.train)} train / {len(data.val)} val persons on {device.describe()}",
          file=sys.stderr)  # fmt: skip
    tracked = {name: genome.compact() for name, genome in tracked_genomes(source.space, pool).items()}

    tracker = SupernetTracker(tracking_uri, args.experiment, Path(args.storage).resolve(), out)
    params = supernet_params(source, pool, recipe, options, data, device, args.augment, args.ddp or 1)
    data_path, val_path, boxes_path = worker_paths(args.data, args.val, args.val_boxes)
    data_args = {"data": data_path, "val": val_path}

    if args.ddp is not None:
        print(describe_ddp(args.ddp, recipe.batch), file=sys.stderr)

    def train(on_epoch) -> dict:
        if args.ddp is None:
            return train_supernet(
                source, data, recipe, options, out, on_epoch, False, device, ALONE, loading, pool, initial=initial
            )
        from nas.ddp import DdpJob, SupernetJob, train_on_ray
        from nas.ray_common import recipe_config

        job = DdpJob("", recipe_config(recipe), data_path, val_path, boxes_path,
                     args.box_threshold, device, args.ddp, args.verbose, loading,
                     SupernetJob(source.text, options), amp=args.amp)  # fmt: skip
        return train_on_ray(job, out, args.address, args.verbose, ray_storage)

    command = describe_command(argv, "supernet")
    summary = train_logged(tracker, source, out, params, tracked, command, data_args, train)
    print(f"\n{'genome':<28} inherited AP")
    for name in tracked:
        print(f"{name:<28} {summary[f'ap.{name}']:.3f}")
    print(f"{'seconds':<28} {summary['train_seconds']:.0f} (training only, {recipe.epochs} epochs)")
    return summary


def evaluate_command(args: argparse.Namespace, argv: list[str]) -> dict:
    """Score one genome with the supernet's weights: recalibrated BatchNorm, COCOeval, exact complexity."""
    folder = Path(args.supernet)
    genome = architecture_from_args(args)
    if args.calibration < 1:
        raise ValueError(f"--calibration {args.calibration}: need at least one calibration image")
    if args.threads < 1:
        raise ValueError("--threads must be at least 1")
    device = resolve_device(args.device, args.amp)
    save = check_writable(Path(args.save), "--save") if args.save else None
    torch.set_num_threads(args.threads)
    supernet, source, recipe, _, _ = restore(folder / CHECKPOINT, device)
    try:
        supernet.check(genome)
    except ValueError as exc:
        raise ValueError(f"--arch {args.arch}: not in the supernet's space {source.space.name}: {exc}") from None
    if args.data is not None:
        data_args = {"data": args.data, "val": args.val}
    else:
        data_args = json.loads((folder / "data.json").read_text()) if (folder / "data.json").is_file() else {}
    data = load_data(parse_data(data_args.get("data", "synthetic"), data_args.get("val")))
    recipe = replace(recipe, threads=args.threads)
    result = score(supernet, genome, data, recipe, args.calibration, device, save=save)
    summary = {**result, "arch": args.arch, "supernet": str(folder), "data": data.description}
    print(f"{args.arch}: {genome.compact()}")
    for key in ("ap", "ap50", "ap75", "ar"):
        print(f"{key:<8} {result[key]:.3f}")
    print(f"{'flops':<8} {result['flops']:,} ({result['convention']}, 256x192)\n{'params':<8} {result['params']:,}")
    if save is not None:
        print(f"saved the extracted network to {save}")
    return summary


if __name__ == "__main__":
    sys.exit(main())
