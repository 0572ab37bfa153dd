"""Short top-down COCO keypoint training of one architecture, scored by COCOeval.

hrnas train --arch litehrnet-18                       # synthetic default data
hrnas train --arch ditehrnet-18 --data /data/coco --input 256x192 --epochs 20
hrnas train --arch litehrnet-18 --data ann.json:images/ --epochs 1 --json
hrnas train --arch litehrnet-18 --device cuda:1 --amp bf16  # GPU 1, bfloat16 autocast
hrnas train --arch litehrnet-18 --ddp 2 --threads 1 --out runs/a  # 2 Ray Train workers share each global batch
hrnas train --arch litehrnet-18 --data /data/coco --input 256x192 --epochs 1 --max-steps 300 --workers 2  # scale check
hrnas train --arch litehrnet-30 --init-from runs/sn/litehrnet-30.pt --epochs 3 --out runs/ft  # fine-tune a subnet
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from analysis.curves import plot_training_curves
from blocks.network import PoseNet
from checkpoints.load import Weights, read_weights
from hrnas.errors import Parser, run_command
from hrnas.paths import check_writable
from pose.coco import DataError, parse_data
from pose.dataset import AUGMENTATIONS
from pose.decode import DECODERS
from pose.device import AMPS, DEVICES, Device, planned_device, resolve_device
from pose.loading import CROP_CACHE_BYTES, IMAGE_CACHE_BYTES, MIB, Loading
from pose.losses import LOSSES
from pose.train import Recipe, load_data, train
from search_space.complexity import parse_input_size
from search_space.presets import add_architecture_arguments, architecture_from_args

DEFAULT = Recipe()


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="hrnas train", description=__doc__)
    add_architecture_arguments(p)
    add_data_arguments(p)
    add_recipe_arguments(p)
    add_loading_arguments(p)
    add_device_arguments(p)
    p.add_argument("--out", default=None, help="folder for checkpoint.pt and result.json; an existing one resumes")
    p.add_argument(
        "--init-from",
        default=None,
        metavar="CHECKPOINT",
        help="start from these weights to fine-tune: a checkpoint.pt, `hrnas supernet eval --save`, or a published "
        "checkpoint (mmpose 0.x/1.x, the Lite-HRNet, Dite-HRNet or original HRNet repository's) of the same --arch",
    )
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="with --init-from: load the tensors that fit (another joint count, a genome sharing some shapes), list "
        "the rest, which keep their initialisation",
    )
    add_ddp_arguments(p)
    p.add_argument("--sync-bn", action="store_true", help="with --ddp on CUDA: BatchNorm statistics over the whole "
                   "global batch (SyncBatchNorm) instead of each GPU's share, for small per-GPU batches")  # fmt: skip
    p.add_argument("--json", action="store_true", help="last line: one JSON object with the result")
    return p


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """--data, --val, --val-boxes, --box-threshold (shared with `hrnas supernet train`)."""
    p.add_argument("--data", default="synthetic", help="synthetic | COCO_ROOT | ANN.json:IMAGE_DIR (default synthetic)")
    p.add_argument("--val", default=None, help="validation ANN.json:IMAGE_DIR (default: the data's val split)")
    p.add_argument(
        "--val-boxes",
        default=None,
        metavar="DETECTIONS.json",
        help="validate on the person boxes of a COCO detections file instead of ground-truth boxes",
    )
    p.add_argument("--box-threshold", type=float, default=0.0, help="detection score threshold (default 0.0)")


def add_recipe_arguments(p: argparse.ArgumentParser, epochs: int = DEFAULT.epochs) -> None:
    """The Recipe's options (`recipe_from_args` reads them back)."""
    p.add_argument("--input", default="x".join(map(str, DEFAULT.input_hw)), help="crop size HxW, multiples of 32")
    p.add_argument("--epochs", type=int, default=epochs, help=f"default {epochs}")
    p.add_argument("--batch", type=int, default=DEFAULT.batch, help=f"default {DEFAULT.batch}")
    p.add_argument("--lr", type=float, default=DEFAULT.lr, help=f"peak Adam learning rate (default {DEFAULT.lr:g})")
    p.add_argument("--loss", choices=list(LOSSES), default=DEFAULT.loss, help=f"heatmap loss (default {DEFAULT.loss})")
    p.add_argument(
        "--sigma",
        type=float,
        default=DEFAULT.sigma,
        help="target Gaussian sigma in heatmap pixels "
        "(default: 2 at a 48-pixel-wide heatmap, scaled with the heatmap width, at least 1.5)",
    )
    p.add_argument(
        "--augment",
        choices=list(AUGMENTATIONS),
        default="short",
        help="short (default: flip, scale, rotation 10), published (+ half-body, rotation 30), none",
    )
    p.add_argument(
        "--decode",
        choices=list(DECODERS),
        default=DEFAULT.decode,
        help=f"sub-pixel peak: quarter offset or taylor step (default {DEFAULT.decode})",
    )
    p.add_argument("--seed", type=int, default=DEFAULT.seed)
    p.add_argument("--threads", type=int, default=None, help=f"CPU threads of the training (default {DEFAULT.threads}; "
                   "with --ddp N, this machine's CPUs / N: each worker's share)")  # fmt: skip
    p.add_argument(
        "--max-steps",
        type=int,
        default=None,
        help="stop each epoch after this many optimizer steps, for scale checks (default: whole epochs)",
    )
    p.add_argument("--no-flip-test", action="store_true", help="score without the flip test")


def add_loading_arguments(p: argparse.ArgumentParser) -> None:
    """--workers and the cache budgets (`loading_from_args`)."""
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="data loading worker processes (default: --threads minus one; none when training on 2 CPUs or fewer)",
    )
    p.add_argument(
        "--cache-mb",
        type=int,
        default=IMAGE_CACHE_BYTES // MIB,
        help=f"decoded-image cache of the whole run, shared by its workers (default {IMAGE_CACHE_BYTES // MIB})",
    )
    p.add_argument(
        "--crop-cache-mb",
        type=int,
        default=CROP_CACHE_BYTES // MIB,
        help=f"validation crops kept as uint8 between epochs, the rest recomputed (default {CROP_CACHE_BYTES // MIB})",
    )


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    """--device and --amp (`pose.device.resolve_device`)."""
    p.add_argument(
        "--device",
        default="auto",
        help=f"{' | '.join(DEVICES)} (default auto: the first CUDA device if there is one, else the CPU)",
    )
    p.add_argument(
        "--amp",
        choices=AMPS,
        default="auto",
        help="autocast precision (default auto: bf16 on a CUDA device that supports it, off elsewhere; "
        "fp16 needs CUDA and uses loss scaling)",
    )


def add_ddp_arguments(p: argparse.ArgumentParser) -> None:
    """--ddp, --ray-storage, --address, --verbose."""
    p.add_argument(
        "--ddp",
        type=int,
        default=None,
        metavar="N",
        help="data-parallel training on N Ray Train workers of --threads CPUs (one GPU each on CUDA) that split "
        "each global --batch (a multiple of N); resumes from <out>/ray-train",
    )
    p.add_argument(
        "--ray-storage",
        default=None,
        metavar="PATH|URI",
        help="with --ddp: where Ray Train keeps the run's checkpoints (<it>/ray-train), a folder every node sees (a "
        "shared file system) or a URI such as s3://bucket/runs; the same value resumes (default: --out)",
    )
    p.add_argument("--address", default=None, help="with --ddp: the Ray cluster to join (default: a local Ray)")
    p.add_argument("--verbose", action="store_true", help="with --ddp: Ray's own log lines too")


def describe_ddp(workers: int, batch: int) -> str:
    """The line a --ddp command prints before Ray starts: how the global batch is shared."""
    return f"data-parallel: {workers} Ray Train workers, {batch // workers} images each per step"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: train_command(args), args.json)


def default_threads(ddp: int | None) -> int:
    """--threads when it is not given: the recipe's, or with --ddp N each worker's share of this machine's CPUs."""
    if not ddp:
        return DEFAULT.threads
    return max(1, len(os.sched_getaffinity(0)) // ddp)


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    recipe = replace(
        DEFAULT,
        input_hw=parse_input_size(args.input),
        epochs=args.epochs,
        batch=args.batch,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads if args.threads is not None else default_threads(getattr(args, "ddp", None)),
        flip_test=not args.no_flip_test,
        loss=args.loss,
        sigma=args.sigma,
        augment=AUGMENTATIONS[args.augment],
        decode=args.decode,
        max_steps=args.max_steps,
    )
    if recipe.sigma is not None and recipe.sigma <= 0:
        raise ValueError(f"--sigma must be positive, got {recipe.sigma}")
    for name in ("epochs", "batch", "threads", "max_steps"):
        if getattr(recipe, name) is not None and getattr(recipe, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1")
    return recipe


def loading_from_args(args: argparse.Namespace) -> Loading:
    for name in ("workers", "cache_mb", "crop_cache_mb"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            raise ValueError(f"--{name.replace('_', '-')} must be 0 or more")
    return Loading(args.workers, args.cache_mb * MIB, args.crop_cache_mb * MIB)


def device_from_args(args: argparse.Namespace, recipe: Recipe) -> Device:
    """--device and --amp resolved, and --ddp / --address checked against them and the batch (Ray is imported
    only for --ddp)."""
    # --ddp: the workers' GPUs, which the machine that starts the job may not have; each worker sets the precision
    device = resolve_device(args.device, args.amp) if args.ddp is None else planned_device(args.device, args.amp)
    if getattr(args, "sync_bn", False):
        if args.ddp is None:
            raise ValueError("--sync-bn synchronises BatchNorm between --ddp workers; add --ddp N or leave it out")
        if device.device.type != "cuda":
            raise ValueError(f"--sync-bn needs CUDA workers (SyncBatchNorm runs on GPUs), not {device.device.type}; "
                             "leave it out, or train with --device cuda")  # fmt: skip
    if args.ddp is not None:
        from nas.ddp import check_ddp

        check_ddp(args.ddp, recipe.batch, args.device, device)
    elif args.address:
        raise ValueError("--address joins a Ray cluster for --ddp; add --ddp N or leave out --address")
    return device


def ray_storage_from_args(args: argparse.Namespace) -> str | None:
    """--ray-storage checked: only with --ddp; a folder made absolute (the workers run elsewhere) and writable, or
    a URI passed on to Ray Train as it is."""
    storage = args.ray_storage
    if storage is None:
        return None
    if args.ddp is None:
        raise ValueError("--ray-storage holds the checkpoints of a --ddp training; add --ddp N or leave it out")
    if "://" in storage:
        return storage
    return str(check_writable(Path(storage), "--ray-storage", folder=True).resolve())


def val_boxes_from_args(args: argparse.Namespace) -> Path | None:
    """The --val-boxes detections file, checked before the data (which may take minutes to generate)."""
    boxes = Path(args.val_boxes) if args.val_boxes else None
    if boxes is not None and not boxes.is_file():
        raise DataError(f"--val-boxes {boxes}: detections file does not exist")
    return boxes


def initial_weights(weights: Weights | None, genome, joints: int, partial: bool) -> dict | None:
    """The --init-from tensors that this network (with the data's joints) takes; strict unless --allow-partial."""
    if weights is None:
        return None
    fitted = weights.fit(PoseNet(genome.resolve(joints)).state_dict(), partial)
    print(f"--init-from {weights.describe()}\n  {fitted.describe()}", file=sys.stderr)
    return fitted.state


def train_command(args: argparse.Namespace) -> dict:
    """Check every input (the output folder included), then train, print the metrics and return the summary."""
    genome = architecture_from_args(args)
    recipe = recipe_from_args(args)
    loading = loading_from_args(args)
    device = device_from_args(args, recipe)
    ray_storage = ray_storage_from_args(args)
    out = check_writable(Path(args.out), "--out", folder=True) if args.out else None
    weights = read_weights(Path(args.init_from), genome, "--init-from") if args.init_from else None
    if weights is not None and args.ddp is not None:
        raise ValueError("--init-from is for one-process training; leave out --ddp to fine-tune")
    if args.allow_partial and weights is None:
        raise ValueError("--allow-partial says how to load --init-from; give --init-from CHECKPOINT or leave it out")
    boxes = val_boxes_from_args(args)
    data = load_data(parse_data(args.data, args.val), detections=boxes, box_threshold=args.box_threshold)
    initial = initial_weights(weights, genome, len(data.train[0].keypoints), args.allow_partial)
    print(f"{args.arch}: {genome.compact()} on {device.describe()}", file=sys.stderr)
    print(
        f"data: {data.description}; {len(data.train)} train / {len(data.val)} val persons; "
        f"skipped: train {data.skipped['train']}, val {data.skipped['val']}",
        file=sys.stderr,
    )
    workers = loading.worker_count(recipe.threads, device)
    print(f"caches: {loading.describe(workers, data.image_bytes, data.crop_bytes(recipe.input_hw))}", file=sys.stderr)
    if args.ddp is None:
        result = train(genome, data, recipe, out, device=device, loading=loading, initial=initial)
    else:
        from nas.ddp import ddp_job, train_on_ray

        print(describe_ddp(args.ddp, recipe.batch), file=sys.stderr)
        job = ddp_job(genome, recipe, args, device, loading)
        result = train_on_ray(job, out, args.address, args.verbose, ray_storage)
    summary = {k: v for k, v in result.items() if k != "history"}
    summary.update(
        arch=args.arch,
        genome=genome.compact(),
        input=args.input,
        data=data.description,
        device=str(device.device),
        amp=device.amp_name if args.ddp is None or device.device.type == "cpu" else f"{args.amp} (each worker's GPU)",
    )
    if out is not None:
        (out / "result.json").write_text(json.dumps({**summary, "history": result["history"]}, indent=1))
        plot_training_curves(result["history"], out / "curves.png", f"{args.arch} on {data.description}", recipe.loss)
    print(f"\n{'metric':<8} value")
    for key in ("ap", "ap50", "ap75", "apm", "apl", "ar"):
        value = summary.get(key)
        print(f"{key:<8} {'n/a' if value is None else f'{value:.3f}'}")
    print(f"{'epochs':<8} {summary['epochs']}\n{'seconds':<8} {summary['train_seconds']:.0f} (training only)")
    return summary


if __name__ == "__main__":
    sys.exit(main())
