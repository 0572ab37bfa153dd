"""What the loaders hand the device: uint8 image batches (a quarter of float32's bytes through the workers' queues,
pinned memory and the copy to a GPU), normalised where the model runs, to the very numbers the CPU computed before."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import pose.train as pose_train
import supernet.training as supernet_training
from pose.dataset import MEAN, STD, TopDownDataset, model_input, normalise, to_tensor
from pose.device import CPU
from pose.loading import ALONE, Loading
from search_space.space import SearchSpace
from supernet.model import SuperNet
from supernet.score import score, scoring_set
from tests.test_supernet import RECIPE as SCORE_RECIPE
from tests.test_supernet import TINY_SPACE
from tests.test_supernet_training import OPTIONS, tiny
from tests.test_supernet_training import RECIPE as SUPERNET_RECIPE
from tests.test_training import RECIPE, TINY, mini_data

assert mini_data and tiny  # the fixtures, imported for these tests


def test_normalised_on_the_device_as_numpy_normalised_each_crop():
    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 24, 3), dtype=np.uint8)
    batch = torch.stack([to_tensor(p) for p in pixels])
    assert batch.dtype == torch.uint8 and batch.shape == (2, 3, 32, 24)
    numpy_way = torch.from_numpy(((pixels.astype(np.float32) - MEAN) / STD).transpose(0, 3, 1, 2).copy())
    assert torch.equal(normalise(batch), numpy_way)  # bit for bit: recorded results do not move
    fast = model_input(batch, CPU)
    assert fast.dtype == torch.float32 and fast.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(fast, numpy_way)
    with pytest.raises(TypeError, match="uint8"):
        normalise(numpy_way)


def test_the_loader_yields_uint8_images_with_workers_too(mini_data):
    batches = pose_train.training_batches(mini_data, RECIPE, CPU, ALONE, Loading(workers=1), 0)
    images, targets, _, _ = next(iter(batches.loader))
    assert images.dtype == torch.uint8 and targets.dtype == torch.float32
    val = TopDownDataset(mini_data.val, RECIPE.input_hw, False)
    assert val[0][0].dtype == torch.uint8


def recording(module, monkeypatch) -> list[torch.dtype]:
    seen, original = [], module.model_input

    def spy(images, device):
        seen.append(images.dtype)
        return original(images, device)

    monkeypatch.setattr(module, "model_input", spy)
    return seen


def test_training_and_evaluation_send_uint8_batches_to_the_device(mini_data, monkeypatch):
    seen = recording(pose_train, monkeypatch)
    result = pose_train.train(TINY, mini_data, replace(RECIPE, epochs=1, batch=2), quiet=True)
    assert math.isfinite(result["loss"]) and 0 <= result["ap"] <= 1
    steps = math.ceil(len(mini_data.train) / 2) + math.ceil(len(mini_data.val) / 2)  # training, then validation
    assert seen == [torch.uint8] * steps


def test_the_supernet_sends_uint8_batches_to_the_device(tiny, mini_data, monkeypatch):
    seen = recording(supernet_training, monkeypatch)
    result = supernet_training.train_supernet(
        tiny, mini_data, replace(SUPERNET_RECIPE, epochs=1, max_steps=2), OPTIONS, quiet=True, track=False
    )
    assert math.isfinite(result["loss"]) and seen == [torch.uint8] * 2


def test_one_shot_scoring_reads_every_genome_through_one_prepared_loader(mini_data, monkeypatch):
    """Calibration images and the validation loader are made once (workers, pinned memory and the crop cache as a
    training's validation has them) and serve every genome scored; workers give the same score as none."""
    space = SearchSpace.from_dict(TINY_SPACE)
    supernet, data = SuperNet(space, seed=0), mini_data
    genomes = list(space.valid_genomes())[:2]
    prepared = scoring_set(data, SCORE_RECIPE, 8, loading=Loading(workers=1))
    assert prepared.images.dtype == torch.uint8 and prepared.val_loader.num_workers == 1
    loaders, evaluate = [], pose_train.evaluate

    def spy(*args, loader=None, **kwargs):
        loaders.append(loader)
        return evaluate(*args, loader=loader, **kwargs)

    monkeypatch.setattr("supernet.score.evaluate", spy)

    def scored(prepared) -> list[dict]:  # without the wall seconds of each step: measured, not deterministic
        results = [score(supernet, g, data, SCORE_RECIPE, 8, prepared=prepared) for g in genomes]
        return [{k: v for k, v in result.items() if k != "seconds"} for result in results]

    with_workers = scored(prepared)
    assert loaders == [prepared.val_loader] * 2
    assert scored(scoring_set(data, SCORE_RECIPE, 8, loading=Loading(workers=0))) == with_workers
