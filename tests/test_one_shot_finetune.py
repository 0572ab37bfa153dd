"""A per-genome fine-tune before one-shot scoring (`-ft<S>` signals): fixed seeded batches for every genome, the
extracted network tuned (the supernet untouched), deterministic, and another score than without it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

import pose.train
from pose.coco import parse_data
from pose.train import Recipe, load_data
from supernet.finetune import finetune_batches
from supernet.model import SuperNet
from supernet.score import score, scoring_set
from supernet.training import SpaceSource
from tests.test_supernet_init import LITE_MEMBER
from tests.test_supernet_training import MINI_DATA, TINY_SPACE

RECIPE = Recipe(input_hw=(64, 64), batch=4, threads=1)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_SPACE))
    space = SpaceSource.from_file(path).space
    return SuperNet(space), space.base.with_genes(LITE_MEMBER), load_data(parse_data(MINI_DATA))


def test_the_batches_are_seeded_and_as_many_as_the_steps(setting):
    _, _, data = setting
    first, again, other = (finetune_batches(data, RECIPE, 3, seed) for seed in (0, 0, 1))
    assert len(first) == 3 and all(len(images) == RECIPE.batch for images, _, _ in first)
    assert first[0][0].dtype == torch.uint8 and first[0][1].shape[1] == 17
    assert all(torch.equal(a, b) for x, y in zip(first, again, strict=True) for a, b in zip(x, y, strict=True))
    assert not torch.equal(first[0][0], other[0][0])
    with pytest.raises(ValueError, match="--finetune-steps 0"):
        finetune_batches(data, RECIPE, 0)


def test_a_fine_tuned_score_leaves_the_supernet_and_repeats(setting, monkeypatch):
    supernet, genome, data = setting
    scored = []
    stats = pose.train.coco_keypoint_stats
    monkeypatch.setattr(pose.train, "coco_keypoint_stats", lambda gt, r: scored.append(r) or stats(gt, r))
    shared = {k: v.detach().clone() for k, v in supernet.state_dict().items()}

    def keypoints(steps: int) -> np.ndarray:
        prepared = scoring_set(data, RECIPE, 8, finetune_steps=steps)
        assert score(supernet, genome, data, RECIPE, 8, prepared=prepared)["finetune_steps"] == steps
        return np.array([r["keypoints"] for r in scored[-1]])

    plain, tuned, tuned_again = keypoints(0), keypoints(2), keypoints(2)
    assert np.array_equal(tuned, tuned_again)  # seeded batches, the same steps
    assert not np.array_equal(plain, tuned)  # the steps changed the network it scored
    assert all(torch.equal(v, shared[k]) for k, v in supernet.state_dict().items())  # on a copy
