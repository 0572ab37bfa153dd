"""Weights drawn from a generator seeded by each tensor's name: the equivalence fixtures' weights, drawn again by tests.

Imports torch alone, so that tools/official_fixtures.py can draw the same weights for the official models in a
scratch environment. BatchNorm running statistics are drawn far from 0 and 1 (means of magnitude 0.5-1.5,
variances 2-4), so that a network that skips or misplaces a BatchNorm gives another output.
"""

from __future__ import annotations

import math
import zlib

import torch

INPUT_SHAPE = (1, 3, 64, 64)  # the fixtures' input: small, yet every branch of a 4-branch network is 2x2 or more
INPUT_SEED = 20261207


def seeded_tensor(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The float64 (int64 for a BatchNorm's batch counter) value of the tensor called `name`, from its name alone."""
    generator = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.zeros(shape, dtype=torch.int64)
    uniform = torch.rand(shape, generator=generator, dtype=torch.float64)
    if leaf == "running_var":
        return 2 + 2 * uniform
    if leaf == "running_mean":
        sign = torch.where(torch.rand(shape, generator=generator, dtype=torch.float64) < 0.5, -1.0, 1.0)
        return sign * (0.5 + uniform)
    if len(shape) <= 1:  # a norm's scale or any bias
        return 0.5 + uniform if leaf == "weight" else 0.4 * (uniform - 0.5)
    fan_in = math.prod(shape[2:] if len(shape) == 5 else shape[1:])  # a dynamic kernel bank is (K, out, in, k, k)
    return torch.randn(shape, generator=generator, dtype=torch.float64) / math.sqrt(fan_in)


def seeded_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """A state dict of `seeded_tensor`s, one per name."""
    return {name: seeded_tensor(name, tuple(shape)) for name, shape in shapes.items()}


def seeded_input() -> torch.Tensor:
    """The fixtures' float64 input image batch."""
    return torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(INPUT_SEED), dtype=torch.float64)
