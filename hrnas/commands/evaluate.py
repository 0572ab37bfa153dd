"""Score a network on COCO keypoints (pycocotools COCOeval): a checkpoint evaluated top-down with the papers' test
protocol, or a COCO keypoint results file.

hrnas evaluate --arch litehrnet-18 --checkpoint litehrnet_18_coco_256x192.pth \\
    --data COCO_ROOT --val-boxes COCO_val2017_detections_AP_H_56_person.json --input 256x192
hrnas evaluate --data person_keypoints_val2017.json:val2017 --predictions results.json

With --checkpoint (any layout `hrnas export --checkpoint` reads: hrnas's, mmpose 0.x and 1.x, the Lite-HRNet,
Dite-HRNet and original HRNet repositories') every validation person (a ground-truth box, or with --val-boxes a
detection at or above --box-threshold) is cropped at --input, run with the flip test (the flipped heatmaps shifted
one pixel, as the papers' code does) and decoded with the quarter-pixel offset toward the higher neighbour: the
validation of `hrnas train`, with the published models' settings (MSE heatmaps, quarter offset) unless the
checkpoint is an hrnas training's, whose recipe says how its output becomes heatmaps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hrnas.errors import Parser, run_command
from pose.coco import DataError, load_coco, read_json
from pose.evaluate import STAT_NAMES, coco_keypoint_stats

PUBLISHED = {"loss": "mse", "decode": "quarter", "sigma": None}  # how the published models' output is read


def build_parser() -> argparse.ArgumentParser:
    from pose.decode import DECODERS
    from pose.losses import LOSSES
    from search_space.presets import add_architecture_arguments

    p = Parser(prog="hrnas evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="ground truth: COCO_ROOT or ANN.json[:IMAGE_DIR] (synthetic too, "
                   "with --checkpoint)")  # fmt: skip
    p.add_argument(
        "--predictions", default=None, help="COCO keypoint results JSON (list of image_id, keypoints, score)"
    )
    add_architecture_arguments(p, required=False)
    p.add_argument("--checkpoint", default=None, help="weights of --arch to evaluate (instead of --predictions)")
    p.add_argument("--val", default=None, help="with --checkpoint: validation ANN.json:IMAGE_DIR (default: the "
                   "data's val split)")  # fmt: skip
    p.add_argument(
        "--val-boxes",
        default=None,
        metavar="DETECTIONS.json",
        help="with --checkpoint: evaluate on the person boxes of a COCO detections file (the papers': AP 56.4 "
        "detections) instead of ground truth",
    )
    p.add_argument("--box-threshold", type=float, default=0.0, help="detection score threshold (default 0.0)")
    p.add_argument("--input", default="256x192", help="with --checkpoint: crop size HxW (default 256x192)")
    p.add_argument("--no-flip-test", action="store_true", help="with --checkpoint: without the flip test")
    p.add_argument("--loss", choices=list(LOSSES), default=None, help="how the output becomes heatmaps (default: "
                   "the hrnas checkpoint's recipe; mse for a published one)")  # fmt: skip
    p.add_argument("--decode", choices=list(DECODERS), default=None, help="sub-pixel decoding (default: the hrnas "
                   "checkpoint's recipe; quarter for a published one)")  # fmt: skip
    p.add_argument("--device", default="auto", help="with --checkpoint: cpu | cuda | cuda:N | auto (default)")
    p.add_argument("--batch", type=int, default=64, help="with --checkpoint: persons per batch (default 64)")
    p.add_argument("--json", action="store_true", help="last line: one JSON object with the COCOeval stats")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(lambda: evaluate(args), args.json)


def read_predictions(path: str, known_images: set[int]) -> list[dict]:
    """The results file as COCO keypoint results, or DataError naming what is wrong with it."""
    results = read_json(path, "predictions file")
    if not isinstance(results, list) or any(
        not isinstance(r, dict) or "keypoints" not in r or "image_id" not in r for r in results
    ):
        raise DataError(f"predictions file {path}: expected a list of objects with image_id, keypoints")
    unknown = {r["image_id"] for r in results} - known_images
    if unknown:
        raise DataError(f"predictions name image ids absent from the ground truth: {sorted(unknown)[:5]}")
    for r in results:
        r.setdefault("category_id", 1)
    return results


def evaluate_checkpoint(args: argparse.Namespace) -> dict:
    """Check every input, read the weights (before the data), then evaluate as `hrnas train` validates."""
    from blocks.network import PoseNet
    from checkpoints.load import load_into, read_weights
    from hrnas.commands.train import val_boxes_from_args
    from pose.coco import parse_data
    from pose.dataset import TopDownDataset
    from pose.device import resolve_device
    from pose.train import evaluate as evaluate_network
    from pose.train import load_data
    from search_space.complexity import parse_input_size
    from search_space.presets import architecture_from_args

    if args.arch is None:
        raise ValueError("--checkpoint needs --arch: the preset or genome file the weights belong to")
    if args.batch < 1:
        raise ValueError(f"--batch {args.batch}: need at least 1")
    genome = architecture_from_args(args)
    input_hw = parse_input_size(args.input)
    device = resolve_device(args.device, "off")
    boxes = val_boxes_from_args(args)
    weights = read_weights(Path(args.checkpoint), genome)
    reading = {**PUBLISHED, **{k: v for k, v in (weights.recipe or {}).items() if k in PUBLISHED}}
    reading.update({k: getattr(args, k) for k in ("loss", "decode") if getattr(args, k) is not None})
    data = load_data(parse_data(args.data, args.val), detections=boxes, box_threshold=args.box_threshold)
    model = PoseNet(genome.resolve(len(data.val[0].keypoints)))
    fitted = load_into(model, weights)
    print(f"{weights.describe()}; {fitted.describe()}", file=sys.stderr)
    flip = not args.no_flip_test
    protocol = f"flip test {'on' if flip else 'off'}, {reading['loss']} heatmaps, {reading['decode']} decoding"
    print(f"{data.description}: {len(data.val)} persons at {args.input}, {protocol}, on {device.describe()}",
          file=sys.stderr)  # fmt: skip
    val_set = TopDownDataset(data.val, input_hw, False, sigma=reading["sigma"])
    model = model.to(device.device)
    return evaluate_network(
        model, val_set, data.val_coco, flip, reading["loss"], reading["decode"], args.batch, device=device
    )


def evaluate(args: argparse.Namespace) -> dict:
    if (args.predictions is None) == (args.checkpoint is None):
        raise ValueError("give --predictions RESULTS.json, or --arch NAME --checkpoint FILE to evaluate a network")
    if args.checkpoint is not None:
        stats = evaluate_checkpoint(args)
    else:
        coco = load_coco(Path(args.data.split(":", 1)[0]))
        stats = coco_keypoint_stats(coco, read_predictions(args.predictions, set(coco.imgs)))
    for name in STAT_NAMES:
        print(f"{name:<5} {'n/a' if stats[name] is None else f'{stats[name]:.3f}'}")
    return stats


if __name__ == "__main__":
    sys.exit(main())
