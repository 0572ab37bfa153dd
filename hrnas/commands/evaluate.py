"""Score a COCO keypoint results file with the project's evaluation (pycocotools COCOeval, keypoints).

python experiments/evaluate.py --data person_keypoints_val2017.json:val2017 --predictions results.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pose.coco import DataError, load_coco
from pose.evaluate import STAT_NAMES, coco_keypoint_stats


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="ground truth ANN.json[:IMAGE_DIR]")
    p.add_argument(
        "--predictions", required=True, help="COCO keypoint results JSON (list of image_id, keypoints, score)"
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        coco = load_coco(Path(args.data.split(":", 1)[0]))
        try:
            results = json.loads(Path(args.predictions).read_text())
        except FileNotFoundError:
            raise DataError(f"predictions file {args.predictions} does not exist") from None
        except json.JSONDecodeError as exc:
            raise DataError(f"predictions file {args.predictions} is not valid JSON ({exc})") from None
        if not isinstance(results, list) or any("keypoints" not in r or "image_id" not in r for r in results):
            raise DataError(f"predictions file {args.predictions}: expected a list of objects with image_id, keypoints")
        unknown = {r["image_id"] for r in results} - set(coco.imgs)
        if unknown:
            raise DataError(f"predictions name image ids absent from the ground truth: {sorted(unknown)[:5]}")
        for r in results:
            r.setdefault("category_id", 1)
        stats = coco_keypoint_stats(coco, results)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name in STAT_NAMES:
        print(f"{name:<5} {'n/a' if stats[name] is None else f'{stats[name]:.3f}'}")
    if args.json:
        print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
