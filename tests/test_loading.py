"""Parallel, bounded data loading: workers change nothing that is computed, every cache stays within its budget
(in worker processes too), and --max-steps shortens epochs and their learning-rate schedule."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import torch

import pose.train
from pose.coco import parse_data
from pose.dataset import CropCache, ImageCache, TopDownDataset
from pose.device import CPU, Device
from pose.loading import EpochSampler, Loading, make_loader
from pose.train import load_data, train
from tests.scripts import run_script
from tests.test_training import MINI_DATA, RECIPE, TINY


@pytest.fixture(scope="module")
def mini_data():
    return load_data(parse_data(MINI_DATA))


class Traced(TopDownDataset):
    """A dataset that also returns the process that made each item and the bytes its caches held then."""

    def __getitem__(self, item):
        return *super().__getitem__(item), os.getpid(), self.cache.bytes, self.crops.bytes


def _batches(dataset, workers: int, shuffle: bool, epochs: int = 2) -> list[list[torch.Tensor]]:
    sampler = EpochSampler(len(dataset), shuffle, seed=3)
    loader = make_loader(dataset, sampler, 4, workers, CPU, seed=3)
    out = []
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        out += [list(batch) for batch in loader]
    return out


def test_workers_make_exactly_the_batches_of_the_training_process(mini_data):
    """Augmented training crops and validation crops, two epochs (persistent workers learn the epoch from the
    sampler): bit-identical with 0 and 2 workers, and the 2-worker batches really came from two other processes."""
    made = {}
    for people, is_train in ((mini_data.train, True), (mini_data.val, False)):
        alone = made[is_train] = _batches(Traced(people, (64, 64), is_train, seed=3), 0, shuffle=is_train)
        parallel = _batches(Traced(people, (64, 64), is_train, seed=3), 2, shuffle=is_train)
        assert len(alone) == len(parallel) == 2 * 3  # 12 persons, batch 4, two epochs
        for a, b in zip(alone, parallel, strict=True):
            for x, y in zip(a[:4], b[:4], strict=True):  # image, heatmaps, weights, index
                assert torch.equal(x, y)
        assert {int(pid) for batch in alone for pid in batch[4]} == {os.getpid()}
        assert len({int(pid) for batch in parallel for pid in batch[4]} - {os.getpid()}) == 2
    for is_train in (True, False):
        first, second = (torch.cat([b[0] for b in made[is_train][k * 3 : (k + 1) * 3]]) for k in range(2))
        assert torch.equal(first, second) != is_train  # training epochs differ (order, augmentation), val ones not
    by_person = [{}, {}]
    for k in range(2):
        for batch in made[True][k * 3 : (k + 1) * 3]:
            by_person[k].update(zip(batch[3].tolist(), batch[0], strict=True))
    assert all(not torch.equal(by_person[0][i], by_person[1][i]) for i in by_person[0])  # each epoch its own crops


def test_same_seed_gives_the_same_loss_and_ap_with_0_and_2_workers(mini_data):
    recipe = replace(RECIPE, epochs=2)
    alone = train(TINY, mini_data, recipe, quiet=True, loading=Loading(workers=0))
    parallel = train(TINY, mini_data, recipe, quiet=True, loading=Loading(workers=2))
    timing = {"train_seconds", "eval_seconds", "images_per_second"}
    assert [{k: v for k, v in h.items() if k not in timing} for h in alone["history"]] == [
        {k: v for k, v in h.items() if k not in timing} for h in parallel["history"]
    ]
    assert alone["loss"] == parallel["loss"] and alone["ap"] == parallel["ap"]


def test_default_workers_are_the_cpus_minus_one_except_on_a_small_cpu_and_at_least_one_on_a_gpu():
    cuda = Device(torch.device("cuda"))  # a device object only: nothing runs on it
    assert [Loading().worker_count(cpus, CPU) for cpus in (1, 2, 3, 4)] == [0, 0, 2, 3]
    assert [Loading().worker_count(cpus, cuda) for cpus in (1, 2, 4)] == [1, 1, 3]
    assert Loading(workers=3).worker_count(1, CPU) == 3
    with pytest.raises(ValueError, match="--workers"):
        Loading(workers=-1)


def test_each_loading_process_gets_its_share_of_the_budgets():
    loading = Loading(workers=2, image_cache_bytes=1000, crop_cache_bytes=100)
    assert (loading.image_share(2), loading.crop_share(2)) == (250, 50)  # 2 training + 2 validation workers
    assert (loading.image_share(0), loading.crop_share(0)) == (1000, 100)  # one process holds both


def test_a_cache_is_used_only_when_all_it_would_hold_fits():
    """A cache of part of a set read in random order hits in proportion but fills all its memory: off instead."""
    loading = Loading(workers=2, image_cache_bytes=1000, crop_cache_bytes=100)
    assert [loading.image_share(2, decoded) for decoded in (0, 250, 251)] == [250, 250, 0]
    assert [loading.image_share(0, decoded) for decoded in (1000, 1001)] == [1000, 0]
    assert [loading.crop_share(2, crops) for crops in (100, 101)] == [50, 0]  # each worker holds half the crops
    assert loading.describe(2, 251, 100) == "images not cached (0 MiB > 0 MiB budget); validation crops cached (0 MiB)"


def test_a_trial_sizes_its_caches_from_its_data(mini_data, monkeypatch):
    """train() passes the data's decoded bytes and its validation crops' bytes to the budgets."""
    made = []
    monkeypatch.setattr(pose.train, "ImageCache", lambda limit: made.append(("images", limit)) or ImageCache(limit))
    monkeypatch.setattr(pose.train, "CropCache", lambda limit: made.append(("crops", limit)) or CropCache(limit))
    fits = Loading(workers=0, image_cache_bytes=mini_data.image_bytes, crop_cache_bytes=2**30)
    short = Loading(
        workers=0, image_cache_bytes=mini_data.image_bytes - 1, crop_cache_bytes=mini_data.crop_bytes((64, 64)) - 1
    )
    for loading in (fits, short):
        train(TINY, mini_data, replace(RECIPE, epochs=1, max_steps=1), quiet=True, loading=loading)
    assert made == [("images", mini_data.image_bytes), ("crops", 2**30), ("images", 0), ("crops", 0)]


def test_validation_crops_are_uint8_kept_within_their_limit_and_recomputed_beyond(mini_data):
    crop_bytes = 64 * 64 * 3
    limited = TopDownDataset(mini_data.val, (64, 64), False, crops=CropCache(max_bytes=5 * crop_bytes - 1))
    unlimited = TopDownDataset(mini_data.val, (64, 64), False, crops=CropCache(max_bytes=2**40))
    fresh = TopDownDataset(mini_data.val, (64, 64), False, crops=CropCache(max_bytes=0))
    for _ in range(2):
        for i in range(len(mini_data.val)):
            assert torch.equal(limited[i][0], fresh[i][0]) and torch.equal(unlimited[i][0], fresh[i][0])
    assert sorted(limited.crops.crops) == [0, 1, 2, 3]  # the first that fit; the others are recomputed
    assert limited.crops.bytes == 4 * crop_bytes <= limited.crops.max_bytes
    assert len(unlimited.crops.crops) == len(mini_data.val) and fresh.crops.bytes == 0
    assert all(p.dtype == np.uint8 and p.shape == (64, 64, 3) for p in limited.crops.crops.values())


def test_caches_in_worker_processes_stay_within_their_share(mini_data):
    """Two workers, each with half of a crop budget that holds 5 crops: no worker ever holds more than 2 (its
    share), where the whole budget in one process holds 5; the same for decoded images (a quarter of the budget:
    the training loader's workers have the other half)."""
    crop_bytes = 64 * 64 * 3
    loading = Loading(workers=2, image_cache_bytes=4 * 1_400_000, crop_cache_bytes=5 * crop_bytes)
    share = loading.crop_share(2)
    dataset = Traced(mini_data.val, (64, 64), False, cache=ImageCache(loading.image_share(2)), crops=CropCache(share))
    batches = _batches(dataset, 2, shuffle=False, epochs=2)
    held = [int(b) for batch in batches for b in batch[6]]
    images = [int(b) for batch in batches for b in batch[5]]
    assert max(held) == 2 * crop_bytes <= share  # it filled its share and stopped there
    assert 0 < max(images) <= loading.image_share(2) == 1_400_000
    alone = _batches(
        Traced(
            mini_data.val,
            (64, 64),
            False,
            cache=ImageCache(loading.image_share(0)),
            crops=CropCache(loading.crop_share(0)),
        ),
        0,
        shuffle=False,
    )
    assert max(int(b) for batch in alone for b in batch[6]) == 5 * crop_bytes
    assert max(int(b) for batch in alone for b in batch[5]) > loading.image_share(2)  # all four images


def test_max_steps_shortens_each_epoch_and_its_learning_rate_schedule(mini_data, monkeypatch, tmp_path):
    calls, learning_rate = [], pose.train.learning_rate

    def traced(recipe, iteration, total):
        calls.append((iteration, total))
        return learning_rate(recipe, iteration, total)

    monkeypatch.setattr(pose.train, "learning_rate", traced)
    full = replace(RECIPE, epochs=2)  # 12 persons, batch 4: 3 steps an epoch
    train(TINY, mini_data, full, quiet=True)
    assert calls == [(i, 6) for i in range(6)]
    calls.clear()
    short = replace(full, max_steps=2)
    train(TINY, mini_data, short, out_dir=tmp_path, quiet=True)
    assert calls == [(i, 4) for i in range(4)]  # 2 steps an epoch, the schedule over 4 steps, not 6
    with pytest.raises(ValueError, match="different genome, recipe or data"):  # max_steps is in the checkpoint
        train(TINY, mini_data, full, out_dir=tmp_path, quiet=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "-1"], "--workers must be 0 or more"),
        (["--cache-mb", "-5"], "--cache-mb must be 0 or more"),
        (["--max-steps", "0"], "--max-steps must be at least 1"),
    ],
)
def test_train_cli_bad_loading_options_are_clear_errors(capsys, args, message):
    code, _, err = run_script(capsys, "train", "--arch", "litehrnet-18", *args)
    assert code == 2 and message in err
