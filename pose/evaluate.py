"""COCO keypoint scoring: the official rescoring, OKS NMS, and pycocotools COCOeval."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

STAT_NAMES = ("ap", "ap50", "ap75", "apm", "apl", "ar", "ar50", "ar75", "arm", "arl")
COCO_SIGMAS = (
    np.array([0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89])
    / 10.0
)


@dataclass
class Prediction:
    image_id: int
    keypoints: np.ndarray  # (J, 3): x, y, confidence
    box_score: float
    area: float  # of the person window, for OKS NMS


def rescore(keypoints: np.ndarray, box_score: float, threshold: float = 0.2) -> float:
    """Box score x mean confidence of the keypoints above `threshold` (0 if none), as the official pipeline."""
    confident = keypoints[:, 2][keypoints[:, 2] > threshold]
    return box_score * (float(confident.mean()) if confident.size else 0.0)


def oks(a: np.ndarray, b: np.ndarray, area: float) -> float:
    d2 = ((a[:, :2] - b[:, :2]) ** 2).sum(-1)
    sigmas = COCO_SIGMAS[: len(a)] if len(a) <= len(COCO_SIGMAS) else np.full(len(a), 0.05)
    return float(np.mean(np.exp(-d2 / (2 * (2 * sigmas) ** 2 * (area + np.spacing(1))))))


def oks_nms(items: list[tuple[float, Prediction]], threshold: float = 0.9) -> list[tuple[float, Prediction]]:
    """Greedy non-maximum suppression by OKS within one image (highest score first)."""
    keep: list[tuple[float, Prediction]] = []
    for score, pred in sorted(items, key=lambda t: -t[0]):
        if all(oks(pred.keypoints, kept.keypoints, kept.area) <= threshold for _, kept in keep):
            keep.append((score, pred))
    return keep


def to_results(predictions: list[Prediction], nms: bool = True) -> list[dict]:
    by_image: dict[int, list[tuple[float, Prediction]]] = {}
    for pred in predictions:
        by_image.setdefault(pred.image_id, []).append((rescore(pred.keypoints, pred.box_score), pred))
    results = []
    for image_id, items in by_image.items():
        for score, pred in oks_nms(items) if nms else items:
            results.append(
                {
                    "image_id": image_id,
                    "category_id": 1,
                    "score": score,
                    "keypoints": [round(float(v), 3) for v in pred.keypoints.ravel()],
                }
            )
    return results


def coco_keypoint_stats(coco_gt: COCO, results: list[dict]) -> dict[str, float | None]:
    """COCOeval (keypoints) of results against ground truth -> AP, AP50, AP75, APM, APL, AR, ... (0 if empty)."""
    if not results:
        return dict.fromkeys(STAT_NAMES, 0.0)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(results)
        evaluator = COCOeval(coco_gt, coco_dt, "keypoints")
        evaluator.params.useSegm = None
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    # COCOeval prints -1 where a statistic is undefined (no ground truth in that area range): keep it None.
    return {name: (None if v < 0 else float(v)) for name, v in zip(STAT_NAMES, evaluator.stats, strict=True)}
