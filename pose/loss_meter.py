"""A training loop's running loss, kept on the device: the host reads it every `SYNC_EVERY` steps and at the end of
the epoch, never at every step (a `.item()` per step stalls a GPU until its queued work is done).

A non-finite loss is an error naming the first step it happened at, found at the next read. With float16 loss
scaling (`skip_nonfinite`), GradScaler skips such a step instead: a one-off overflow is a skipped step, left out of
the mean; an epoch where more than half the steps read so far overflowed is an error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

SYNC_EVERY = 50  # steps between two reads of the loss by the host


@dataclass
class LossMeter:
    """The mean of one epoch's finite step losses, summed on `device`."""

    device: torch.device
    epoch: int  # 0-based, for messages
    skip_nonfinite: bool = False
    steps: int = 0
    mean: float | None = None  # as of the last read; None before it
    skipped: int = 0  # non-finite steps read so far (skipped by GradScaler)
    labels: list[str] = field(default_factory=list)
    _state: torch.Tensor = field(init=False)  # finite sum, finite count, first bad step (-1: none), its value
    _dtype: torch.dtype = field(init=False)

    def __post_init__(self) -> None:
        self._dtype = torch.float32 if self.device.type == "mps" else torch.float64  # MPS has no float64
        self._state = torch.tensor([0.0, 0.0, -1.0, 0.0], dtype=self._dtype, device=self.device)

    def add(self, loss: torch.Tensor, label: str = "") -> None:
        """Count one step's loss (a scalar tensor) without a host sync; `label` names the step in an error."""
        value = loss.detach().reshape(()).to(self._dtype)
        finite = torch.isfinite(value)
        first = ~finite & (self._state[2] < 0)
        update = torch.stack([
            torch.where(finite, value, 0.0),
            finite.to(self._dtype),
            torch.where(first, float(self.steps) + 1, 0.0),
            torch.where(first, value, 0.0),
        ])  # fmt: skip
        self._state = self._state + update
        self.labels.append(label)
        self.steps += 1
        if self.steps % SYNC_EVERY == 0:
            self.read()

    def read(self) -> float | None:
        """Bring the sums to the host (one sync) and check them; the mean of the finite losses so far."""
        if not self.steps:
            return None
        total, finite, first_bad, bad_value = self._state.tolist()
        self.skipped = self.steps - int(finite)
        self.mean = total / finite if finite else math.nan
        if first_bad >= 0:
            step = int(first_bad)  # stored as index + 1 on top of the initial -1
            label = f" ({self.labels[step]})" if self.labels[step] else ""
            where = f"at epoch {self.epoch + 1}, step {step + 1}{label}"
            if not self.skip_nonfinite:
                raise FloatingPointError(f"loss became {bad_value} {where}")
            if self.skipped * 2 > self.steps:
                raise FloatingPointError(
                    f"float16 overflowed in {self.skipped} of {self.steps} steps of epoch {self.epoch + 1} (the first "
                    f"{where}): train with --amp bf16 on a GPU that computes it, --amp off, or a lower --lr"
                )
        return self.mean
