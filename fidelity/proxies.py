"""Zero-cost proxies: a genome's score at initialisation, from one batch and no training.

Written for these networks (multi-branch, channel weighting, dynamic kernels) after the papers that define them:
- `synflow` (Tanaka et al., NeurIPS 2020): the network in float64 with every parameter and buffer made positive,
  BatchNorm in eval mode (its fresh statistics make it an affine map), an all-ones input; the sum over conv and
  linear weights of |w * dR/dw| where R is the sum of the outputs. Reported as log10 (the raw sum overflows easily;
  ranks are unchanged).
- `naswot` (Mellor et al., ICML 2021): the binary codes of every ReLU's output over a batch of N crops; the score is
  log |K| with K = C C^T + (1-C)(1-C)^T (Hamming-similarity kernel of the codes).
- `grad-norm` (Abdelfattah et al., ICLR 2021): the sum over conv and linear weights of ||dL/dw||, L the training
  loss (the recipe's heatmap loss) on one batch.
- `snip` (Lee et al., ICLR 2019, as a NAS proxy in Abdelfattah et al.): the sum over conv and linear weights of
  |w * dL/dw| on the same batch.
Each network is the seeded initialisation the training would start from (`pose.train.build_model`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pose.dataset import TopDownDataset, normalise
from pose.losses import LOSSES
from pose.train import Data, Recipe, build_model
from search_space.genome import Genome

BATCH = 32  # crops of the proxies' one batch (naswot's kernel is BATCH x BATCH)
WEIGHTED = (nn.Conv2d, nn.Linear)


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor


def proxy_batch(data: Data, recipe: Recipe, size: int = BATCH, seed: int = 0) -> Batch:
    """`size` augmented training crops, the same for every genome (drawn with `seed`)."""
    dataset = TopDownDataset(data.train, recipe.input_hw, True, recipe.augment, seed, sigma=recipe.sigma)
    picks = np.random.default_rng(seed).choice(len(dataset), size=min(size, len(dataset)), replace=False)
    items = [dataset[int(i)] for i in picks]
    images, targets, weights = (torch.stack([item[k] for item in items]) for k in range(3))
    return Batch(normalise(images), targets, weights)


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, WEIGHTED) and m.weight is not None]


def _loss_gradients(model: nn.Module, batch: Batch, recipe: Recipe) -> list[tuple[torch.Tensor, torch.Tensor]]:
    model.train()
    model.zero_grad(set_to_none=True)
    loss = LOSSES[recipe.loss].loss(model(batch.images), batch.targets, batch.weights)
    loss.backward()
    return [(w.detach(), w.grad.detach()) for w in _weights(model) if w.grad is not None]


def grad_norm(model: nn.Module, batch: Batch, recipe: Recipe) -> float:
    return float(sum(g.norm() for _, g in _loss_gradients(model, batch, recipe)))


def snip(model: nn.Module, batch: Batch, recipe: Recipe) -> float:
    return float(sum((w * g).abs().sum() for w, g in _loss_gradients(model, batch, recipe)))


def synflow(model: nn.Module, batch: Batch, recipe: Recipe) -> float:
    net = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for tensor in net.state_dict().values():
            if tensor.is_floating_point():
                tensor.abs_()
    net.zero_grad(set_to_none=True)
    ones = torch.ones((1, *batch.images.shape[1:]), dtype=torch.float64)
    net(ones).sum().backward()
    total = sum(float((w.detach() * w.grad).abs().sum()) for w in _weights(net) if w.grad is not None)
    return math.log10(total) if total > 0 else -math.inf


def naswot(model: nn.Module, batch: Batch, recipe: Recipe) -> float:
    codes: list[torch.Tensor] = []

    def keep(module, inputs, output) -> None:
        codes.append((output.detach() > 0).flatten(1).double())

    hooks = [m.register_forward_hook(keep) for m in model.modules() if isinstance(m, nn.ReLU)]
    if not hooks:
        raise ValueError("naswot needs ReLU activations; this network has none")
    model.train()
    with torch.no_grad():
        model(batch.images)
    for hook in hooks:
        hook.remove()
    c = torch.cat(codes, dim=1)
    kernel = c @ c.T + (1 - c) @ (1 - c).T
    return float(torch.linalg.slogdet(kernel).logabsdet)


PROXIES: dict[str, Callable[[nn.Module, Batch, Recipe], float]] = {
    "synflow": synflow,
    "naswot": naswot,
    "grad-norm": grad_norm,
    "snip": snip,
}


def proxy_score(name: str, genome: Genome, batch: Batch, recipe: Recipe, joints: int = 17) -> float:
    """Proxy `name` of `genome`'s seeded initialisation (recipe.seed), reference layout, on CPU."""
    torch.set_num_threads(recipe.threads)
    model = build_model(genome, recipe, joints)
    return PROXIES[name](model, batch, recipe)
