"""Published checkpoints load into every preset and give the official model's output. The official key lists and
outputs are fixtures that tools/official_fixtures.py made from the authors' code outside the project; the weights
are drawn again here from each official key's name (checkpoints.seeded), so no weights are stored."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from blocks.network import PoseNet
from checkpoints.formats import FORMATS, family_of, to_official
from checkpoints.keymap import hrnas_key, official_key
from checkpoints.load import load_into, read_weights
from checkpoints.seeded import seeded_input, seeded_state
from search_space.presets import load_preset

FIXTURES = Path(__file__).parent / "data" / "official"
PRESETS = ["naive-litehrnet-18", "wider-naive-litehrnet-18", "litehrnet-18", "litehrnet-30", "ditehrnet-18",
           "ditehrnet-30", "hrnet-w32"]  # fmt: skip
FLOAT32_TOLERANCE = {"ditehrnet-18": 5e-4, "ditehrnet-30": 5e-4}  # dynamic kernels; 1e-4 for the others


class StandInConfig:
    """Stands for the mmcv Config object an mmpose 0.x checkpoint's metadata may hold: a class hrnas never loads."""

    def __init__(self):
        self.text = "model = dict(...)"


def fixture(name: str) -> tuple[dict, np.ndarray]:
    keys = json.loads((FIXTURES / f"{name}.keys.json").read_text())
    return keys, np.load(FIXTURES / f"{name}.output.npy")


def official_state(name: str) -> dict[str, torch.Tensor]:
    keys, _ = fixture(name)
    return seeded_state({key: tuple(shape) for key, shape in keys["keys"]})


def layouts(state: dict[str, torch.Tensor]) -> dict[str, object]:
    """One official mmpose 0.x state dict as each supported file holds it."""
    head = {k.replace("keypoint_head.", "head.", 1): v for k, v in state.items()}
    preprocessor = {"data_preprocessor.mean": torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1)}
    meta = {"config": StandInConfig(), "epoch": np.float64(210), "mmcv_version": "1.3.18"}
    return {
        "mmpose0x": {"meta": meta, "state_dict": state, "optimizer": {}},
        "mmpose0x-bare": state,
        "mmpose1x": {"meta": {"epoch": 210}, "state_dict": {**preprocessor, **head}},
    }


def relative_error(output: torch.Tensor, official: np.ndarray) -> float:
    official = torch.from_numpy(official)
    return ((output.double() - official).abs().max() / official.abs().max()).item()


def loaded_output(preset: str, path: Path, dtype: torch.dtype) -> torch.Tensor:
    genome = load_preset(preset)
    model = PoseNet(genome.resolve()).to(dtype).eval()
    load_into(model, read_weights(path, genome))
    with torch.no_grad():
        return model(seeded_input().to(dtype))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_official_key_is_one_hrnas_tensor_of_its_shape_and_maps_back(preset):
    keys, _ = fixture(preset)
    family = family_of(load_preset(preset))
    ours = {k: list(v.shape) for k, v in PoseNet(load_preset(preset).resolve()).state_dict().items()}
    backbone = [(k.removeprefix("backbone."), shape) for k, shape in keys["keys"] if k.startswith("backbone.")]
    mapped = {hrnas_key(key, family): (key, shape) for key, shape in backbone}
    assert len(mapped) == len(backbone)  # no two official keys share an hrnas name
    for name, (key, shape) in mapped.items():
        assert ours.get(name) == shape, f"{key} -> {name}: hrnas {ours.get(name)}, official {shape}"
        assert official_key(name, family) == key
    assert set(ours) - set(mapped) == {"keypoint_head.final_layer.weight", "keypoint_head.final_layer.bias"}


@pytest.mark.parametrize("preset", PRESETS)
def test_each_layout_loads_and_gives_the_official_output(preset, tmp_path):
    state = official_state(preset)
    _, official = fixture(preset)
    for layout, content in layouts(state).items():
        path = tmp_path / f"{layout}.pth"
        torch.save(content, path)
        weights = read_weights(path, load_preset(preset))
        assert weights.layout == layout.removesuffix("-bare")
        assert relative_error(loaded_output(preset, path, torch.float64), official) <= 1e-6, layout
        float32 = relative_error(loaded_output(preset, path, torch.float32), official)
        assert float32 <= FLOAT32_TOLERANCE.get(preset, 1e-4), (layout, float32)
    skipped = read_weights(tmp_path / "mmpose0x.pth", load_preset(preset)).skipped_metadata
    assert any(name.endswith("StandInConfig") for name in skipped) and any("numpy" in name for name in skipped)


def test_the_original_hrnet_layout_loads_and_gives_its_output(tmp_path):
    state = official_state("hrnet-w32.original")
    _, official = fixture("hrnet-w32.original")
    path = tmp_path / "pose_hrnet_w32_256x192.pth"
    torch.save(state, path)
    assert read_weights(path, load_preset("hrnet-w32")).layout == "hrnet"
    assert relative_error(loaded_output("hrnet-w32", path, torch.float64), official) <= 1e-6
    assert relative_error(loaded_output("hrnet-w32", path, torch.float32), official) <= 1e-4


@pytest.mark.parametrize("preset", PRESETS)
def test_back_to_the_official_layout_tensor_for_tensor(preset, tmp_path):
    """What `hrnas convert --to mmpose0x` writes: the official key list, every tensor identical, so
    the official model loads it with strict=True."""
    state = official_state(preset)
    path = tmp_path / "official.pth"
    torch.save({"state_dict": state}, path)
    genome = load_preset(preset)
    model = PoseNet(genome.resolve()).double()
    load_into(model, read_weights(path, genome))
    back = to_official(model.state_dict(), "mmpose0x", family_of(genome))
    assert sorted(back) == sorted(state)  # the same keys (the order of a state dict is not part of strict loading)
    assert all(torch.equal(back[key], state[key]) for key in state)
    head = to_official(model.state_dict(), "mmpose1x", family_of(genome))
    assert {k for k in head if k.startswith("head.")} == {"head.final_layer.weight", "head.final_layer.bias"}
    assert FORMATS["hrnet"].writable is False


def test_the_naive_configs_head_width_is_the_backbones():
    notes = fixture("naive-litehrnet-18")[0]["notes"]
    assert notes == ["the config's keypoint_head.in_channels is 40; the backbone's output has 30"]
