"""Boxes to crop windows and the affine maps between image and crop coordinates."""

from __future__ import annotations

import math

import numpy as np

# COCO keypoint order; flipping swaps each left/right pair.
COCO_KEYPOINTS = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))
UPPER_BODY = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)


def flip_permutation(joints: int = 17) -> np.ndarray:
    perm = np.arange(joints)
    for a, b in FLIP_PAIRS:
        if b < joints:
            perm[a], perm[b] = b, a
    return perm


def box_to_center_scale(box, aspect: float, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """(x, y, w, h) -> centre and (w, h) of a window with the input's aspect ratio (w / h), padded."""
    x, y, w, h = (float(v) for v in box)
    center = np.array([x + w / 2, y + h / 2], dtype=np.float64)
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return center, np.array([w, h], dtype=np.float64) * padding


def affine_matrix(center, size, rotation_deg: float, output_wh: tuple[int, int], inverse: bool = False) -> np.ndarray:
    """2x3 map from the rotated window (centre, size in pixels) onto an output_wh image (or back if inverse)."""
    out_w, out_h = output_wh
    scale = out_w / size[0]
    theta = math.radians(rotation_deg)
    cos, sin = math.cos(theta) * scale, math.sin(theta) * scale
    # rotate about the window centre (counter-clockwise in image coordinates), scale, move centre to output centre
    forward = np.array(
        [
            [cos, sin, out_w / 2 - cos * center[0] - sin * center[1]],
            [-sin, cos, out_h / 2 + sin * center[0] - cos * center[1]],
        ],
        dtype=np.float64,
    )
    if not inverse:
        return forward
    full = np.vstack([forward, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Map (N, 2) points with a 2x3 matrix."""
    return points @ matrix[:, :2].T + matrix[:, 2]
