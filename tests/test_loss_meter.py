"""The training loops' running loss (pose.loss_meter): read by the host every SYNC_EVERY steps and at the epoch's
end only, non-finite losses an error naming their step, or skipped steps under float16 loss scaling; and the loops
themselves make no host sync per step."""

import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import pose.train as pose_train
from pose.loss_meter import SYNC_EVERY, LossMeter
from pose.train import train
from tests.test_training import RECIPE, TINY, mini_data

assert mini_data  # the fixture, imported for these tests
ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def test_the_mean_is_of_the_finite_losses_and_known_only_once_read():
    meter = LossMeter(CPU, epoch=0)
    for value in (1.0, 2.0, 6.0):
        meter.add(torch.tensor(value))
    assert meter.mean is None  # nothing read yet: no sync happened
    assert meter.read() == 3.0 and meter.skipped == 0


def test_a_non_finite_loss_is_an_error_naming_its_step_at_the_next_read():
    meter = LossMeter(CPU, epoch=2)
    meter.add(torch.tensor(1.0))
    meter.add(torch.tensor(math.nan), "genome width=8")
    meter.add(torch.tensor(math.inf))
    with pytest.raises(FloatingPointError, match=r"loss became nan at epoch 3, step 2 \(genome width=8\)"):
        meter.read()


def test_the_host_reads_every_sync_every_steps():
    meter = LossMeter(CPU, epoch=0)
    for _ in range(SYNC_EVERY - 1):
        meter.add(torch.tensor(2.0))
    assert meter.mean is None
    meter.add(torch.tensor(4.0))
    assert meter.mean == pytest.approx((2.0 * (SYNC_EVERY - 1) + 4.0) / SYNC_EVERY)
    meter.add(torch.tensor(math.nan))
    with pytest.raises(FloatingPointError, match=f"step {SYNC_EVERY + 1}"):
        for _ in range(SYNC_EVERY):
            meter.add(torch.tensor(1.0))


def test_float16_overflows_are_skipped_steps_until_they_are_most_of_the_epoch():
    meter = LossMeter(CPU, epoch=0, skip_nonfinite=True)
    for value in (1.0, math.inf, 3.0):
        meter.add(torch.tensor(value))
    assert meter.read() == 2.0 and meter.skipped == 1  # a one-off overflow: skipped, not in the mean
    meter.add(torch.tensor(math.nan))
    meter.add(torch.tensor(math.inf))
    with pytest.raises(FloatingPointError, match="float16 overflowed in 3 of 5 steps of epoch 1"):
        meter.read()


PACKAGES = {"blocks", "pose", "supernet", "search_space", "nas"}  # hrnas's own code on a training's path
SYNCS = ("item", "tolist", "numpy", "__bool__", "__float__", "__int__", "__index__")


def test_the_training_loop_makes_no_host_sync_per_step(mini_data, monkeypatch):
    """Between a batch's arrival and the next batch's request, hrnas's own code never brings a tensor to the host
    (what stalls a GPU at every step); torch's optimizer reading its CPU step counters is not a device sync."""
    in_step, syncs = [False], []

    def counting(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            caller = Path(sys._getframe(1).f_code.co_filename)
            if in_step[0] and ROOT in caller.parents and caller.relative_to(ROOT).parts[0] in PACKAGES:
                syncs.append(f"{name} in {caller.relative_to(ROOT)}")
            return original(self, *args, **kwargs)

        return wrapper

    class Watched:
        def __init__(self, loader):
            self.loader = loader

        def __len__(self):
            return len(self.loader)

        def __iter__(self):
            for batch in self.loader:
                in_step[0] = True
                yield batch
                in_step[0] = False

    batches = pose_train.training_batches

    def watched_batches(*args, **kwargs):
        made = batches(*args, **kwargs)
        return replace(made, loader=Watched(made.loader))

    monkeypatch.setattr(pose_train, "training_batches", watched_batches)
    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, counting(name))
    result = train(TINY, mini_data, replace(RECIPE, epochs=1, batch=2), quiet=True)
    assert math.isfinite(result["loss"])
    assert syncs == [], syncs
