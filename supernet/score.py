"""A genome's score with inherited weights: extract, recalibrate BatchNorm, evaluate exactly as train.py scores."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from blocks.fusion import fold_batch_norms
from blocks.network import prepare_for_training
from pose.dataset import CropCache, ImageCache, TopDownDataset
from pose.device import CPU, Device
from pose.loading import DEFAULT_LOADING, EpochSampler, Loading, make_loader
from pose.train import EVAL_BATCH, Data, Recipe, evaluate
from pose.weights import save_model_weights
from search_space.complexity import genome_complexity
from search_space.genome import Genome
from supernet.calibrate import DEFAULT_CALIBRATION, calibrate, calibration_images
from supernet.finetune import Batch, finetune, finetune_batches
from supernet.model import SuperNet

FLOPS_CONVENTION = "torchstat"  # the convention and input `hrnas complexity --json` reports by default
FLOPS_INPUT_HW = (256, 192)


@dataclass
class ScoringSet:
    """What scoring reads from the data, prepared once for many genomes: the calibration batch (uint8, on the
    scoring device) and one validation loader over the validation crops, whose workers (on a GPU) and crop cache
    serve every genome scored with it."""

    images: torch.Tensor
    val_set: TopDownDataset
    val_coco: object
    val_loader: torch.utils.data.DataLoader
    finetune: list[Batch] = field(default_factory=list)  # a per-genome fine-tune's batches (none: no fine-tune)


def scoring_set(
    data: Data,
    recipe: Recipe,
    calibration: int = DEFAULT_CALIBRATION,
    seed: int | None = None,
    device: Device = CPU,
    loading: Loading = DEFAULT_LOADING,
    finetune_steps: int = 0,
) -> ScoringSet:
    """Calibration images (seeded by `seed`, default the recipe's) and the validation loader at the recipe's
    input, with `loading`'s workers and cache budgets for `device` as a training's validation has them; with
    `finetune_steps`, the batches of a per-genome fine-tune of that many steps (`supernet.finetune`)."""
    workers = loading.worker_count(recipe.threads, device)
    cache = ImageCache(loading.image_share(workers, data.image_bytes))
    seed = recipe.seed if seed is None else seed
    images = calibration_images(data, recipe, calibration, seed, cache)
    crops = CropCache(loading.crop_share(workers, data.crop_bytes(recipe.input_hw)))
    val_set = TopDownDataset(data.val, recipe.input_hw, False, cache=cache, sigma=recipe.sigma, crops=crops)
    val_loader = make_loader(val_set, EpochSampler(len(val_set), shuffle=False), EVAL_BATCH, workers, device)
    if workers:
        iter(val_loader)  # the workers started now, while this process is small (as pose.train's validation)
    tuning = finetune_batches(data, recipe, finetune_steps, seed) if finetune_steps else []
    return ScoringSet(images.to(device.device), val_set, data.val_coco, val_loader, tuning)


class Clock:
    """Wall seconds of each named step since the previous mark (`seconds`, with their `total`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {"total": 0.0}
        self.last = time.perf_counter()

    def mark(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = self.seconds.get(step, 0.0) + now - self.last
        self.seconds["total"] += now - self.last
        self.last = now


def score(
    supernet: SuperNet,
    genome: Genome,
    data: Data,
    recipe: Recipe | None = None,
    calibration: int = DEFAULT_CALIBRATION,
    device: Device = CPU,
    prepared: ScoringSet | None = None,
    save: Path | None = None,
) -> dict:
    """COCOeval stats (`ap`, `ap50`, ... as `pose.train.evaluate` gives them) of the genome's extracted network after
    BatchNorm recalibration on `calibration` training images, with its exact `flops` (torchstat, 256x192) and
    `params` (the figures `hrnas complexity --json` prints), its compact `genome` and the wall `seconds` of each
    step. Pass `prepared` (`scoring_set`) to score many genomes on the same images without cropping them again;
    `recipe` defaults to train.py's. `save`: also write the calibrated network there
    (`pose.weights.save_model_weights`)."""
    supernet.check(genome)
    recipe = recipe or Recipe()
    prepared = prepared or scoring_set(data, recipe, calibration, device=device)
    clock = Clock()
    model = prepare_for_training(supernet.extract(genome).to(device.device), fast=device.fast)
    clock.mark("extract")
    if prepared.finetune:
        finetune(model, prepared.finetune, recipe, device)
        clock.mark("finetune")
    calibrate(model, prepared.images, device)
    clock.mark("calibrate")
    if save is not None:
        save_model_weights(save, model, genome, {"from": "supernet", "calibration": len(prepared.images)})
    fold_batch_norms(model)  # the same function, 6-18% faster on one CPU thread (blocks.fusion)
    scoring = (recipe.flip_test, recipe.loss, recipe.decode)
    stats = evaluate(model, prepared.val_set, prepared.val_coco, *scoring, device=device, loader=prepared.val_loader)
    clock.mark("evaluate")
    complexity = genome_complexity(genome, FLOPS_INPUT_HW, supernet.joints)
    clock.mark("other")
    return {
        **stats,
        "flops": complexity.flops[FLOPS_CONVENTION],
        "params": complexity.params,
        "convention": FLOPS_CONVENTION,
        "calibration": len(prepared.images),
        "finetune_steps": len(prepared.finetune),
        "genome": genome.canonical_line(),
        "seconds": clock.seconds,
    }
