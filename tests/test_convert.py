"""`hrnas convert`: published weights to hrnas's layout and back tensor for tensor; non-preset genomes converted with
the mmpose config that builds them, which the official code loaded with strict=True and ran (the converted fixtures
of tools/official_fixtures.py); genomes the official code cannot build are refused, with the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from blocks.network import PoseNet
from checkpoints.formats import family_of
from checkpoints.load import read_weights
from checkpoints.seeded import seeded_input, seeded_state
from hrnas.commands import convert as convert_command
from hrnas.commands.convert import mmpose_config
from search_space.genome import Genome
from search_space.presets import load_preset
from tests.test_checkpoint_equivalence import PRESETS, official_state, relative_error
from tests.test_published_checkpoints import one_error_line

CONVERTED = Path(__file__).parent / "data" / "official" / "converted"
CASES = sorted(p.name.removesuffix(".genome") for p in CONVERTED.glob("*.genome"))


def test_there_is_a_converted_case_per_official_family():
    assert {family_of(Genome.from_canonical((CONVERTED / f"{c}.genome").read_text().strip())) for c in CASES} == {
        "lite", "dite", "hrnet"}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_a_converted_genome_runs_in_the_official_code_as_in_hrnas(case):
    genome = Genome.from_canonical((CONVERTED / f"{case}.genome").read_text().strip())
    # the config hrnas writes today is the one the official code built
    assert mmpose_config(genome, family_of(genome), 17, "mmpose0x") == (CONVERTED / f"{case}.config.py").read_text()
    model = PoseNet(genome.resolve()).double().eval()
    model.load_state_dict(seeded_state({k: tuple(v.shape) for k, v in model.state_dict().items()}))
    with torch.no_grad():
        output = model(seeded_input())
    assert relative_error(output, np.load(CONVERTED / f"{case}.output.npy")) <= 1e-6


@pytest.mark.parametrize("preset", PRESETS)
def test_published_to_hrnas_and_back_tensor_for_tensor(preset, tmp_path, capsys):
    state = official_state(preset)
    published = tmp_path / "published.pth"
    torch.save({"state_dict": state}, published)
    ours, back, one_x = tmp_path / "ours.pt", tmp_path / "back.pth", tmp_path / "mmpose1x.pth"
    arch = ["--arch", preset]
    assert convert_command.main([*arch, "--checkpoint", str(published), "--to", "hrnas", "--out", str(ours)]) == 0
    assert convert_command.main([*arch, "--checkpoint", str(ours), "--to", "mmpose0x", "--out", str(back)]) == 0
    assert convert_command.main([*arch, "--checkpoint", str(back), "--to", "mmpose1x", "--out", str(one_x)]) == 0
    capsys.readouterr()
    written = torch.load(back, weights_only=True)
    assert sorted(written["state_dict"]) == sorted(state)
    assert all(torch.equal(written["state_dict"][k], state[k]) for k in state)
    assert written["meta"]["hrnas_genome"] == load_preset(preset).canonical_line()
    assert (tmp_path / "back.pth.config.py").read_text() == written["meta"]["config"]
    assert read_weights(one_x, load_preset(preset)).layout == "mmpose1x"
    heads = {k for k in torch.load(one_x, weights_only=True)["state_dict"] if not k.startswith("backbone.")}
    assert heads == {"head.final_layer.weight", "head.final_layer.bias"}
    assert "type='HeatmapHead'" in (tmp_path / "mmpose1x.pth.config.py").read_text()


def test_a_genome_the_official_code_cannot_build_is_refused_with_the_reason(tmp_path, capsys):
    genome = load_preset("litehrnet-18").with_genes({"kernels": [1, 2, 2, 1]})
    (tmp_path / "g.yaml").write_text(genome.to_yaml())
    weights = tmp_path / "w.pt"
    torch.save(seeded_state({k: tuple(v.shape) for k, v in PoseNet(genome.resolve()).state_dict().items()}), weights)
    argv = ["--arch", str(tmp_path / "g.yaml"), "--checkpoint", str(weights), "--out", str(tmp_path / "o.pth")]
    assert convert_command.main([*argv, "--to", "mmpose0x"]) == 2
    line = one_error_line(capsys)
    assert "LiteHRNet cannot build this genome (kernels is [1, 2] in stage 2; LiteHRNet has 1)" in line
    assert not (tmp_path / "o.pth").exists()
    assert convert_command.main([*argv, "--to", "hrnas"]) == 0  # its own layout holds any genome
    with pytest.raises(SystemExit) as exit_:  # the original HRNet layout is read, not written
        convert_command.main([*argv, "--to", "hrnet"])
    assert exit_.value.code == 2 and "invalid choice: 'hrnet'" in capsys.readouterr().err


def test_evaluate_checkpoint_gives_the_predictions_of_trains_validation(tmp_path, capsys, monkeypatch):
    """`evaluate --checkpoint` on the small real data with detection boxes: the keypoints (so the AP) that `train`
    validated the same weights at, from the hrnas checkpoint and from its mmpose conversion (told how the output
    becomes heatmaps). Keypoints, not AP alone: a few steps on four images leave the AP at 0."""
    import json

    import pose.train
    from hrnas.commands import evaluate as evaluate_command
    from tests.test_published_checkpoints import MINI, TRAIN

    scored = []  # the results each COCOeval saw
    score = pose.train.coco_keypoint_stats
    monkeypatch.setattr(
        pose.train, "coco_keypoint_stats", lambda gt, results: scored.append(results) or score(gt, results)
    )

    def keypoints() -> np.ndarray:
        return np.array([r["keypoints"] for r in scored[-1]])

    boxes = ["--val-boxes", str(MINI / "test_coco_det_AP_H_56.json"), "--box-threshold", "0.5"]
    arch = ["--arch", "litehrnet-18", "--gene", "width=16", "--gene", "modules=[1,1,1]"]
    out = tmp_path / "run"
    assert train_command_main([*arch, *TRAIN, *boxes, "--out", str(out), "--json"]) == 0
    trained, validated = json.loads(capsys.readouterr().out.strip().splitlines()[-1]), keypoints()
    scoring = [*arch, "--data", TRAIN[1], "--input", "64x64", "--batch", "4", *boxes, "--json"]  # train validates in 4s
    checkpoint = out / "checkpoint.pt"
    assert evaluate_command.main([*scoring, "--checkpoint", str(checkpoint)]) == 0
    evaluated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert np.array_equal(keypoints(), validated) and evaluated["ap"] == trained["ap"]
    detections = json.loads((MINI / "test_coco_det_AP_H_56.json").read_text())
    assert len(validated) == sum(d["score"] >= 0.5 for d in detections)  # a person per detection box kept

    mmpose = tmp_path / "mmpose.pth"
    assert convert_command.main([*arch, "--checkpoint", str(checkpoint), "--to", "mmpose0x", "--out", str(mmpose)]) == 0
    recipe = ["--loss", "softmax-ce", "--decode", "taylor"]  # the training's, not the published models' defaults
    assert evaluate_command.main([*scoring, "--checkpoint", str(mmpose), *recipe]) == 0
    assert np.array_equal(keypoints(), validated)
    assert evaluate_command.main([*scoring, "--checkpoint", str(mmpose)]) == 0  # mse, quarter: another reading
    assert not np.array_equal(keypoints(), validated)
    assert evaluate_command.main([*scoring, "--checkpoint", str(checkpoint), "--no-flip-test"]) == 0
    assert not np.array_equal(keypoints(), validated)


def train_command_main(argv: list[str]) -> int:
    from hrnas.commands import train as train_command

    return train_command.main(argv)


def test_evaluate_takes_predictions_or_a_checkpoint_of_an_arch(tmp_path, capsys):
    from hrnas.commands import evaluate as evaluate_command
    from tests.test_published_checkpoints import MINI_DATA

    checkpoint = tmp_path / "w.pth"
    torch.save({"state_dict": official_state("litehrnet-18")}, checkpoint)
    cases = {
        "give --predictions RESULTS.json, or --arch": ["--data", MINI_DATA],
        "--checkpoint needs --arch": ["--data", MINI_DATA, "--checkpoint", str(checkpoint)],
        "does not fit this network": ["--data", MINI_DATA, "--checkpoint", str(checkpoint), "--arch", "litehrnet-30"],
    }
    for says, argv in cases.items():
        assert evaluate_command.main(argv) == 2
        assert says in one_error_line(capsys)
