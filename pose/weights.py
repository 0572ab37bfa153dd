"""Trained weights read back from a checkpoint (`hrnas train --out`, `hrnas supernet eval --save`) on any device."""

from __future__ import annotations

from pathlib import Path

import torch

from search_space.genome import Genome


def load_model_weights(path: Path, genome: Genome, option: str = "--checkpoint") -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint, on the CPU whatever device wrote them, checked to belong to `genome` (a
    checkpoint of another architecture would load into the wrong layers or fail half-way). `option` is the command
    line option that named the file, for the error messages."""
    if not path.is_file():
        raise ValueError(f"{option} {path}: no such file; give the checkpoint.pt in a `hrnas train --out` folder "
                         "or a network saved by `hrnas supernet eval --save`")  # fmt: skip
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file: pickle, zip and torch each raise their own
        raise ValueError(f"{option} {path}: not a readable PyTorch checkpoint ({exc})") from None
    if not isinstance(state, dict) or "model" not in state or "meta" not in state:
        raise ValueError(f"{option} {path}: not a `hrnas train` checkpoint (no model weights and meta)")
    trained = state["meta"].get("genome")
    if trained is None or Genome.from_canonical(trained).canonical_line() != genome.canonical_line():
        raise ValueError(f"{option} {path} holds {trained}, not {genome.canonical_line()}: give its --arch and --gene")
    return state["model"]


def save_model_weights(path: Path, model: torch.nn.Module, genome: Genome, meta: dict | None = None) -> Path:
    """A checkpoint of the network alone (what `load_model_weights` reads), written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    state = {
        name: value.detach().clone(memory_format=torch.contiguous_format) for name, value in model.state_dict().items()
    }
    torch.save({"model": state, "meta": {**(meta or {}), "genome": genome.canonical_line()}}, tmp)
    tmp.replace(path)
    return path
