"""Heatmaps -> keypoints: argmax + quarter offset, optional flip test with heatmap shift, back to the image."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from pose.geometry import affine_matrix, apply_affine, flip_permutation


def argmax_quarter_offset(heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, J, h, w) -> coordinates (N, J, 2) in heatmap pixels and peak values (N, J).

    The peak moves a quarter pixel towards the higher neighbour on each axis (the standard refinement).
    """
    n, j, h, w = heatmaps.shape
    flat = heatmaps.reshape(n, j, -1)
    index = flat.argmax(-1)
    maxvals = np.take_along_axis(flat, index[..., None], -1)[..., 0]
    xs, ys = (index % w).astype(np.float64), (index // w).astype(np.float64)
    coords = np.stack([xs, ys], -1)
    xi, yi = xs.astype(int), ys.astype(int)
    ni, ji = np.meshgrid(np.arange(n), np.arange(j), indexing="ij")
    inner_x = (xi > 0) & (xi < w - 1)
    inner_y = (yi > 0) & (yi < h - 1)
    dx = heatmaps[ni, ji, yi, np.clip(xi + 1, 0, w - 1)] - heatmaps[ni, ji, yi, np.clip(xi - 1, 0, w - 1)]
    dy = heatmaps[ni, ji, np.clip(yi + 1, 0, h - 1), xi] - heatmaps[ni, ji, np.clip(yi - 1, 0, h - 1), xi]
    coords[..., 0] += np.where(inner_x, np.sign(dx) * 0.25, 0)
    coords[..., 1] += np.where(inner_y, np.sign(dy) * 0.25, 0)
    coords[maxvals <= 0] = 0
    return coords, maxvals


@torch.no_grad()
def predict_heatmaps(
    model: torch.nn.Module,
    images: torch.Tensor,
    flip_test: bool,
    to_heatmaps: Callable[[torch.Tensor], torch.Tensor] = lambda output: output,
) -> np.ndarray:
    """Model heatmaps, averaged with the heatmaps of the mirrored crop (flipped back, shifted 1 px) if asked.

    `to_heatmaps` turns the raw output into unit-peak heatmaps (see pose.losses) before the two are averaged.
    """
    heatmaps = to_heatmaps(model(images))
    if flip_test:
        flipped = to_heatmaps(model(images.flip(-1))).flip(-1)
        flipped = flipped[:, flip_permutation(flipped.shape[1])]
        flipped[..., 1:] = flipped[..., :-1].clone()
        heatmaps = (heatmaps + flipped) / 2
    return heatmaps.float().cpu().numpy()


def to_image_coordinates(coords: np.ndarray, center: np.ndarray, size: np.ndarray, heatmap_wh) -> np.ndarray:
    """Heatmap pixels of one person's crop (no rotation at test time) -> image pixels."""
    inverse = affine_matrix(center, size, 0.0, heatmap_wh, inverse=True)
    return apply_affine(coords, inverse)
