"""Score a COCO keypoint results file with the project's evaluation (pycocotools COCOeval, keypoints).

hrnas evaluate --data person_keypoints_val2017.json:val2017 --predictions results.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hrnas.errors import Parser, run_command
from pose.coco import DataError, load_coco, read_json
from pose.evaluate import STAT_NAMES, coco_keypoint_stats


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="hrnas evaluate", description=__doc__)
    p.add_argument("--data", required=True, help="ground truth ANN.json[:IMAGE_DIR]")
    p.add_argument(
        "--predictions", required=True, help="COCO keypoint results JSON (list of image_id, keypoints, score)"
    )
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


def evaluate(args: argparse.Namespace) -> dict:
    coco = load_coco(Path(args.data.split(":", 1)[0]))
    stats = coco_keypoint_stats(coco, read_predictions(args.predictions, set(coco.imgs)))
    for name in STAT_NAMES:
        print(f"{name:<5} {'n/a' if stats[name] is None else f'{stats[name]:.3f}'}")
    return stats


if __name__ == "__main__":
    sys.exit(main())
