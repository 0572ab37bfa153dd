"""Official checkpoint keys onto the zoo's: every key of the Lite-HRNet repository's (mmpose 0.x) state dicts maps to
exactly one hrnas tensor of the same shape, for every Lite-HRNet preset. The official key lists are fixtures made
from the authors' code by tools/official_fixtures.py, outside the project."""

import json
from pathlib import Path

import pytest

from blocks.network import PoseNet
from checkpoints.keymap import MMPOSE_0X, hrnas_key
from search_space.presets import load_preset

FIXTURES = Path(__file__).parent / "data" / "official"
LITE = ["naive-litehrnet-18", "wider-naive-litehrnet-18", "litehrnet-18", "litehrnet-30"]


@pytest.mark.parametrize("preset", LITE)
def test_every_official_key_is_one_hrnas_tensor_of_its_shape(preset):
    fixture = json.loads((FIXTURES / f"{preset}.keys.json").read_text())
    ours = {k: list(v.shape) for k, v in PoseNet(load_preset(preset).resolve()).state_dict().items()}
    mapped = {}
    for key, shape in fixture["keys"]:
        name = hrnas_key(key, MMPOSE_0X)
        assert name in ours, f"{key} -> {name}: no such hrnas tensor"
        assert ours[name] == shape, f"{key} -> {name}: shape {ours[name]}, official {shape}"
        assert name not in mapped, f"{key} and {mapped[name]} both map to {name}"
        mapped[name] = key
    assert set(mapped) == set(ours)  # and nothing of hrnas's is left over


def test_the_naive_configs_head_width_is_the_backbones():
    notes = json.loads((FIXTURES / "naive-litehrnet-18.keys.json").read_text())["notes"]
    assert notes == ["the config's keypoint_head.in_channels is 40; the backbone's output has 30"]
