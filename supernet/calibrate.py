"""BatchNorm recalibration: a subnet's running statistics re-estimated on fixed training images before it is scored.

The shared weights were trained under many genomes' batch statistics, and running statistics are never shared, so a
subnet's (or an extracted network's) BatchNorm statistics are reset and re-estimated as a cumulative average over
N calibration images, without gradients. The images are the first N of a seeded permutation of the training people,
cropped without augmentation, so a score is deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from pose.dataset import ImageCache, TopDownDataset, model_input
from pose.device import CPU, Device
from pose.train import Data, Recipe

DEFAULT_CALIBRATION = 256  # images


def calibration_images(
    data: Data, recipe: Recipe, count: int = DEFAULT_CALIBRATION, seed: int = 0, cache: ImageCache | None = None
) -> torch.Tensor:
    """The first `count` people of a seeded permutation of the training people (all of them if fewer), as
    unaugmented crops at the recipe's input size: a (count, 3, H, W) uint8 batch (`pose.dataset.to_tensor`)."""
    if count < 1:
        raise ValueError(f"--calibration {count}: need at least one calibration image")
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))[:count]
    dataset = TopDownDataset([data.train[i] for i in order.tolist()], recipe.input_hw, False, cache=cache)
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def _batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def calibrate(
    model: nn.Module,
    images: torch.Tensor | Iterable[torch.Tensor],
    device: Device = CPU,
    batch: int = 64,
) -> nn.Module:
    """Reset the BatchNorm running statistics of `model` and re-estimate them as the cumulative average (momentum
    None) over uint8 `images` (a tensor, cut in batches of `batch`, or an iterable of batches), in train mode without
    gradients; then leave `model` in eval mode. `model` is an extracted network or a subnet inside the supernet,
    `supernet.network(genome)` (which leaves the supernet in eval mode too). Returns `model`."""
    norms = _batch_norms(model)
    if not norms:
        raise ValueError("the model has no BatchNorm layer to calibrate")
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    batches = images.split(batch) if isinstance(images, torch.Tensor) else images
    model.train()
    try:
        for chunk in batches:
            with device.autocast():
                model(model_input(chunk, device))
    finally:
        for bn, momentum in zip(norms, momenta, strict=True):
            bn.momentum = momentum
        model.eval()
    return model
