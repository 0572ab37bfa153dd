"""A network written as a checkpoint (`hrnas supernet eval --save`), read back by checkpoints.load."""

from __future__ import annotations

from pathlib import Path

import torch

from search_space.genome import Genome


def save_model_weights(path: Path, model: torch.nn.Module, genome: Genome, meta: dict | None = None) -> Path:
    """A checkpoint of the network alone (`{model, meta}` with its genome), written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = {
        name: value.detach().clone(memory_format=torch.contiguous_format) for name, value in model.state_dict().items()
    }
    torch.save({"model": state, "meta": {**(meta or {}), "genome": genome.canonical_line()}}, tmp)
    tmp.replace(path)
    return path
