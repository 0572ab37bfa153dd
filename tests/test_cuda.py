"""Training on a CUDA device: AMP gives a finite loss and an AP, and a checkpoint written there resumes on the CPU.

Marked `cuda` and skipped, with the reason, on a machine without a CUDA device (the only skips of the suite).
"""

import math
from dataclasses import replace

import pytest
import torch

from pose.coco import parse_data
from pose.device import CPU, resolve_device
from pose.train import load_data, train
from tests.test_training import MINI_DATA, RECIPE, TINY

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; this machine has none"),
]
ONE_EPOCH = replace(RECIPE, epochs=1)


@pytest.fixture(scope="module")
def mini_data():
    return load_data(parse_data(MINI_DATA))


@pytest.mark.parametrize("amp", ["bf16", "fp16", "off"])
def test_one_cuda_epoch_gives_a_finite_loss_and_an_ap(mini_data, amp):
    device = resolve_device("cuda", amp)
    assert device.device.type == "cuda" and not device.fast
    result = train(TINY, mini_data, ONE_EPOCH, quiet=True, device=device)
    assert math.isfinite(result["loss"]) and 0.0 <= result["ap"] <= 1.0


def test_auto_picks_cuda_with_bf16_where_supported():
    device = resolve_device()
    assert device.device == torch.device("cuda")
    assert device.amp == (torch.bfloat16 if torch.cuda.is_bf16_supported() else None)


def test_checkpoint_written_on_cuda_resumes_on_cpu(mini_data, tmp_path):
    train(TINY, mini_data, ONE_EPOCH, out_dir=tmp_path, quiet=True, device=resolve_device("cuda", "bf16"))
    state = torch.load(tmp_path / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert all(tensor.device.type == "cpu" for tensor in state["model"].values())
    seen = []
    resumed = train(TINY, mini_data, RECIPE, out_dir=tmp_path, on_epoch=seen.append, quiet=True, device=CPU)
    assert [record["epoch"] for record in seen] == [2]  # epoch 1 came from the CUDA checkpoint
    assert math.isfinite(resumed["loss"]) and 0.0 <= resumed["ap"] <= 1.0
