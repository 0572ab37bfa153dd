"""How batches are made: worker processes, pinned memory and the cache budgets (never what is computed).

Every crop is seeded by (seed, epoch, person), so a result does not depend on which process computed it: the same
seed gives the same loss and AP with 0 or N workers. The sampler hands each worker (epoch, person) pairs, so
persistent workers, started once per training, always know the epoch they are computing for.

Cache budgets are per trial: with workers, each process that holds a cache gets its share, so the whole trial
stays within the limit (see `Loading`). A cache is used only when everything it would hold fits in its share: a
cache of part of a set read in random order hits in proportion (about 2 % of COCO's train2017 at 2 GiB) yet fills all
of its memory (bench/RESULTS.md, issue 24: a 5 GiB trial became 2.8 GiB).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from pose.device import Device

MIB = 2**20
SMALL_CPU = 2  # CPUs at and below which CPU training loads data in the training process (see Loading)
IMAGE_CACHE_BYTES = 2048 * MIB  # decoded training and validation images (pose.dataset.ImageCache), per trial
CROP_CACHE_BYTES = 256 * MIB  # uint8 validation crops (pose.dataset.CropCache), per trial


@dataclass(frozen=True)
class Loading:
    """Worker processes and cache budgets of one trial (speed and memory only: not part of the recipe).

    workers: DataLoader worker processes per loader (None: the trial's CPUs minus one, at least 0). Training and
    validation each have a persistent loader, so 2 x workers processes load data; each holds
    `image_cache_bytes / (2 x workers)` of decoded images, and each validation worker `crop_cache_bytes / workers`
    of validation crops. Without workers the training process holds both budgets whole.
    """

    workers: int | None = None
    image_cache_bytes: int = IMAGE_CACHE_BYTES
    crop_cache_bytes: int = CROP_CACHE_BYTES

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"--workers must be 0 or more, got {self.workers}")
        if self.image_cache_bytes < 0 or self.crop_cache_bytes < 0:
            raise ValueError("cache budgets must be 0 or more bytes")

    def worker_count(self, cpus: int, device: Device) -> int:
        """The explicit worker count, or the trial's CPUs minus one (the training process keeps one). On the CPU
        with two CPUs or fewer, none: the model step then needs both cores, and a worker beside the two torch
        threads made the default `hrnas train` 2-5 % slower on a 2-core machine (bench/RESULTS.md). On a GPU at
        least one, even with one CPU: the training process mostly waits on the GPU, which would otherwise wait for
        every batch to be decoded and augmented."""
        if self.workers is not None:
            return self.workers
        if device.device.type == "cpu":
            return 0 if cpus <= SMALL_CPU else cpus - 1
        return max(1, cpus - 1)

    def image_share(self, workers: int, decoded: int = 0) -> int:
        """Decoded-image bytes for each process that loads (training and validation workers share the budget), or
        0 when `decoded`, the bytes of every image the trial reads, does not fit in that share."""
        share = self.image_cache_bytes // max(1, 2 * workers)
        return share if decoded <= share else 0

    def crop_share(self, workers: int, crops: int = 0) -> int:
        """Validation-crop bytes for each process that computes validation crops, or 0 when `crops`, the bytes of
        all validation crops, does not fit in the budget (each of the workers computes its share of them)."""
        return self.crop_cache_bytes // max(1, workers) if crops <= self.crop_cache_bytes else 0

    def describe(self, workers: int, decoded: int, crops: int) -> str:
        """One line: which caches are on and why (for the trial's data line)."""

        def one(name: str, share: int, need: int, budget: int) -> str:
            if share:
                return f"{name} cached ({need / MIB:,.0f} MiB)"
            return f"{name} not cached ({need / MIB:,.0f} MiB > {budget / MIB:,.0f} MiB budget)"

        images = one("images", self.image_share(workers, decoded), decoded, self.image_share(workers))
        return f"{images}; {one('validation crops', self.crop_share(workers, crops), crops, self.crop_cache_bytes)}"


DEFAULT_LOADING = Loading()


@dataclass(frozen=True)
class Replicas:
    """This process's place in a data-parallel training: rank `rank` of `world` processes that train one model on
    shares of each global batch (torch.distributed is initialised by the caller, e.g. nas.ddp). Default: alone."""

    rank: int = 0
    world: int = 1


ALONE = Replicas()  # one process trains


class ShareOfBatches(torch.utils.data.Sampler[list]):
    """Rank r's contiguous slice of each global batch, in the order one process sees them: together the ranks train
    on exactly the one-process batches."""

    def __init__(self, batches: torch.utils.data.BatchSampler, replicas: Replicas) -> None:
        self.batches, self.replicas = batches, replicas

    def __iter__(self):
        r, w = self.replicas.rank, self.replicas.world
        for batch in self.batches:
            yield batch[len(batch) * r // w : len(batch) * (r + 1) // w]

    def __len__(self) -> int:
        return len(self.batches)


class EpochSampler(torch.utils.data.Sampler):
    """Yields (epoch, person) pairs: the epoch's shuffled order (seeded by seed and epoch), or the persons in order,
    stopping after `limit` items (`--max-steps` x batch) when given. `set_epoch` before each pass."""

    def __init__(self, size: int, shuffle: bool, seed: int = 0, limit: int | None = None) -> None:
        self.size, self.shuffle, self.seed, self.epoch = size, shuffle, seed, 0
        self.limit = size if limit is None else min(size, limit)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.limit

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
            # The draw the DataLoader took from this generator before shuffling when it owned it: keeping it keeps
            # every epoch's order, and so every recorded result, of the versions before this sampler.
            torch.empty((), dtype=torch.int64).random_(generator=generator)
            people = torch.randperm(self.size, generator=generator)[: self.limit].tolist()
        else:
            people = range(self.limit)
        return ((self.epoch, i) for i in people)


def init_worker(seed: int, epoch: int, worker: int) -> None:
    """Deterministic per-worker RNGs (seed, epoch the loader started at, worker id) and one torch thread: the
    workers share the trial's CPUs with the training process."""
    state = np.random.SeedSequence([seed, epoch, worker])
    np.random.seed(state.generate_state(1)[0])
    random.seed(int(state.generate_state(1)[0]))
    torch.manual_seed(int(state.generate_state(1, np.uint64)[0]))
    torch.set_num_threads(1)


def make_loader(
    dataset: torch.utils.data.Dataset,
    sampler: EpochSampler,
    batch: int,
    workers: int,
    device: Device,
    drop_last: bool = False,
    seed: int = 0,
    epoch: int = 0,
    replicas: Replicas = ALONE,
) -> torch.utils.data.DataLoader:
    """A DataLoader over `sampler`'s (epoch, person) pairs in batches of `batch` (this replica's share of each):
    persistent workers when there are any, pinned memory for CUDA. Its own generator keeps the global torch RNG
    untouched (the loader draws a base seed from it)."""
    batches = torch.utils.data.BatchSampler(sampler, batch, drop_last)
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=ShareOfBatches(batches, replicas) if replicas.world > 1 else batches,
        num_workers=workers,
        pin_memory=device.device.type == "cuda",
        persistent_workers=workers > 0,
        worker_init_fn=partial(init_worker, seed, epoch) if workers else None,
        generator=torch.Generator().manual_seed(seed),
    )
