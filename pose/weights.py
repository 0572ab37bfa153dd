"""A network written as a checkpoint (`hrnas supernet eval --save`), read back by checkpoints.load."""

from __future__ import annotations

from pathlib import Path

import torch

from search_space.genome import Genome


def save_model_weights(path: Path, model: torch.nn.Module, genome: Genome, meta: dict | None = None) -> Path:
    """A checkpoint of the network alone (`{model, meta}` with its genome), written whole or not at all."""
    state = {
        name: value.detach().clone(memory_format=torch.contiguous_format) for name, value in model.state_dict().items()
    }
    return save_state(path, state, genome, meta)


def save_state(path: Path, state: dict[str, torch.Tensor], genome: Genome, meta: dict | None = None) -> Path:
    """A network's state dict as the checkpoint `save_model_weights` writes."""
    return save_checkpoint(path, {"model": state, "meta": {**(meta or {}), "genome": genome.canonical_line()}})


def save_checkpoint(path: Path, content: dict) -> Path:
    """`torch.save(content)` to `path`, written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(content, tmp)
    tmp.replace(path)
    return path
