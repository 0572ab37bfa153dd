"""A candidate's short fine-tune before it is scored: N optimizer steps of its extracted network on fixed, seeded
training batches (the same for every genome), so that inherited weights shared by many genomes adapt to this one.

The batches are cropped once (`finetune_batches`) and reused for every genome; the steps use the recipe's loss and
Adam at the recipe's peak learning rate, decayed linearly to zero over the N steps. BatchNorm uses batch statistics
meanwhile; the scorer recalibrates the running statistics afterwards (`supernet.calibrate`).
"""

from __future__ import annotations

import torch
from torch import nn

from pose.dataset import TopDownDataset, model_input
from pose.device import CPU, Device
from pose.losses import LOSSES
from pose.train import Data, Recipe

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # uint8 images, target heatmaps, joint weights


def finetune_batches(data: Data, recipe: Recipe, steps: int, seed: int = 0) -> list[Batch]:
    """`steps` batches of `recipe.batch` augmented training crops, the people drawn by a permutation seeded by
    `seed` (repeated if the data has fewer), on the CPU."""
    if steps < 1:
        raise ValueError(f"--finetune-steps {steps}: need at least one step")
    dataset = TopDownDataset(data.train, recipe.input_hw, True, recipe.augment, seed, sigma=recipe.sigma)
    generator = torch.Generator().manual_seed(seed)
    needed = steps * recipe.batch
    order: list[int] = []
    while len(order) < needed:
        order += torch.randperm(len(dataset), generator=generator).tolist()
    batches = []
    for step in range(steps):
        items = [dataset[(0, i)] for i in order[step * recipe.batch : (step + 1) * recipe.batch]]
        batches.append(tuple(torch.stack([torch.as_tensor(item[k]) for item in items]) for k in range(3)))
    return batches


def finetune(model: nn.Module, batches: list[Batch], recipe: Recipe, device: Device = CPU) -> nn.Module:
    """`len(batches)` steps of Adam on `model` (in place, on `device`), then eval mode. Returns `model`."""
    loss_fn = LOSSES[recipe.loss].loss
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    scaler = device.grad_scaler()  # float16: loss scaling, as training has it
    model.train()
    for step, (images, targets, weights) in enumerate(batches):
        for group in optimizer.param_groups:
            group["lr"] = recipe.lr * (1 - step / len(batches))
        targets, weights = targets.to(device.device), weights.to(device.device)
        with device.autocast():
            loss = loss_fn(model(model_input(images, device)), targets, weights)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return model.eval()
