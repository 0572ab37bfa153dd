"""Short top-down keypoint training (Adam, warm-up, cosine or step decay, MSE with target weights) and its scoring.

The recipe is defined in epochs and images, never in seconds, so cheap models get no extra training in a search.
A checkpoint (state_dicts only) is written after every epoch; a killed run resumes from it.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from blocks.network import PoseNet, init_weights, keep_freed_memory, prepare_for_training
from pose.annotation_index import indexed_people
from pose.coco import DataError, DataSource, Person, decoded_bytes, detected_people, ground_truth_people, load_coco
from pose.dataset import SHORT_AUGMENT, Augment, CropCache, ImageCache, TopDownDataset, model_input
from pose.decode import decode_peaks, predict_heatmaps, to_image_coordinates
from pose.device import CPU, Device
from pose.evaluate import Prediction, coco_keypoint_stats, to_results
from pose.loading import ALONE, DEFAULT_LOADING, EpochSampler, Loading, Replicas, make_loader
from pose.loss_meter import LossMeter
from pose.losses import LOSSES
from pose.synthetic import SyntheticConfig, ensure_synthetic
from search_space.genome import Genome


@dataclass(frozen=True)
class Recipe:
    """Everything that decides what a training run computes (logged with every result)."""

    input_hw: tuple[int, int] = (128, 96)
    epochs: int = 12
    batch: int = 32
    lr: float = 1.4e-2
    warmup_iters: int = 100
    schedule: str = "cosine"  # or "step" (x0.1 at 75% and 90% of the epochs)
    init: str = "pytorch"  # "pytorch" default init, or "official" (conv N(0, 0.001))
    loss: str = "softmax-ce"  # a key of pose.losses.LOSSES
    sigma: float | None = None  # heatmap Gaussian sigma in heatmap pixels (None: pose.targets.default_sigma)
    decode: str = "taylor"  # sub-pixel peak: "quarter" offset or "taylor" step (pose.decode.decode_peaks)
    flip_test: bool = True
    seed: int = 0
    threads: int = 2
    augment: Augment = SHORT_AUGMENT
    max_steps: int | None = None  # stop each epoch after this many optimizer steps (scale checks); None: whole epochs


@dataclass
class Data:
    train: Sequence[Person]  # a PersonTable (pose.annotation_index) from load_data
    val: list[Person]
    val_coco: object
    description: str
    skipped: dict[str, str]
    image_bytes: int = 0  # every training and validation image decoded as RGB (what a cache of all of them holds)

    def crop_bytes(self, input_hw: tuple[int, int]) -> int:
        """Bytes of all validation crops at `input_hw` as uint8 (what a cache of all of them holds)."""
        return len(self.val) * input_hw[0] * input_hw[1] * 3


def load_data(
    source: DataSource | None,
    synthetic: SyntheticConfig | None = None,
    detections: Path | None = None,
    box_threshold: float = 0.0,
) -> Data:
    """People for training and validation, from real COCO files or the synthetic default.

    Validation uses the ground-truth boxes, or the person boxes of a COCO detections file (scores >= threshold).
    """
    if source is None:
        root = ensure_synthetic(synthetic or SyntheticConfig())
        from pose.coco import Split

        source = DataSource(
            Split(root / "annotations/person_keypoints_train.json", root / "images/train"),
            Split(root / "annotations/person_keypoints_val.json", root / "images/val"),
            f"synthetic ({root})",
        )
    train, skipped_train = indexed_people(source.train.annotations, source.train.images)
    val_coco = load_coco(source.val.annotations)
    if detections is None:
        val, skipped_val = ground_truth_people(val_coco, source.val.images)
    else:
        val, skipped_val = detected_people(val_coco, source.val.images, detections, box_threshold)
    if not train:
        raise DataError(f"{source.train.annotations} has no person with a labelled keypoint to train on")
    if not val:
        what = f"no detection at score >= {box_threshold} in {detections}" if detections else "no labelled person"
        raise DataError(f"{source.val.annotations}: {what} to validate on")
    description = source.description + (f", val boxes {detections} (score >= {box_threshold})" if detections else "")
    skipped = {"train": str(skipped_train), "val": str(skipped_val)}
    return Data(train, val, val_coco, description, skipped, train.decoded_bytes() + decoded_bytes(val_coco, val))


def learning_rate(recipe: Recipe, iteration: int, total: int) -> float:
    """Linear warm-up over warmup_iters (at most a tenth of the run, so a one-epoch trial is not all warm-up),
    then cosine or step decay."""
    warmup = min(recipe.warmup_iters, max(1, total // 10))
    warm = min(1.0, (iteration + 1) / warmup) if recipe.warmup_iters else 1.0
    progress = iteration / max(1, total)
    if recipe.schedule == "cosine":
        decay = 0.5 * (1 + math.cos(math.pi * progress))
    else:
        decay = 0.1 ** sum(progress >= m for m in (0.75, 0.9))
    return recipe.lr * warm * decay


def build_model(genome: Genome, recipe: Recipe, joints: int, device: Device = CPU) -> nn.Module:
    """The seeded model (initialised on CPU, so a seed gives the same weights everywhere), on `device`."""
    torch.manual_seed(recipe.seed)
    model = PoseNet(genome.resolve(joints))
    if recipe.init == "official":
        init_weights(model)
    return prepare_for_training(model.to(device.device), fast=device.fast)


EVAL_BATCH = 64  # persons per batch of `evaluate` and of one-shot scoring (supernet.score)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    dataset: TopDownDataset,
    coco_gt,
    flip_test: bool = Recipe.flip_test,
    loss: str = Recipe.loss,
    decode: str = Recipe.decode,
    batch: int = EVAL_BATCH,
    device: Device = CPU,
    loader: torch.utils.data.DataLoader | None = None,
) -> dict:
    """COCOeval keypoint stats of the model on the dataset's persons (their boxes, no augmentation), computed on
    `device` (where the model is); batches from `loader` (over `dataset`, e.g. with workers) or the process itself."""
    model.eval()
    predictions = []
    loader = loader or make_loader(dataset, EpochSampler(len(dataset), shuffle=False), batch, 0, device)
    to_heatmaps = LOSSES[loss].to_heatmaps
    for images, _, _, index in loader:
        inputs = model_input(images, device)
        heatmaps = predict_heatmaps(
            lambda x: _forward(model, x, device), inputs, flip_test, lambda output: to_heatmaps(output, dataset.sigma)
        )
        coords, maxvals = decode_peaks(heatmaps, decode)
        for k, i in enumerate(index.tolist()):
            center, size, _, _ = dataset.window(i)
            xy = to_image_coordinates(coords[k], center, size, dataset.heatmap_wh)
            keypoints = np.concatenate([xy, maxvals[k][:, None]], 1)
            person = dataset.people[i]
            predictions.append(Prediction(person.image_id, keypoints, person.score, float(size[0] * size[1])))
    return coco_keypoint_stats(coco_gt, to_results(predictions))


class Progress:
    """One line per epoch on stderr with loss, AP and an ETA; a bar within the epoch when on a terminal. The first
    step also prints FIRST_STEP (bench/scale.py times a trial's start-up by it)."""

    FIRST_STEP = "first training step done"
    LOG_EVERY_S = 60.0  # without a terminal (a log file), a step line at most this often

    def __init__(self, epochs: int, quiet: bool = False) -> None:
        self.epochs, self.quiet, self.start, self.stepped = epochs, quiet, time.perf_counter(), False
        self.logged = self.start

    def step(self, epoch: int, done: int, total: int, loss: float | None) -> None:
        """`loss`: the epoch's mean so far as the host last read it (pose.loss_meter), None before the first read."""
        if self.quiet:
            return
        if not self.stepped:
            self.stepped = True
            print(f"  {self.FIRST_STEP} ({time.perf_counter() - self.start:.1f} s after the model)", file=sys.stderr)
        shown = "" if loss is None else f" loss {loss:.5f}"
        if not sys.stderr.isatty():
            now = time.perf_counter()
            if now - self.logged >= self.LOG_EVERY_S and done < total:
                self.logged = now
                print(f"  epoch {epoch + 1}/{self.epochs} step {done}/{total}{shown}", file=sys.stderr)
            return
        width = 30
        fill = int(width * done / total)
        print(
            f"\r  epoch {epoch + 1}/{self.epochs} [{'#' * fill}{'.' * (width - fill)}]{shown}",
            end="",
            file=sys.stderr,
            flush=True,
        )

    def epoch(self, epoch: int, record: dict, first_epoch: int) -> None:
        if self.quiet:  # a data-parallel rank other than 0: its record has no AP
            return
        self.line(epoch, f"loss {record['loss']:.5f}  AP {record['ap']:.3f}  {record['images_per_second']:.1f} img/s",
                  first_epoch)  # fmt: skip

    def line(self, epoch: int, text: str, first_epoch: int) -> None:
        """`epoch E/N  TEXT  ETA Ss` (the ETA from the mean time of the epochs run by this process)."""
        if self.quiet:
            return
        per_epoch = (time.perf_counter() - self.start) / (epoch + 1 - first_epoch)
        eta = per_epoch * (self.epochs - epoch - 1)
        print(f"\r  epoch {epoch + 1}/{self.epochs}  {text}  ETA {eta:.0f}s", file=sys.stderr, flush=True)


@dataclass
class TrainingBatches:
    """A run's training batches: the loader over the training split, its sampler (`set_epoch` before each epoch),
    the optimizer steps per epoch, the worker count and the decoded-image cache (shared with validation)."""

    loader: torch.utils.data.DataLoader
    sampler: EpochSampler
    per_epoch: int
    workers: int
    cache: ImageCache


def training_batches(
    data: Data, recipe: Recipe, device: Device, replicas: Replicas, loading: Loading, first_epoch: int
) -> TrainingBatches:
    """The training batches of `recipe` (augmented, seeded, limited to `max_steps` per epoch), starting at
    `first_epoch`, with `loading`'s workers and this replica's share of every global batch."""
    workers = loading.worker_count(recipe.threads, device)
    cache = ImageCache(loading.image_share(workers, data.image_bytes))
    dataset = TopDownDataset(data.train, recipe.input_hw, True, recipe.augment, recipe.seed, cache, recipe.sigma)
    per_epoch = min(math.ceil(len(dataset) / recipe.batch), recipe.max_steps or math.inf)
    limit = recipe.max_steps * recipe.batch if recipe.max_steps else None
    sampler = EpochSampler(len(dataset), shuffle=True, seed=recipe.seed, limit=limit)
    drop_last = len(dataset) > recipe.batch
    loader = make_loader(dataset, sampler, recipe.batch, workers, device, drop_last, recipe.seed, first_epoch, replicas)
    return TrainingBatches(loader, sampler, int(per_epoch), workers, cache)


def train(
    genome: Genome,
    data: Data,
    recipe: Recipe,
    out_dir: Path | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    quiet: bool = False,
    device: Device = CPU,
    replicas: Replicas = ALONE,
    loading: Loading = DEFAULT_LOADING,
    initial: dict[str, torch.Tensor] | None = None,
    sync_bn: bool = False,
) -> dict:
    """Train on `device`, evaluating AP after every epoch; resume from out_dir/checkpoint.pt if it exists.

    `initial`: weights to start from instead of the seeded initialisation (`--init-from`, e.g. a network extracted
    from a supernet), for fine-tuning.

    `loading` sets the worker processes and cache budgets (it changes the speed and memory, not the result). With
    several `replicas`, each trains on its share of every global batch (gradients averaged by DDP); rank 0 alone
    evaluates and writes the checkpoint (the others' records have no AP); `sync_bn` computes their BatchNorm
    statistics over the whole global batch (SyncBatchNorm, CUDA only) instead of each replica's share."""
    torch.set_num_threads(recipe.threads)
    device.activate()
    if device.fast:
        keep_freed_memory()
    joints = len(data.train[0].keypoints)
    net = build_model(genome, recipe, joints, device)
    if initial is not None:  # checked by the caller (checkpoints.load): a partial start keeps the rest's init
        unexpected = net.load_state_dict(initial, strict=False).unexpected_keys
        if unexpected:
            raise ValueError(f"the initial weights name tensors this network lacks: {', '.join(unexpected[:3])}")
    if sync_bn and replicas.world > 1:
        net = with_sync_batchnorm(net)
    model = DistributedDataParallel(net) if replicas.world > 1 else net
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    if recipe.loss not in LOSSES:
        raise ValueError(f"unknown loss {recipe.loss!r}; choose one of {', '.join(LOSSES)}")
    loss_fn, denominator = LOSSES[recipe.loss].loss, LOSSES[recipe.loss].denominator
    history: list[dict] = []
    first_epoch = 0
    scaler = device.grad_scaler()
    checkpoint = out_dir / "checkpoint.pt" if out_dir else None
    if checkpoint is not None and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device.device, weights_only=True)
        if not _same_meta(state["meta"], _meta(genome, recipe, data)):
            raise ValueError(f"{checkpoint} belongs to a different genome, recipe or data set; use another --out")
        net.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):  # fp16's loss scale, so a resumed run does not search for it again
            scaler.load_state_dict(state["scaler"])
        history = json.loads(state["history"])
        first_epoch = len(history)
    batches = training_batches(data, recipe, device, replicas, loading, first_epoch)
    workers, sampler, loader, per_epoch = batches.workers, batches.sampler, batches.loader, batches.per_epoch
    crops = CropCache(loading.crop_share(workers, data.crop_bytes(recipe.input_hw)))
    val_set = TopDownDataset(data.val, recipe.input_hw, False, cache=batches.cache, sigma=recipe.sigma, crops=crops)
    # Validation batches as large as the training ones: a no-grad forward of them (with its flipped copy) needs far
    # less memory than the training step, so validation never raises the trial's peak (64 did by 0.3 GB at 256x192).
    val_batch = recipe.batch
    val_loader = make_loader(val_set, EpochSampler(len(val_set), False), val_batch, workers, device, False, recipe.seed)
    if workers and replicas.rank == 0:
        # Start the validation workers now, while this process is small: forked at the first evaluation, they would
        # share, then copy, the heap that training steps grew (bench/scale.py measured 5.1 GiB for the whole
        # trial against 2.9 GiB for the training process). Their first batches are discarded at that evaluation.
        iter(val_loader)
    total_iters = per_epoch * recipe.epochs
    progress = Progress(recipe.epochs, quiet)
    for epoch in range(first_epoch, recipe.epochs):
        model.train()
        sampler.set_epoch(epoch)
        start, seen = time.perf_counter(), 0
        losses = LossMeter(device.device, epoch, skip_nonfinite=scaler.is_enabled())
        for step, (images, targets, weights, _) in enumerate(loader):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(recipe, epoch * per_epoch + step, total_iters)
            images = model_input(images, device)
            targets, weights = (t.to(device.device, non_blocking=True) for t in (targets, weights))
            loss = loss_fn(_forward(model, images, device), targets, weights)
            if replicas.world > 1:
                loss = loss * batch_share(denominator(weights), replicas.world)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)  # float16: skipped where the gradients overflowed
            scaler.update()
            losses.add(loss)
            seen += len(images)
            progress.step(epoch, step + 1, len(loader), losses.mean)
        seconds = time.perf_counter() - start
        epoch_mean = losses.read()
        check_finite(model.parameters(), f"the weights became NaN or infinite during epoch {epoch + 1}")
        epoch_loss, seen = sum_over_replicas(epoch_mean / replicas.world, seen, replicas, device)
        eval_start = time.perf_counter()
        stats = {}
        if replicas.rank == 0:
            scoring = (recipe.flip_test, recipe.loss, recipe.decode)
            stats = evaluate(net, val_set, data.val_coco, *scoring, device=device, loader=val_loader)
        record = {
            "epoch": epoch + 1,
            "loss": epoch_loss,
            **stats,
            **({"skipped_steps": losses.skipped} if scaler.is_enabled() else {}),
            "train_seconds": seconds,
            "eval_seconds": time.perf_counter() - eval_start,
            "images_per_second": seen / seconds,
            **device.memory_record(),
        }
        history.append(record)
        progress.epoch(epoch, record, first_epoch)
        if checkpoint is not None and replicas.rank == 0:
            _save(checkpoint, net, optimizer, scaler, history, _meta(genome, recipe, data))
        if on_epoch is not None:
            on_epoch(record)
    return training_result(history, recipe.epochs)


def training_result(history: list[dict], epochs: int) -> dict:
    """What a training returns: the last epoch's metrics, the training seconds of all epochs and the history."""
    final = history[-1]
    return {
        **{k: final[k] for k in final if k not in {"epoch", "train_seconds", "eval_seconds", "images_per_second"}},
        "epochs": epochs,
        "train_seconds": sum(h["train_seconds"] for h in history),
        "history": history,
    }


def with_sync_batchnorm(net: nn.Module) -> nn.Module:
    """`net` with every BatchNorm layer a SyncBatchNorm (same parameters and buffers, so the same checkpoint keys)."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(net)


def check_finite(parameters, message: str) -> None:
    """A FloatingPointError with `message` unless every value of `parameters` is finite (one host sync)."""
    if not bool(torch.stack([torch.isfinite(p).all() for p in parameters]).all()):
        raise FloatingPointError(message)


def batch_share(denominator: torch.Tensor, world: int) -> torch.Tensor:
    """The factor that turns this rank's loss (an average over its own share) into its part of the global batch's
    average, times `world`: DDP's gradient average over ranks is then the one-process gradient."""
    total = denominator.detach().clone()
    dist.all_reduce(total)
    return world * denominator.detach() / total.clamp_min(1.0)


def sum_over_replicas(loss: float, seen: int, replicas: Replicas, device: Device) -> tuple[float, int]:
    """The epoch's loss and image count summed over all replicas (the values themselves for one process)."""
    if replicas.world == 1:
        return loss, seen
    both = torch.tensor([loss, float(seen)], dtype=torch.float64, device=device.device)  # nccl: on the GPU
    dist.all_reduce(both)
    return float(both[0]), int(both[1])


def _forward(model: nn.Module, images: torch.Tensor, device: Device) -> torch.Tensor:
    """The model's output in float32, computed under the device's autocast; the loss and heatmap decoding that
    follow stay in float32 (a no-op without AMP)."""
    with device.autocast():
        return model(images).float()


def _meta(genome: Genome, recipe: Recipe, data: Data) -> dict:
    return {
        "genome": genome.canonical_line(),
        "recipe": json.dumps(asdict(recipe), sort_keys=True),
        "data": data.description,
    }


def _same_meta(stored: dict, wanted: dict) -> bool:
    """A checkpoint's meta against this run's; its genome compared as a network (an older checkpoint holds the longer
    form, with inactive genes)."""
    genome = Genome.from_compact(stored["genome"]).canonical_line() if "genome" in stored else None
    return {**stored, "genome": genome} == wanted


def _save(path: Path, model: nn.Module, optimizer, scaler, history: list[dict], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),  # empty unless fp16
            "history": json.dumps(history),
            "meta": meta,
        },
        tmp,
    )
    tmp.replace(path)
