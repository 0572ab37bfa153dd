"""A genome's score with inherited weights: extract, recalibrate BatchNorm, evaluate exactly as train.py scores."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from blocks.fusion import fold_batch_norms
from blocks.network import prepare_for_training
from pose.dataset import CropCache, ImageCache, TopDownDataset
from pose.device import CPU, Device
from pose.loading import DEFAULT_LOADING
from pose.train import Data, Recipe, evaluate
from pose.weights import save_model_weights
from search_space.complexity import genome_complexity
from search_space.genome import Genome
from supernet.calibrate import DEFAULT_CALIBRATION, calibrate, calibration_images
from supernet.model import SuperNet

FLOPS_CONVENTION = "torchstat"  # the convention and input `hrnas complexity --json` reports by default
FLOPS_INPUT_HW = (256, 192)


@dataclass
class ScoringSet:
    """What scoring reads from the data, prepared once for many genomes: the calibration batch and the validation
    crops (cached by the dataset after the first genome)."""

    images: torch.Tensor
    val_set: TopDownDataset
    val_coco: object


def scoring_set(
    data: Data, recipe: Recipe, calibration: int = DEFAULT_CALIBRATION, seed: int | None = None
) -> ScoringSet:
    """Calibration images (seeded by `seed`, default the recipe's) and validation crops at the recipe's input."""
    cache = ImageCache(DEFAULT_LOADING.image_share(0, data.image_bytes))
    images = calibration_images(data, recipe, calibration, recipe.seed if seed is None else seed, cache)
    crops = CropCache(DEFAULT_LOADING.crop_share(0, data.crop_bytes(recipe.input_hw)))
    val_set = TopDownDataset(data.val, recipe.input_hw, False, cache=cache, sigma=recipe.sigma, crops=crops)
    return ScoringSet(images, val_set, data.val_coco)


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
    `params` (the figures `hrnas complexity --json` prints) and its compact `genome`. Pass `prepared`
    (`scoring_set`) to score many genomes on the same images without cropping them again; `recipe` defaults to
    train.py's. `save`: also write the calibrated network there (`pose.weights.save_model_weights`)."""
    supernet.check(genome)
    recipe = recipe or Recipe()
    prepared = prepared or scoring_set(data, recipe, calibration)
    model = prepare_for_training(supernet.extract(genome).to(device.device), fast=device.fast)
    calibrate(model, prepared.images, device)
    if save is not None:
        save_model_weights(save, model, genome, {"from": "supernet", "calibration": len(prepared.images)})
    fold_batch_norms(model)  # the same function, 6-18% faster on one CPU thread (blocks.fusion)
    stats = evaluate(
        model, prepared.val_set, prepared.val_coco, recipe.flip_test, recipe.loss, recipe.decode, device=device
    )
    complexity = genome_complexity(genome, FLOPS_INPUT_HW, supernet.joints)
    return {
        **stats,
        "flops": complexity.flops[FLOPS_CONVENTION],
        "params": complexity.params,
        "convention": FLOPS_CONVENTION,
        "calibration": len(prepared.images),
        "genome": genome.canonical_line(),
    }
