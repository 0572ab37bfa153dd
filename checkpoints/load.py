"""Weights for one network from any supported checkpoint file: read safely, layout detected, renamed, and checked
tensor for tensor against the network (strict unless partial loading is asked for)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from checkpoints.formats import FORMATS, Renamed, detect, family_of, to_hrnas
from checkpoints.reading import CheckpointError, Placeholder, needs_code, read_checkpoint
from search_space.genome import Genome

SHOWN = 3  # offending keys named in an error line
FIT_HINT = "give the checkpoint of this --arch (and --joints), or --allow-partial to load what fits"


@dataclass
class Weights:
    """A checkpoint's tensors under hrnas's names, before they meet a network."""

    path: Path
    option: str
    layout: str  # `hrnas` or a checkpoints.formats.FORMATS name
    renamed: Renamed
    skipped_metadata: list[str] = field(default_factory=list)
    recipe: dict | None = None  # an hrnas checkpoint's training recipe (how its output becomes heatmaps)

    def describe(self) -> str:
        title = "hrnas" if self.layout == "hrnas" else FORMATS[self.layout].title
        text = f"{self.path}: {title} layout, {len(self.renamed.state)} tensors"
        if self.renamed.ignored:
            text += f"; left {len(self.renamed.ignored)} non-network keys ({shorten(self.renamed.ignored)})"
        if self.skipped_metadata:
            text += f"; skipped metadata of classes {', '.join(self.skipped_metadata)} (not loaded, not run)"
        return text

    def fit(self, expected: dict[str, torch.Tensor], partial: bool = False, hint: str = FIT_HINT) -> Fitted:
        """The tensors `expected` (a network's state dict) takes from this file. Strict: a missing, unexpected or
        wrongly shaped tensor is one CheckpointError line naming the first few; `partial` loads what fits and
        lists the rest."""
        state = self.renamed.state
        missing = [name for name in expected if name not in state]
        unexpected = [self.renamed.source[name] for name in state if name not in expected] + self.renamed.foreign
        other_shape = [
            name for name, value in state.items() if name in expected and value.shape != expected[name].shape
        ]
        source = self.renamed.source
        reshaped = [
            f"{source[name]} {tuple(state[name].shape)} where the network has {tuple(expected[name].shape)}"
            for name in other_shape
        ]
        if not partial and (missing or unexpected or reshaped):
            problems = [
                f"{len(items)} {what} ({shorten(items)})"
                for items, what in ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape"))
                if items
            ]
            raise CheckpointError(f"{self.option} {self.path} does not fit this network: {'; '.join(problems)}; {hint}")
        fitting = {n: v for n, v in state.items() if n in expected and n not in other_shape}
        return Fitted(fitting, missing + other_shape, unexpected)


@dataclass
class Fitted:
    state: dict[str, torch.Tensor]
    left: list[str]  # the network's tensors the file did not set (partial loading)
    unused: list[str]  # the file's keys that went nowhere (partial loading)

    def describe(self) -> str:
        text = f"loaded {len(self.state)} tensors"
        if self.left:
            text += f"; {len(self.left)} keep their initialisation ({shorten(self.left)})"
        if self.unused:
            text += f"; {len(self.unused)} of the file's unused ({shorten(self.unused)})"
        return text


def shorten(items: list[str]) -> str:
    return ", ".join(items[:SHOWN]) + (f", ... {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def state_dict_of(content: object, path: Path, option: str) -> tuple[dict, dict]:
    """The state dict a file holds, and an hrnas checkpoint's metadata (its genome, its recipe)."""
    if isinstance(content, dict) and "model" in content and "meta" in content:  # `hrnas train --out`
        return content["model"], content["meta"] or {}
    if isinstance(content, dict) and isinstance(content.get("state_dict"), dict):  # mmpose, the authors' repos
        return content["state_dict"], {}
    if isinstance(content, dict) and content and all(isinstance(k, str) for k in content):  # a bare state dict
        return content, {}
    raise CheckpointError(f"{option} {path}: not a checkpoint (no state dict in a {type(content).__name__})")


def read_weights(path: Path, genome: Genome, option: str = "--checkpoint") -> Weights:
    """The file's weights under hrnas's names for `genome`, its layout detected. Errors are one line."""
    raw = read_checkpoint(path, option)
    state, meta = state_dict_of(raw.content, path, option)
    trained = meta.get("genome")
    code = sorted({type(v).qualname for v in state.values() if isinstance(v, Placeholder)})
    if code:
        raise CheckpointError(needs_code(path, option, code))
    others = sorted({type(v).__name__ for v in state.values() if not isinstance(v, torch.Tensor)})
    if others:
        raise CheckpointError(f"{option} {path}: its state dict holds {', '.join(others)} besides tensors")
    if trained is not None and Genome.from_canonical(trained).canonical_line() != genome.canonical_line():
        raise CheckpointError(f"{option} {path} holds {trained}, not {genome.canonical_line()}: give its --arch")
    try:
        layout = detect(state)
        renamed = to_hrnas(state, layout, family_of(genome))
    except CheckpointError as exc:
        raise CheckpointError(f"{option} {path}: {exc}") from None
    recipe = json.loads(meta["recipe"]) if isinstance(meta.get("recipe"), str) else None
    return Weights(path, option, layout, renamed, raw.skipped, recipe)


def load_into(model: torch.nn.Module, weights: Weights, partial: bool = False) -> Fitted:
    """Set `model`'s tensors from `weights` (strict unless `partial`)."""
    fitted = weights.fit(model.state_dict(), partial)
    model.load_state_dict(fitted.state, strict=not partial)
    return fitted
