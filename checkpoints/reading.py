"""A checkpoint file's tensors read without running code from the file: torch's weights-only loader, or, where only
non-tensor metadata (an mmcv Config, a numpy scalar, an mmengine message hub) stops it, an unpickler that turns every
class outside torch's safe list into an inert placeholder and says which it skipped."""

from __future__ import annotations

import pickle
import types
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch._weights_only_unpickler import _get_allowed_globals


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit: one line for the user."""


class Placeholder:
    """Stands in for an object of a class the file names but that is not loaded: keeps its name, runs nothing."""

    qualname = "?"

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        pass

    def __repr__(self) -> str:
        return f"<skipped {self.qualname}>"


@dataclass
class RawCheckpoint:
    """What a file holds: its top-level object and the classes of metadata skipped to read it (empty when torch's
    weights-only loader read it whole)."""

    content: object
    skipped: list[str] = field(default_factory=list)


def restricted_pickle_module(skipped: set[str]) -> types.ModuleType:
    """A `pickle` stand-in for torch.load whose Unpickler loads torch's safe globals and nothing else."""
    allowed = _get_allowed_globals()
    placeholders: dict[str, type] = {}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str):
            qualname = f"{module}.{name}"
            if qualname in allowed:
                return allowed[qualname]
            skipped.add(qualname)
            if qualname not in placeholders:
                placeholders[qualname] = type(name, (Placeholder,), {"qualname": qualname})
            return placeholders[qualname]

    module = types.ModuleType("restricted_pickle")
    module.Unpickler = Unpickler
    module.load = pickle.load
    module.__name__ = "restricted_pickle"
    return module


def read_checkpoint(path: Path, option: str) -> RawCheckpoint:
    """The file's content on the CPU. One clear line (CheckpointError) for a missing, truncated or foreign file."""
    if not path.is_file():
        raise CheckpointError(f"{option} {path}: no such file")
    try:
        return RawCheckpoint(torch.load(path, map_location="cpu", weights_only=True))
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" not in str(exc):
            raise CheckpointError(f"{option} {path}: not a PyTorch checkpoint ({first_line(exc)})") from None
    except Exception as exc:  # zip, torch and pickle each raise their own for a damaged or foreign file
        raise CheckpointError(f"{option} {path}: not a readable PyTorch checkpoint, truncated or damaged? "
                              f"({first_line(exc)})") from None  # fmt: skip
    skipped: set[str] = set()
    try:
        unpickler = restricted_pickle_module(skipped)
        content = torch.load(path, map_location="cpu", weights_only=False, pickle_module=unpickler)
    except Exception as exc:  # a tensor rebuilt by the file's own code fails on its placeholder
        if skipped:
            raise CheckpointError(needs_code(path, option, sorted(skipped), exc)) from None
        raise CheckpointError(f"{option} {path}: not a PyTorch checkpoint ({first_line(exc)})") from None
    return RawCheckpoint(content, sorted(skipped))


def needs_code(path: Path, option: str, classes: list[str], exc: BaseException | None = None) -> str:
    why = f": {first_line(exc)}" if exc is not None else ""
    return (f"{option} {path}: its weights need code to unpickle ({', '.join(classes) or 'unknown'}{why}); hrnas runs "
            "no code from a checkpoint file: save the model's state_dict() as plain tensors and load that")  # fmt: skip


def first_line(exc: BaseException) -> str:
    """The exception's first sentence: torch's messages run to paragraphs."""
    text = str(exc).strip().splitlines()
    return text[0].split(". ")[0].rstrip(".") if text else type(exc).__name__
