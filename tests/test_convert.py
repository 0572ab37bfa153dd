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
from tests.test_checkpoint_equivalence import official_state, relative_error
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


@pytest.mark.parametrize("preset", ["litehrnet-18", "ditehrnet-18", "hrnet-w32"])
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
