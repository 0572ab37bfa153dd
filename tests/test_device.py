"""Device and precision choice (pose.device) on a GPU's compute capability, mocked here, and heatmaps decoded in
float32 whatever precision the model computed in."""

import numpy as np
import pytest
import torch

from pose import device as pose_device
from pose.decode import flip_permutation, predict_heatmaps

CUDA = torch.device("cuda", 0)


@pytest.fixture()
def capability(monkeypatch):
    """Set the compute capability the (mocked) CUDA device reports."""

    def set_to(major: int, minor: int) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))

    return set_to


CAPABILITIES = [(7, 0, torch.float16), (7, 5, torch.float16), (8, 0, torch.bfloat16), (9, 0, torch.bfloat16)]


@pytest.mark.parametrize(("major", "minor", "expected"), CAPABILITIES)
def test_auto_is_bf16_where_computed_natively_and_fp16_elsewhere(capability, major, minor, expected):
    capability(major, minor)
    assert pose_device._amp_dtype("auto", CUDA) is expected
    assert pose_device._amp_dtype("fp16", CUDA) is torch.float16 and pose_device._amp_dtype("off", CUDA) is None


def test_bf16_on_a_gpu_that_emulates_it_says_to_use_fp16(capability):
    capability(7, 5)
    with pytest.raises(ValueError, match=r"compute capability 7\.5\) does not compute bfloat16 natively.*--amp fp16"):
        pose_device._amp_dtype("bf16", CUDA)
    capability(8, 6)
    assert pose_device._amp_dtype("bf16", CUDA) is torch.bfloat16


def test_the_cpu_stays_float32_by_default():
    assert pose_device._amp_dtype("auto", torch.device("cpu")) is None


def test_heatmaps_are_decoded_in_float32_from_a_bfloat16_model():
    """The flip average of an autocast model's bfloat16 maps is taken in float32, not rounded to bfloat16."""
    output = torch.randn(2, 17, 16, 12, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)

    def model(images: torch.Tensor) -> torch.Tensor:
        return output.flip(-1) if bool(images[0, 0, 0, 0] < 0) else output

    images = torch.ones(2, 3, 64, 48)
    images[..., -1] = -1  # the mirrored crop starts with -1: the model tells the two apart
    heatmaps = predict_heatmaps(model, images, flip_test=True)
    plain = output.float()
    flipped = output.float()[:, flip_permutation(17)]
    flipped[..., 1:] = flipped[..., :-1].clone()
    assert heatmaps.dtype == np.float32
    np.testing.assert_array_equal(heatmaps, ((plain + flipped) / 2).numpy())
