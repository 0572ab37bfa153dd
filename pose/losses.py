"""Heatmap losses, and how each one's network output is read back as unit-peak heatmaps for decoding.

- `mse`: the published loss (mmpose's JointsMSELoss with target weights, its x0.5 dropped). The network regresses
  the unit-peak Gaussian directly. In a short training it first settles on the all-zero map (a deep, flat
  minimum: the Gaussian covers ~1% of the pixels) and needs thousands of steps to leave it.
- `softmax-ce`: each joint's map is a distribution over pixels (spatial softmax); the loss is its cross-entropy
  against the Gaussian normalised to sum 1. No all-zero minimum exists, so localisation is learned from the first
  steps. For decoding, the probabilities are multiplied by the Gaussian's sum (2 pi sigma^2), so that a perfect
  prediction peaks at 1 like an MSE target: peak values stay comparable confidences for the rescoring threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch


def weighted_mse(output: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean squared error per heatmap pixel, each joint weighted by its target weight."""
    per_joint = (output - targets).square().mean(dim=(2, 3))
    return (per_joint * weights).mean()


def softmax_cross_entropy(output: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the spatial softmax against the normalised Gaussian, averaged over weighted joints."""
    n, j = output.shape[:2]
    log_p = torch.log_softmax(output.reshape(n, j, -1).float(), dim=-1)
    mass = targets.reshape(n, j, -1)
    mass = mass / mass.sum(-1, keepdim=True).clamp_min(1e-12)
    per_joint = -(mass * log_p).sum(-1)
    return (per_joint * weights).sum() / weights.sum().clamp_min(1.0)


def identity_heatmaps(output: torch.Tensor, sigma: float) -> torch.Tensor:
    return output


def softmax_heatmaps(output: torch.Tensor, sigma: float) -> torch.Tensor:
    n, j, h, w = output.shape
    p = torch.softmax(output.reshape(n, j, -1).float(), dim=-1).reshape(n, j, h, w)
    return p * (2 * math.pi * sigma**2)


def joint_count(weights: torch.Tensor) -> torch.Tensor:
    return torch.tensor(float(weights.numel()), device=weights.device)


def weight_mass(weights: torch.Tensor) -> torch.Tensor:
    return weights.sum().float()


@dataclass(frozen=True)
class HeatmapLoss:
    loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    to_heatmaps: Callable[[torch.Tensor, float], torch.Tensor]
    # What the loss is an average over, from a batch's target weights: data-parallel training weighs each rank's
    # loss by its share of the global batch's denominator, so that averaged gradients equal one process's.
    denominator: Callable[[torch.Tensor], torch.Tensor]


LOSSES: dict[str, HeatmapLoss] = {
    "mse": HeatmapLoss(weighted_mse, identity_heatmaps, joint_count),
    "softmax-ce": HeatmapLoss(softmax_cross_entropy, softmax_heatmaps, weight_mass),
}
