"""Gaussian heatmap targets with per-joint weights."""

from __future__ import annotations

import numpy as np


def gaussian_heatmaps(
    joints: np.ndarray, visible: np.ndarray, heatmap_wh: tuple[int, int], sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps (J, h, w) with a unit-peak Gaussian at each joint (heatmap pixels, sub-pixel centre), and weights.

    A joint's weight is 0 when it is unlabelled or its centre lies outside the heatmap (nothing to learn there).
    """
    width, height = heatmap_wh
    xs = np.arange(width, dtype=np.float32)
    ys = np.arange(height, dtype=np.float32)
    inside = (
        (joints[:, 0] >= -0.5) & (joints[:, 0] < width - 0.5) & (joints[:, 1] >= -0.5) & (joints[:, 1] < height - 0.5)
    )
    weights = (visible > 0) & inside
    gx = np.exp(-((xs[None, :] - joints[:, :1]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((ys[None, :] - joints[:, 1:2]) ** 2) / (2 * sigma**2))
    heatmaps = gy[:, :, None] * gx[:, None, :]
    heatmaps[~weights] = 0
    return heatmaps.astype(np.float32), weights.astype(np.float32)


def default_sigma(heatmap_wh: tuple[int, int]) -> float:
    """Sigma 2 at the published 48x64 heatmap, scaled with the heatmap width, never below 1.5 (a narrower
    Gaussian covers too few pixels at small heatmaps for the short recipe to find it)."""
    return max(1.5, 2.0 * heatmap_wh[0] / 48)
