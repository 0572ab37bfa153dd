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


def taylor_refine(heatmaps: np.ndarray, coords: np.ndarray, maxvals: np.ndarray) -> np.ndarray:
    """Sub-pixel peaks from a second-order Taylor step on the log-heatmap at the integer argmax (as in DARK).

    The log of a Gaussian is a quadratic, so for a Gaussian-shaped prediction the step lands on its exact centre,
    where the quarter offset can only move a quarter pixel. With the softmax-ce loss the log-heatmap is the
    network's own output (up to a constant). Peaks on the border, or where the log-heatmap is not locally
    concave, keep their integer position. `coords` are integer argmax positions (N, J, 2).
    """
    n, j, h, w = heatmaps.shape
    log = np.log(np.maximum(heatmaps, 1e-10))
    xi, yi = coords[..., 0].astype(int), coords[..., 1].astype(int)
    inner = (xi > 0) & (xi < w - 1) & (yi > 0) & (yi < h - 1) & (maxvals > 0)
    xc, yc = np.clip(xi, 1, w - 2), np.clip(yi, 1, h - 2)
    ni, ji = np.meshgrid(np.arange(n), np.arange(j), indexing="ij")

    def at(dy: int, dx: int) -> np.ndarray:
        return log[ni, ji, yc + dy, xc + dx]

    centre = at(0, 0)
    gx, gy = (at(0, 1) - at(0, -1)) / 2, (at(1, 0) - at(-1, 0)) / 2
    hxx, hyy = at(0, 1) - 2 * centre + at(0, -1), at(1, 0) - 2 * centre + at(-1, 0)
    hxy = (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / 4
    det = hxx * hyy - hxy**2
    concave = inner & (hxx < 0) & (det > 1e-12)
    safe = np.where(concave, det, 1.0)
    ox = -(hyy * gx - hxy * gy) / safe
    oy = -(hxx * gy - hxy * gx) / safe
    refined = coords.astype(np.float64).copy()
    refined[..., 0] += np.where(concave, np.clip(ox, -1, 1), 0)
    refined[..., 1] += np.where(concave, np.clip(oy, -1, 1), 0)
    return refined


def decode_peaks(heatmaps: np.ndarray, method: str = "quarter") -> tuple[np.ndarray, np.ndarray]:
    """Coordinates and peak values with the named sub-pixel method (`quarter` offset or `taylor` step)."""
    coords, maxvals = argmax_quarter_offset(heatmaps)
    if method == "quarter":
        return coords, maxvals
    if method != "taylor":
        raise ValueError(f"unknown decoding {method!r}; choose quarter or taylor")
    n, j, h, w = heatmaps.shape
    index = heatmaps.reshape(n, j, -1).argmax(-1)
    integer = np.stack([index % w, index // w], -1).astype(np.float64)
    refined = taylor_refine(heatmaps, integer, maxvals)
    refined[maxvals <= 0] = 0
    return refined, maxvals


DECODERS = ("quarter", "taylor")


@torch.no_grad()
def predict_heatmaps(
    model: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    flip_test: bool,
    to_heatmaps: Callable[[torch.Tensor], torch.Tensor] = lambda output: output,
) -> np.ndarray:
    """Model heatmaps, averaged with the heatmaps of the mirrored crop (flipped back, shifted 1 px) if asked.

    `to_heatmaps` turns the raw output into unit-peak heatmaps (see pose.losses) before the two are averaged, in
    float32 whatever precision the model computed in (an autocast model's bfloat16 or float16 output).
    """
    heatmaps = to_heatmaps(model(images).float())
    if flip_test:
        flipped = to_heatmaps(model(images.flip(-1)).float()).flip(-1)
        flipped = flipped[:, flip_permutation(flipped.shape[1])]
        flipped[..., 1:] = flipped[..., :-1].clone()
        heatmaps = (heatmaps + flipped) / 2
    return heatmaps.cpu().numpy()


def to_image_coordinates(coords: np.ndarray, center: np.ndarray, size: np.ndarray, heatmap_wh) -> np.ndarray:
    """Heatmap pixels of one person's crop (no rotation at test time) -> image pixels."""
    inverse = affine_matrix(center, size, 0.0, heatmap_wh, inverse=True)
    return apply_affine(coords, inverse)
